from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='SessionToken',
            options={'table': 'session_tokens', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An opaque bearer token from `login`: only its SHA-256 is stored.'},
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['organization_id', 'role']),
        ),
    ]
