from tortoise import migrations
from tortoise.migrations import operations as ops
from app.models.cloud import GatewaySelection, RemoteConnectionKind, ReplicaKind, ReplicaState, TenantAccountType
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_scheduling')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Certificate',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('certificate_pem', fields.TextField(unique=False)),
                ('key_encrypted', fields.TextField(unique=False)),
                ('subject', fields.CharField(max_length=500)),
                ('issuer', fields.CharField(max_length=500)),
                ('subject_alt_names', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('not_before', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('not_after', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('fingerprint_sha256', fields.CharField(unique=True, max_length=64)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'certificates', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CloudRepository',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=200)),
                ('capacity_gb', fields.BigIntField()),
                ('used_gb', fields.BigIntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'cloud_repositories', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='GatewayPool',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=200)),
            ],
            options={'table': 'gateway_pools', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CloudGateway',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=200)),
                ('address', fields.CharField(max_length=253)),
                ('port', fields.IntField(default=6180)),
                ('enabled', fields.BooleanField(default=True)),
                ('pool', fields.ForeignKeyField('models.GatewayPool', source_field='pool_id', null=True, db_constraint=True, to_field='id', related_name='gateways', on_delete=OnDelete.SET_NULL)),
                ('redirector_capacity', fields.IntField(default=10)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'cloud_gateways', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HardwarePlan',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=200)),
                ('cpu_mhz', fields.IntField()),
                ('memory_mb', fields.IntField()),
                ('networks_with_internet', fields.IntField(default=0)),
                ('networks_without_internet', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'hardware_plans', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HardwarePlanDatastore',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('plan', fields.ForeignKeyField('models.HardwarePlan', source_field='plan_id', db_constraint=True, to_field='id', related_name='datastores', on_delete=OnDelete.CASCADE)),
                ('datastore', fields.CharField(max_length=200)),
                ('quota_gb', fields.BigIntField()),
            ],
            options={'table': 'hardware_plan_datastores', 'app': 'models', 'unique_together': (('plan', 'datastore'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PublicIpPool',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=200)),
                ('first_address', fields.CharField(max_length=45)),
                ('last_address', fields.CharField(max_length=45)),
            ],
            options={'table': 'public_ip_pools', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TenantAccount',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('models.Organization', source_field='company_id', db_constraint=True, to_field='id', related_name='tenant_accounts', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(unique=True, max_length=200)),
                ('type', fields.CharEnumField(description='STANDALONE: STANDALONE\nVCD: VCD', enum_type=TenantAccountType, max_length=16)),
                ('enabled', fields.BooleanField(default=True)),
                ('lease_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('max_concurrent_tasks', fields.IntField(default=1)),
                ('bandwidth_limit_mbps', fields.IntField(null=True)),
                ('gateway_selection', fields.CharEnumField(default=GatewaySelection.ALL, description='ALL: ALL\nPOOLS: POOLS', enum_type=GatewaySelection, max_length=8)),
                ('gateway_failover', fields.BooleanField(default=False)),
                ('gateway_pools', fields.ManyToManyField('models.GatewayPool', unique=True, db_constraint=True, through='tenant_account_pools', forward_key='gatewaypool_id', backward_key='tenant_accounts_id', related_name='tenant_accounts', on_delete=OnDelete.CASCADE)),
                ('password_hash', fields.CharField(max_length=255)),
                ('password_changed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('managed_by_provider', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'tenant_accounts', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='BackupResource',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant_account', fields.ForeignKeyField('models.TenantAccount', source_field='tenant_account_id', db_constraint=True, to_field='id', related_name='backup_resources', on_delete=OnDelete.CASCADE)),
                ('repository', fields.ForeignKeyField('models.CloudRepository', source_field='repository_id', db_constraint=True, to_field='id', related_name='backup_resources', on_delete=OnDelete.RESTRICT)),
                ('quota_gb', fields.BigIntField()),
                ('used_gb', fields.BigIntField(default=0)),
            ],
            options={'table': 'backup_resources', 'app': 'models', 'unique_together': (('tenant_account', 'repository'),), 'pk_attr': 'id', 'table_description': "A tenant's storage quota on one cloud repository."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HardwarePlanSubscription',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant_account', fields.ForeignKeyField('models.TenantAccount', source_field='tenant_account_id', db_constraint=True, to_field='id', related_name='plan_subscriptions', on_delete=OnDelete.CASCADE)),
                ('plan', fields.ForeignKeyField('models.HardwarePlan', source_field='plan_id', db_constraint=True, to_field='id', related_name='subscriptions', on_delete=OnDelete.RESTRICT)),
                ('cpu_used_mhz', fields.IntField(default=0)),
                ('memory_used_mb', fields.IntField(default=0)),
                ('storage_used_gb', fields.BigIntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'hardware_plan_subscriptions', 'app': 'models', 'unique_together': (('tenant_account', 'plan'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PublicIpAllocation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('pool', fields.ForeignKeyField('models.PublicIpPool', source_field='pool_id', db_constraint=True, to_field='id', related_name='allocations', on_delete=OnDelete.RESTRICT)),
                ('address', fields.CharField(unique=True, max_length=45)),
                ('tenant_account', fields.ForeignKeyField('models.TenantAccount', source_field='tenant_account_id', db_constraint=True, to_field='id', related_name='public_ips', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'public_ip_allocations', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RemoteSession',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant_account', fields.ForeignKeyField('models.TenantAccount', source_field='tenant_account_id', db_constraint=True, to_field='id', related_name='remote_sessions', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='REMOTE_CONSOLE: REMOTE_CONSOLE\nRDP: RDP', enum_type=RemoteConnectionKind, max_length=16)),
                ('gateway', fields.ForeignKeyField('models.CloudGateway', source_field='gateway_id', db_constraint=True, to_field='id', related_name='remote_sessions', on_delete=OnDelete.CASCADE)),
                ('opened_by', fields.ForeignKeyField('models.User', source_field='opened_by_id', null=True, db_constraint=True, to_field='id', related_name='remote_sessions', on_delete=OnDelete.SET_NULL)),
                ('endpoint', fields.CharField(max_length=300)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('close_reason', fields.CharField(default='', max_length=100)),
            ],
            options={'table': 'remote_sessions', 'app': 'models', 'indexes': [Index(fields=['gateway_id', 'closed_at'])], 'pk_attr': 'id', 'table_description': "A remote connection to a tenant's backup server through a gateway's network redirector."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Subtenant',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.OneToOneField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='subtenant', on_delete=OnDelete.CASCADE)),
                ('resource', fields.ForeignKeyField('models.BackupResource', source_field='resource_id', db_constraint=True, to_field='id', related_name='subtenants', on_delete=OnDelete.CASCADE)),
                ('quota_gb', fields.BigIntField(null=True)),
                ('used_gb', fields.BigIntField(default=0)),
                ('enabled', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'subtenants', 'app': 'models', 'pk_attr': 'id', 'table_description': "A Subtenant user with a quota inside one of the tenant's backup resources."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='VlanRange',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('host', fields.CharField(max_length=200)),
                ('first_id', fields.IntField()),
                ('last_id', fields.IntField()),
                ('internet', fields.BooleanField()),
            ],
            options={'table': 'vlan_ranges', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='VlanAllocation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('vlan_range', fields.ForeignKeyField('models.VlanRange', source_field='vlan_range_id', db_constraint=True, to_field='id', related_name='allocations', on_delete=OnDelete.RESTRICT)),
                ('host', fields.CharField(max_length=200)),
                ('vlan_id', fields.IntField()),
                ('subscription', fields.ForeignKeyField('models.HardwarePlanSubscription', source_field='subscription_id', db_constraint=True, to_field='id', related_name='vlans', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'vlan_allocations', 'app': 'models', 'unique_together': (('host', 'vlan_id'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='VmReplica',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant_account', fields.ForeignKeyField('models.TenantAccount', source_field='tenant_account_id', db_constraint=True, to_field='id', related_name='replicas', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('source_vm', fields.CharField(max_length=200)),
                ('kind', fields.CharEnumField(default=ReplicaKind.SNAPSHOT, description='SNAPSHOT: SNAPSHOT\nCDP: CDP', enum_type=ReplicaKind, max_length=16)),
                ('subscription', fields.ForeignKeyField('models.HardwarePlanSubscription', source_field='subscription_id', null=True, db_constraint=True, to_field='id', related_name='replicas', on_delete=OnDelete.SET_NULL)),
                ('state', fields.CharEnumField(default=ReplicaState.READY, description='READY: READY\nFAILOVER: FAILOVER\nFAILBACK: FAILBACK', enum_type=ReplicaState, max_length=16)),
                ('restore_points', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'vm_replicas', 'app': 'models', 'unique_together': (('tenant_account', 'name'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Organization',
            name='baas',
            field=fields.BooleanField(default=False),
        ),
    ]
