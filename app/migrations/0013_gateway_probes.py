from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0012_alarms')]

    initial = False

    operations = [
        ops.AddField(
            model_name='CloudGateway',
            name='last_probe_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='CloudGateway',
            name='last_probe_error',
            field=fields.CharField(default='', db_default='', max_length=300),
        ),
        ops.AddField(
            model_name='CloudGateway',
            name='last_reachable_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='CloudGateway',
            name='probe_latency_ms',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='CloudGateway',
            name='reachable',
            field=fields.BooleanField(null=True),
        ),
    ]
