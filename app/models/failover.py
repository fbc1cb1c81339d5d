"""Cloud failover plans (seed 000: tenants configure them, the provider runs them on the
tenant's request), their runs (sessions) as persisted steps, and the session log.

A session is executed by a worker one step at a time; each step's outcome is written before
the next begins, and every call to the hypervisor carries the step's idempotency key, so a
worker killed at any point resumes without powering a VM on twice.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from app.models.cloud import TenantAccount, VmReplica
from app.models.identity import User
from app.models.jobs import Job
from app.models.tenancy import Organization


class PlanType(StrEnum):
    LOCAL = "LOCAL"  # replicas on the tenant's own hosts
    CLOUD = "CLOUD"  # replicas on the provider's cloud host (Veeam Cloud Connect)


class PlanState(StrEnum):
    READY = "READY"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    UNDO_IN_PROGRESS = "UNDO_IN_PROGRESS"
    TEST_IN_PROGRESS = "TEST_IN_PROGRESS"


class FailurePolicy(StrEnum):
    STOP = "STOP"  # stop at the first failed VM; the plan ends FAILED
    CONTINUE = "CONTINUE"  # go on with the other VMs; the plan ends FAILED if any failed


class FailoverPlan(Model):
    id = fields.IntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="failover_plans", on_delete=fields.CASCADE
    )
    tenant_account: fields.ForeignKeyNullableRelation[TenantAccount] = fields.ForeignKeyField(
        "models.TenantAccount", related_name="failover_plans", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    description = fields.CharField(max_length=1000, default="")
    type = fields.CharEnumField(PlanType, max_length=8, default=PlanType.CLOUD)
    state = fields.CharEnumField(PlanState, max_length=20, default=PlanState.READY, db_index=True)
    failure_policy = fields.CharEnumField(FailurePolicy, max_length=8, default=FailurePolicy.STOP)
    # Provider-only: scripts run on the cloud host before the first VM and after the last.
    pre_failover_script = fields.CharField(max_length=1000, default="")
    post_failover_script = fields.CharField(max_length=1000, default="")
    # The session in progress (or the last one); set in the same UPDATE that moves the state.
    current_session_id = fields.IntField(null=True)
    # The last test's measured recovery time (seconds from start to all VMs healthy).
    last_test_recovery_seconds = fields.FloatField(null=True)
    last_test_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "failover_plans"
        unique_together = (("company", "name"),)
        ordering = ["id"]


class FailoverPlanVm(Model):
    """One VM of a plan: its replica, its place in the order, the delay after it."""

    id = fields.IntField(primary_key=True)
    plan: fields.ForeignKeyRelation[FailoverPlan] = fields.ForeignKeyField(
        "models.FailoverPlan", related_name="vms", on_delete=fields.CASCADE
    )
    # Each replica in at most one plan: the database says so.
    replica: fields.OneToOneRelation[VmReplica] = fields.OneToOneField(
        "models.VmReplica", related_name="plan_vm", on_delete=fields.CASCADE
    )
    position = fields.IntField()
    delay_seconds = fields.IntField(default=0)  # ignored after the last VM

    class Meta:
        table = "failover_plan_vms"
        unique_together = (("plan", "position"),)
        ordering = ["plan_id", "position"]


class SessionKind(StrEnum):
    FAILOVER = "FAILOVER"
    TEST = "TEST"
    UNDO = "UNDO"
    RETRY = "RETRY"  # a failover resumed after FAILED: the VMs already up are kept


class PointChoice(StrEnum):
    LATEST = "LATEST"
    BEFORE = "BEFORE"  # the closest restore point before `point_in_time`


class FailoverSessionState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class FailoverSession(Model):
    id = fields.IntField(primary_key=True)
    plan: fields.ForeignKeyRelation[FailoverPlan] = fields.ForeignKeyField(
        "models.FailoverPlan", related_name="sessions", on_delete=fields.CASCADE
    )
    company_id = fields.IntField()  # the plan's, for scope without a join
    kind = fields.CharEnumField(SessionKind, max_length=8)
    state = fields.CharEnumField(
        FailoverSessionState, max_length=10, default=FailoverSessionState.RUNNING
    )
    point_choice = fields.CharEnumField(PointChoice, max_length=8, default=PointChoice.LATEST)
    point_in_time = fields.DatetimeField(null=True)
    job: fields.ForeignKeyNullableRelation[Job] = fields.ForeignKeyField(
        "models.Job", related_name="failover_sessions", null=True, on_delete=fields.SET_NULL
    )
    requested_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="failover_sessions", null=True, on_delete=fields.SET_NULL
    )
    vms_total = fields.IntField(default=0)
    vms_up = fields.IntField(default=0)
    vms_failed = fields.IntField(default=0)
    recovery_seconds = fields.FloatField(null=True)
    error = fields.TextField(null=True)
    started_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "failover_sessions"
        ordering = ["id"]
        indexes = (("plan_id", "started_at"),)


class StepKind(StrEnum):
    PRE_SCRIPT = "PRE_SCRIPT"
    SELECT_POINT = "SELECT_POINT"
    POWER_ON = "POWER_ON"
    WAIT_HEALTHY = "WAIT_HEALTHY"
    DELAY = "DELAY"
    NETWORK_APPLIANCE = "NETWORK_APPLIANCE"
    MAP_PUBLIC_IPS = "MAP_PUBLIC_IPS"
    POST_SCRIPT = "POST_SCRIPT"
    POWER_OFF = "POWER_OFF"  # test and undo
    RELEASE = "RELEASE"  # undo: the replica back to its normal state


class StepState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"  # started: the driver was (or may have been) called
    DONE = "DONE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class FailoverStep(Model):
    id = fields.BigIntField(primary_key=True)
    session: fields.ForeignKeyRelation[FailoverSession] = fields.ForeignKeyField(
        "models.FailoverSession", related_name="steps", on_delete=fields.CASCADE
    )
    seq = fields.IntField()
    kind = fields.CharEnumField(StepKind, max_length=20)
    replica_id = fields.IntField(null=True)
    state = fields.CharEnumField(StepState, max_length=8, default=StepState.PENDING)
    # Sent with every driver call of the step: the driver does an action at most once per key.
    idempotency_key = fields.CharField(max_length=100, unique=True)
    attempts = fields.IntField(default=0)
    output: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    message = fields.CharField(max_length=1000, default="")
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "failover_steps"
        unique_together = (("session", "seq"),)
        ordering = ["session_id", "seq"]


class FailoverLogEntry(Model):
    """The session log: one line per thing that happened, in order."""

    id = fields.BigIntField(primary_key=True)
    session: fields.ForeignKeyRelation[FailoverSession] = fields.ForeignKeyField(
        "models.FailoverSession", related_name="log", on_delete=fields.CASCADE
    )
    at = fields.DatetimeField(auto_now_add=True)
    level = fields.CharField(max_length=8, default="INFO")
    step_seq = fields.IntField(null=True)
    message = fields.CharField(max_length=1000)

    class Meta:
        table = "failover_log"
        ordering = ["id"]
        indexes = (("session_id", "id"),)


class SimulatedVm(Model):
    """The hypervisor simulator's own state (the demo, tests and benchmarks use it; a real
    driver keeps none): power state per VM and every action done, by idempotency key."""

    id = fields.IntField(primary_key=True)
    vm_ref = fields.CharField(max_length=200, unique=True)
    powered_on = fields.BooleanField(default=False)
    isolated = fields.BooleanField(default=False)
    boot_started_at = fields.DatetimeField(null=True)
    power_on_count = fields.IntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "simulated_vms"


class SimulatedAction(Model):
    id = fields.BigIntField(primary_key=True)
    idempotency_key = fields.CharField(max_length=100, unique=True)
    vm_ref = fields.CharField(max_length=200)
    action = fields.CharField(max_length=32)
    result: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "simulated_actions"


class DomainEvent(Model):
    """Something that happened which other parts evaluate later (alarms: "Failover Plan
    session state"): written in the same transaction as the change it reports."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=64, db_index=True)
    organization_id = fields.IntField(null=True)
    subject_type = fields.CharField(max_length=64)
    subject_id = fields.IntField()
    payload: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "domain_events"
        ordering = ["id"]
