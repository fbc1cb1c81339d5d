from tortoise import migrations
from tortoise.migrations import operations as ops
from app.models.alarms import AlarmChange, AlarmSeverity, AlarmStatus, RuleKind
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0011_billing')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AlarmNotificationSettings',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.OneToOneField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='alarm_notification_settings', on_delete=OnDelete.CASCADE)),
                ('email_roles', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('min_severity', fields.CharEnumField(default=AlarmSeverity.WARNING, description='INFO: INFO\nWARNING: WARNING\nERROR: ERROR', enum_type=AlarmSeverity, max_length=8)),
                ('digest', fields.BooleanField(default=False)),
                ('digest_hour', fields.IntField(default=7)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'alarm_notification_settings', 'app': 'models', 'pk_attr': 'id', 'table_description': "Who an organization's alarms are mailed to (the roles of its portal, by name as in the"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AlarmTemplate',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('models.Organization', source_field='owner_id', db_constraint=True, to_field='id', related_name='alarm_templates', on_delete=OnDelete.CASCADE)),
                ('catalogue_key', fields.CharField(max_length=64)),
                ('custom', fields.BooleanField(default=False)),
                ('name', fields.CharField(max_length=200)),
                ('description', fields.CharField(default='', max_length=1000)),
                ('kind', fields.CharEnumField(description='STATE_CHANGE: STATE_CHANGE\nEVENT: EVENT\nTHRESHOLD: THRESHOLD', enum_type=RuleKind, max_length=12)),
                ('enabled', fields.BooleanField(default=True)),
                ('severity', fields.CharEnumField(default=AlarmSeverity.ERROR, description='INFO: INFO\nWARNING: WARNING\nERROR: ERROR', enum_type=AlarmSeverity, max_length=8)),
                ('thresholds', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('trigger_after', fields.IntField(default=1)),
                ('suppress_after', fields.IntField(default=0)),
                ('name_include', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('name_exclude', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('assignment', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'alarm_templates', 'app': 'models', 'unique_together': (('owner', 'name'),), 'indexes': [Index(fields=['owner_id', 'catalogue_key'])], 'pk_attr': 'id', 'table_description': 'A template as one organization (provider, reseller or company) configures it for its'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Alarm',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('template', fields.ForeignKeyField('models.AlarmTemplate', source_field='template_id', db_constraint=True, to_field='id', related_name='alarms', on_delete=OnDelete.CASCADE)),
                ('organization_id', fields.IntField()),
                ('location_id', fields.IntField(null=True)),
                ('subtenant_id', fields.IntField(null=True)),
                ('object_type', fields.CharField(max_length=40)),
                ('object_id', fields.IntField()),
                ('object_name', fields.CharField(max_length=300)),
                ('status', fields.CharEnumField(description='PENDING: PENDING\nACTIVE: ACTIVE\nACKNOWLEDGED: ACKNOWLEDGED\nRESOLVED: RESOLVED', enum_type=AlarmStatus, max_length=12)),
                ('severity', fields.CharEnumField(description='INFO: INFO\nWARNING: WARNING\nERROR: ERROR', enum_type=AlarmSeverity, max_length=8)),
                ('message', fields.CharField(max_length=1000)),
                ('active_key', fields.CharField(null=True, unique=True, max_length=120)),
                ('occurrences', fields.IntField(default=1)),
                ('first_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('raised_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'alarms', 'app': 'models', 'indexes': [Index(fields=['organization_id', 'status']), Index(fields=['status', 'last_seen_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AlarmEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('alarm', fields.ForeignKeyField('models.Alarm', source_field='alarm_id', db_constraint=True, to_field='id', related_name='history', on_delete=OnDelete.CASCADE)),
                ('change', fields.CharEnumField(description='TRIGGERED: TRIGGERED\nREPEATED: REPEATED\nSEVERITY_CHANGED: SEVERITY_CHANGED\nACKNOWLEDGED: ACKNOWLEDGED\nRESOLVED: RESOLVED\nAUTO_RESOLVED: AUTO_RESOLVED', enum_type=AlarmChange, max_length=16)),
                ('status', fields.CharEnumField(description='PENDING: PENDING\nACTIVE: ACTIVE\nACKNOWLEDGED: ACKNOWLEDGED\nRESOLVED: RESOLVED', enum_type=AlarmStatus, max_length=12)),
                ('severity', fields.CharEnumField(description='INFO: INFO\nWARNING: WARNING\nERROR: ERROR', enum_type=AlarmSeverity, max_length=8)),
                ('actor', fields.ForeignKeyField('models.User', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='alarm_events', on_delete=OnDelete.SET_NULL)),
                ('comment', fields.CharField(default='', max_length=1000)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'alarm_events', 'app': 'models', 'indexes': [Index(fields=['alarm_id', 'id'])], 'pk_attr': 'id', 'table_description': "An alarm's history: every status or severity change, who, when, with what comment."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AlarmWebhook',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='alarm_webhooks', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=100)),
                ('url', fields.CharField(max_length=1000)),
                ('secret_encrypted', fields.TextField(unique=False)),
                ('enabled', fields.BooleanField(default=True)),
                ('min_severity', fields.CharEnumField(default=AlarmSeverity.WARNING, description='INFO: INFO\nWARNING: WARNING\nERROR: ERROR', enum_type=AlarmSeverity, max_length=8)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'alarm_webhooks', 'app': 'models', 'unique_together': (('organization', 'name'),), 'pk_attr': 'id', 'table_description': 'A signed webhook of an organization: its alarms (of at least `min_severity`) are POSTed'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='EvaluationCursor',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('last_id', fields.BigIntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'alarm_cursors', 'app': 'models', 'pk_attr': 'id', 'table_description': 'How far an incremental evaluation got in a source (sessions, domain events, audit log):'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MaintenanceWindow',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='maintenance_windows', on_delete=OnDelete.CASCADE)),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('reason', fields.CharField(default='', max_length=500)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='maintenance_windows', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'maintenance_windows', 'app': 'models', 'indexes': [Index(fields=['organization_id', 'ends_at'])], 'pk_attr': 'id', 'table_description': 'While a window of an organization is open, its alarms (and those of the organizations'},
            bases=['Model'],
        ),
    ]
