from tortoise import fields, migrations
from tortoise.migrations import operations as ops

# Sessions and restore points remember the reportedAt of the batch that last wrote them, so a
# batch delivered late (a retry, a queue replay) does not turn back a newer correction. Nullable:
# the rows already stored have none and accept the next report, whatever its time, once.


class Migration(migrations.Migration):
    dependencies = [("models", "0014_replica_sizes")]

    initial = False

    operations = [
        ops.AddField(
            model_name="BackupJobSession",
            name="reported_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="RestorePoint",
            name="reported_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
