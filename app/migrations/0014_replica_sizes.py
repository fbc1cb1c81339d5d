from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

# Hardware plan usage is derived from the replicas (app.services.plan_usage) from here on: the
# subscriptions' typed-in usage columns go, the replicas get the replicated VM's sizes (0 for
# the replicas registered before, until they are resized).


class DropColumn(ops.RemoveField):
    """RemoveField as a plain DROP COLUMN on both backends (SQLite >= 3.35, PostgreSQL): the
    SQLite schema editor rebuilds the table for a removal and loses its unique_together index
    (one subscription per tenant account and plan); DROP COLUMN keeps the table, its rows and
    its indexes."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if not state_editor:
            return
        model = old_state.apps.get_model(f"{app_label}.{self.model_name}")
        field = model._meta.fields_map[self.name]
        column = field.source_field or field.model_field_name
        await state_editor._run_sql(f'ALTER TABLE "{model._meta.db_table}" DROP COLUMN "{column}"')


class Migration(migrations.Migration):
    dependencies = [('models', '0013_gateway_probes')]

    initial = False

    operations = [
        DropColumn(model_name='HardwarePlanSubscription', name='cpu_used_mhz'),
        DropColumn(model_name='HardwarePlanSubscription', name='memory_used_mb'),
        DropColumn(model_name='HardwarePlanSubscription', name='storage_used_gb'),
        ops.AddField(
            model_name='VmReplica',
            name='cpu_mhz',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='VmReplica',
            name='memory_mb',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='VmReplica',
            name='storage_gb',
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.AddIndex(
            model_name='VmReplica',
            index=Index(fields=['subscription_id', 'state']),
        ),
    ]
