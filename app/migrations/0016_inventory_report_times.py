from tortoise import fields, migrations
from tortoise.migrations import operations as ops

# Managed computers, backup servers and backup agents remember the reportedAt of the batch that
# last wrote them, as sessions and restore points do since 0015, so a batch delivered late (a
# retry, a queue replay) does not turn back a rename or an upgrade. Nullable: the rows already
# stored (and computers a discovery registers) have none and accept the next report, once.


class Migration(migrations.Migration):
    dependencies = [("models", "0015_session_report_times")]

    initial = False

    operations = [
        ops.AddField(
            model_name="BackupAgent",
            name="reported_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="BackupServer",
            name="reported_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="ManagedComputer",
            name="reported_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
