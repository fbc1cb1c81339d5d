from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_jobs')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ScheduledTick',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=100)),
                ('tick', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('fired_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('fired_by', fields.CharField(max_length=200)),
                ('job_id', fields.IntField(null=True)),
                ('error', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'scheduled_ticks', 'app': 'models', 'unique_together': (('name', 'tick'),), 'pk_attr': 'id', 'table_description': 'One fired tick of a schedule, written before its work is done.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SchedulerLease',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=100)),
                ('holder', fields.CharField(max_length=200)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'scheduler_leases', 'app': 'models', 'pk_attr': 'name', 'table_description': 'The leader of a group of schedulers, and until when it leads.'},
            bases=['Model'],
        ),
    ]
