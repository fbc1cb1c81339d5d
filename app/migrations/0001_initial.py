from tortoise import migrations
from tortoise.migrations import operations as ops
from app.models.tenancy import OrgKind
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ('actor_id', fields.IntField(null=True, db_index=True)),
                ('actor_email', fields.CharField(default='', max_length=254)),
                ('actor_organization_id', fields.IntField(null=True)),
                ('organization_id', fields.IntField(null=True, db_index=True)),
                ('action', fields.CharField(max_length=64)),
                ('object_type', fields.CharField(default='', max_length=64)),
                ('object_id', fields.CharField(default='', db_index=True, max_length=64)),
                ('client_address', fields.CharField(default='', max_length=64)),
                ('request_id', fields.CharField(default='', max_length=64)),
                ('outcome', fields.CharField(default='SUCCESS', max_length=16)),
                ('details', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'audit_log', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LoginThrottle',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(unique=True, max_length=300)),
                ('failures', fields.IntField(default=0)),
                ('window_started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('locked_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'login_throttle', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Failed-login counters per account ("account:<email>") and per client ("address:<ip>").'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Organization',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharEnumField(db_index=True, description='PROVIDER: PROVIDER\nRESELLER: RESELLER\nCOMPANY: COMPANY', enum_type=OrgKind, max_length=16)),
                ('name', fields.CharField(max_length=200)),
                ('parent', fields.ForeignKeyField('models.Organization', source_field='parent_id', null=True, db_constraint=True, to_field='id', related_name='children', on_delete=OnDelete.RESTRICT)),
                ('enabled', fields.BooleanField(default=True)),
                ('email', fields.CharField(default='', max_length=254)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'organizations', 'app': 'models', 'unique_together': (('parent', 'name'),), 'pk_attr': 'id', 'table_description': 'A provider, reseller or company. Companies sit under the provider or under a reseller.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Location',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('models.Organization', source_field='company_id', db_constraint=True, to_field='id', related_name='locations', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('is_default', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'locations', 'app': 'models', 'unique_together': (('company', 'name'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
                ('name', fields.CharField(max_length=200)),
                ('password_hash', fields.CharField(max_length=255)),
                ('role', fields.CharField(db_index=True, max_length=64)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='users', on_delete=OnDelete.CASCADE)),
                ('enabled', fields.BooleanField(default=True)),
                ('scope_restricted', fields.BooleanField(default=False)),
                ('scope_companies', fields.ManyToManyField('models.Organization', unique=True, db_constraint=True, through='user_scope_companies', forward_key='organization_id', backward_key='users_id', related_name='scoped_users', on_delete=OnDelete.CASCADE)),
                ('scope_locations', fields.ManyToManyField('models.Location', unique=True, db_constraint=True, through='user_scope_locations', forward_key='location_id', backward_key='users_id', related_name='scoped_users', on_delete=OnDelete.CASCADE)),
                ('password_changed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'users', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiKey',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=100)),
                ('prefix', fields.CharField(unique=True, max_length=16)),
                ('key_hash', fields.CharField(max_length=64)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='api_keys', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_keys', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A personal API key for automation: shown once, stored hashed, revocable, expiring.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SessionToken',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('client_address', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'session_tokens', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An opaque bearer token from `login`; only its SHA-256 is stored.'},
            bases=['Model'],
        ),
    ]
