from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0008_plugin_decisions')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='BackupJob',
            index=Index(fields=['computer_id']),
        ),
    ]
