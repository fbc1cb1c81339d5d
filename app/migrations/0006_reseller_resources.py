from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_cloud_connect')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ResellerHardwarePlan',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('reseller', fields.ForeignKeyField('models.Organization', source_field='reseller_id', db_constraint=True, to_field='id', related_name='hardware_plans', on_delete=OnDelete.CASCADE)),
                ('plan', fields.ForeignKeyField('models.HardwarePlan', source_field='plan_id', db_constraint=True, to_field='id', related_name='reseller_grants', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'reseller_hardware_plans', 'app': 'models', 'unique_together': (('reseller', 'plan'),), 'pk_attr': 'id', 'table_description': "A hardware plan the reseller may subscribe its companies' tenants to."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ResellerIpPoolQuota',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('reseller', fields.ForeignKeyField('models.Organization', source_field='reseller_id', db_constraint=True, to_field='id', related_name='ip_pool_quotas', on_delete=OnDelete.CASCADE)),
                ('pool', fields.ForeignKeyField('models.PublicIpPool', source_field='pool_id', db_constraint=True, to_field='id', related_name='reseller_quotas', on_delete=OnDelete.CASCADE)),
                ('max_addresses', fields.IntField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'reseller_ip_pool_quotas', 'app': 'models', 'unique_together': (('reseller', 'pool'),), 'pk_attr': 'id', 'table_description': "How many addresses of one public IP pool the reseller's companies may hold together."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ResellerRepositoryQuota',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('reseller', fields.ForeignKeyField('models.Organization', source_field='reseller_id', db_constraint=True, to_field='id', related_name='repository_quotas', on_delete=OnDelete.CASCADE)),
                ('repository', fields.ForeignKeyField('models.CloudRepository', source_field='repository_id', db_constraint=True, to_field='id', related_name='reseller_quotas', on_delete=OnDelete.CASCADE)),
                ('quota_gb', fields.BigIntField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'reseller_repository_quotas', 'app': 'models', 'unique_together': (('reseller', 'repository'),), 'pk_attr': 'id', 'table_description': "Storage on one cloud repository the reseller may hand out to its companies' tenants."},
            bases=['Model'],
        ),
    ]
