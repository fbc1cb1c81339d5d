from tortoise import migrations
from tortoise.migrations import operations as ops
from app.models.jobs import JobState
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_users_organization_role_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Job',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(db_index=True, max_length=64)),
                ('state', fields.CharEnumField(default=JobState.QUEUED, db_index=True, description='QUEUED: QUEUED\nRUNNING: RUNNING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED\nCANCELLED: CANCELLED', enum_type=JobState, max_length=16)),
                ('functionality', fields.CharField(max_length=32)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', null=True, db_constraint=True, to_field='id', related_name='jobs', on_delete=OnDelete.CASCADE)),
                ('requested_by', fields.ForeignKeyField('models.User', source_field='requested_by_id', null=True, db_constraint=True, to_field='id', related_name='jobs', on_delete=OnDelete.SET_NULL)),
                ('params', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('checkpoint', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('result', fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
                ('error', fields.TextField(null=True, unique=False)),
                ('progress_percent', fields.IntField(default=0)),
                ('progress_message', fields.CharField(default='', max_length=500)),
                ('attempts', fields.IntField(default=0)),
                ('max_attempts', fields.IntField(default=3)),
                ('cancel_requested', fields.BooleanField(default=False)),
                ('dedup_key', fields.CharField(null=True, unique=True, max_length=200)),
                ('worker_id', fields.CharField(default='', max_length=100)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('enqueued_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('heartbeat_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'jobs', 'app': 'models', 'indexes': [Index(fields=['state', 'heartbeat_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
