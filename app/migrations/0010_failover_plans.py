from tortoise import migrations
from tortoise.migrations import operations as ops
from app.models.failover import FailoverSessionState, FailurePolicy, PlanState, PlanType, PointChoice, SessionKind, StepKind, StepState
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0009_backup_jobs_by_computer')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DomainEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(db_index=True, max_length=64)),
                ('organization_id', fields.IntField(null=True)),
                ('subject_type', fields.CharField(max_length=64)),
                ('subject_id', fields.IntField()),
                ('payload', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'domain_events', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Something that happened which other parts evaluate later (alarms: "Failover Plan'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FailoverPlan',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('models.Organization', source_field='company_id', db_constraint=True, to_field='id', related_name='failover_plans', on_delete=OnDelete.CASCADE)),
                ('tenant_account', fields.ForeignKeyField('models.TenantAccount', source_field='tenant_account_id', null=True, db_constraint=True, to_field='id', related_name='failover_plans', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('description', fields.CharField(default='', max_length=1000)),
                ('type', fields.CharEnumField(default=PlanType.CLOUD, description='LOCAL: LOCAL\nCLOUD: CLOUD', enum_type=PlanType, max_length=8)),
                ('state', fields.CharEnumField(default=PlanState.READY, db_index=True, description='READY: READY\nIN_PROGRESS: IN_PROGRESS\nCOMPLETED: COMPLETED\nFAILED: FAILED\nUNDO_IN_PROGRESS: UNDO_IN_PROGRESS\nTEST_IN_PROGRESS: TEST_IN_PROGRESS', enum_type=PlanState, max_length=20)),
                ('failure_policy', fields.CharEnumField(default=FailurePolicy.STOP, description='STOP: STOP\nCONTINUE: CONTINUE', enum_type=FailurePolicy, max_length=8)),
                ('pre_failover_script', fields.CharField(default='', max_length=1000)),
                ('post_failover_script', fields.CharField(default='', max_length=1000)),
                ('current_session_id', fields.IntField(null=True)),
                ('last_test_recovery_seconds', fields.FloatField(null=True)),
                ('last_test_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'failover_plans', 'app': 'models', 'unique_together': (('company', 'name'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FailoverPlanVm',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('plan', fields.ForeignKeyField('models.FailoverPlan', source_field='plan_id', db_constraint=True, to_field='id', related_name='vms', on_delete=OnDelete.CASCADE)),
                ('replica', fields.OneToOneField('models.VmReplica', source_field='replica_id', db_constraint=True, to_field='id', related_name='plan_vm', on_delete=OnDelete.CASCADE)),
                ('position', fields.IntField()),
                ('delay_seconds', fields.IntField(default=0)),
            ],
            options={'table': 'failover_plan_vms', 'app': 'models', 'unique_together': (('plan', 'position'),), 'pk_attr': 'id', 'table_description': 'One VM of a plan: its replica, its place in the order, the delay after it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FailoverSession',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('plan', fields.ForeignKeyField('models.FailoverPlan', source_field='plan_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('company_id', fields.IntField()),
                ('kind', fields.CharEnumField(description='FAILOVER: FAILOVER\nTEST: TEST\nUNDO: UNDO\nRETRY: RETRY', enum_type=SessionKind, max_length=8)),
                ('state', fields.CharEnumField(default=FailoverSessionState.RUNNING, description='RUNNING: RUNNING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED\nCANCELLED: CANCELLED', enum_type=FailoverSessionState, max_length=10)),
                ('point_choice', fields.CharEnumField(default=PointChoice.LATEST, description='LATEST: LATEST\nBEFORE: BEFORE', enum_type=PointChoice, max_length=8)),
                ('point_in_time', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('job', fields.ForeignKeyField('models.Job', source_field='job_id', null=True, db_constraint=True, to_field='id', related_name='failover_sessions', on_delete=OnDelete.SET_NULL)),
                ('requested_by', fields.ForeignKeyField('models.User', source_field='requested_by_id', null=True, db_constraint=True, to_field='id', related_name='failover_sessions', on_delete=OnDelete.SET_NULL)),
                ('vms_total', fields.IntField(default=0)),
                ('vms_up', fields.IntField(default=0)),
                ('vms_failed', fields.IntField(default=0)),
                ('recovery_seconds', fields.FloatField(null=True)),
                ('error', fields.TextField(null=True, unique=False)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'failover_sessions', 'app': 'models', 'indexes': [Index(fields=['plan_id', 'started_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FailoverLogEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.FailoverSession', source_field='session_id', db_constraint=True, to_field='id', related_name='log', on_delete=OnDelete.CASCADE)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('level', fields.CharField(default='INFO', max_length=8)),
                ('step_seq', fields.IntField(null=True)),
                ('message', fields.CharField(max_length=1000)),
            ],
            options={'table': 'failover_log', 'app': 'models', 'indexes': [Index(fields=['session_id', 'id'])], 'pk_attr': 'id', 'table_description': 'The session log: one line per thing that happened, in order.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FailoverStep',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.FailoverSession', source_field='session_id', db_constraint=True, to_field='id', related_name='steps', on_delete=OnDelete.CASCADE)),
                ('seq', fields.IntField()),
                ('kind', fields.CharEnumField(description='PRE_SCRIPT: PRE_SCRIPT\nSELECT_POINT: SELECT_POINT\nPOWER_ON: POWER_ON\nWAIT_HEALTHY: WAIT_HEALTHY\nDELAY: DELAY\nNETWORK_APPLIANCE: NETWORK_APPLIANCE\nMAP_PUBLIC_IPS: MAP_PUBLIC_IPS\nPOST_SCRIPT: POST_SCRIPT\nPOWER_OFF: POWER_OFF\nRELEASE: RELEASE', enum_type=StepKind, max_length=20)),
                ('replica_id', fields.IntField(null=True)),
                ('state', fields.CharEnumField(default=StepState.PENDING, description='PENDING: PENDING\nRUNNING: RUNNING\nDONE: DONE\nFAILED: FAILED\nSKIPPED: SKIPPED', enum_type=StepState, max_length=8)),
                ('idempotency_key', fields.CharField(unique=True, max_length=100)),
                ('attempts', fields.IntField(default=0)),
                ('output', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('message', fields.CharField(default='', max_length=1000)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'failover_steps', 'app': 'models', 'unique_together': (('session', 'seq'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SimulatedAction',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('idempotency_key', fields.CharField(unique=True, max_length=100)),
                ('vm_ref', fields.CharField(max_length=200)),
                ('action', fields.CharField(max_length=32)),
                ('result', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'simulated_actions', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SimulatedVm',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('vm_ref', fields.CharField(unique=True, max_length=200)),
                ('powered_on', fields.BooleanField(default=False)),
                ('isolated', fields.BooleanField(default=False)),
                ('boot_started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('power_on_count', fields.IntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'simulated_vms', 'app': 'models', 'pk_attr': 'id', 'table_description': "The hypervisor simulator's own state (the demo, tests and benchmarks use it; a real"},
            bases=['Model'],
        ),
    ]
