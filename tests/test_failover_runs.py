"""Failover plan runs on the in-process broker and the hypervisor simulator: every transition
and every illegal one, restore point selection by time (the exact boundary), both failure
policies with injected failures, cancellation at a step boundary for each kind with its
documented end state, a worker crash between the hypervisor's action and the step's write
(each VM still powered on once), disabling the company or the tenant account, the domain
event, GraphQL with live progress and no N+1, and the matrix."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import FAILOVER_SESSIONS
from app.authz.matrix import Action
from app.errors import BadInput, Conflict
from app.integrations.hypervisor import override_hypervisor, vm_ref
from app.integrations.simulated_hypervisor import SimulatedHypervisor
from app.models import AuditEntry, Job, JobState, OrgKind
from app.models.cloud import (
    PublicIpAllocation,
    PublicIpPool,
    ReplicaState,
    TenantAccount,
    VmReplica,
)
from app.models.failover import (
    DomainEvent,
    FailoverLogEntry,
    FailoverPlan,
    FailoverPlanVm,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    FailurePolicy,
    PlanState,
    PointChoice,
    SessionKind,
    SimulatedAction,
    SimulatedVm,
    StepKind,
    StepState,
)
from app.services import (
    failover_executor,
    failover_runs,
    failover_steps,
    jobs,
    tenancy,
    tenant_accounts,
)
from app.services.actor import Actor
from app.services.failover_steps import select_point
from tests.conftest import ON_POSTGRES, TEST_SETTINGS
from tests.permission_cases import Subject, outcome
from tests.querycount import count_queries
from tests.test_allocations import ALL_SUBJECTS, gid, home_company, make_account
from tests.test_failover_plans import add_vms, expected, make_plan, make_replica
from workers.broker import setup
from workers.runtime import run_queued_inline

GA = ("Provider", "Service Provider Global Administrator")
OWNER = ("A1", "Company Owner")
P1 = "2026-01-01T00:00:00+00:00"
P2 = "2026-01-02T00:00:00+00:00"
P3 = "2026-01-03T00:00:00+00:00"
S = FailoverSessionState


class Hooked(SimulatedHypervisor):
    """The simulator, with a hook called before an action on a chosen VM (a cancel or a
    disable arriving while the step runs)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.hooks: dict[tuple[str, str], Any] = {}

    async def _hook(self, action: str, ref: str) -> None:
        hook = self.hooks.pop((action, ref.rsplit("/", 1)[-1]), None)
        if hook is not None:
            await hook()

    async def power_on(self, vm_ref, restore_point, isolated, key):  # type: ignore[no-untyped-def]
        await self._hook("power_on", vm_ref)
        return await super().power_on(vm_ref, restore_point, isolated, key)

    async def power_off(self, vm_ref, key):  # type: ignore[no-untyped-def]
        await self._hook("power_off", vm_ref)
        return await super().power_off(vm_ref, key)


@pytest.fixture
def driver():
    previous = jobs._dispatcher
    broker = setup(TEST_SETTINGS, stub=True)
    sim = Hooked(fail_pattern="*-fail")
    override_hypervisor(sim)
    sim.broker = broker  # type: ignore[attr-defined]
    yield sim
    jobs.set_dispatcher(previous)
    override_hypervisor(None)


async def actor_of(world, who: tuple[str, str] = GA) -> Actor:
    return Actor(await principal_for_bearer(world.token(*who)))


async def site(
    world,
    names: tuple[str, ...] = ("vm1", "vm2", "vm3"),
    policy: FailurePolicy = FailurePolicy.STOP,
    company: str = "A1",
    points: list[str] | None = None,
    name: str | None = None,
    **kw: Any,
) -> tuple[FailoverPlan, list[VmReplica]]:
    account = await TenantAccount.filter(company_id=world.orgs[company].id).first()
    if account is None:
        account = await make_account(world, company)
    plan = await make_plan(
        world.orgs[company],
        name or f"{company} site",
        tenant_account=account,
        failure_policy=policy,
        **kw,
    )
    replicas = [await make_replica(account, n, points=points or [P1, P2, P3]) for n in names]
    await add_vms(plan, replicas)
    return plan, replicas


async def run(driver) -> None:
    await run_queued_inline(driver.broker)


async def power_ons(replicas: list[VmReplica]) -> list[int]:
    counts = dict(await SimulatedVm.all().values_list("vm_ref", "power_on_count"))
    return [counts.get(vm_ref(r.id, r.name), 0) for r in replicas]


async def powered(replicas: list[VmReplica]) -> list[bool]:
    on = dict(await SimulatedVm.all().values_list("vm_ref", "powered_on"))
    return [bool(on.get(vm_ref(r.id, r.name), False)) for r in replicas]


async def steps_of(session_id: int) -> list[tuple[str, str]]:
    rows = await FailoverStep.filter(session_id=session_id).order_by("seq")
    return [(s.kind.value, s.state.value) for s in rows]


async def replica_states(replicas: list[VmReplica]) -> list[str]:
    rows = dict(await VmReplica.filter(id__in=[r.id for r in replicas]).values_list("id", "state"))
    return [rows[r.id].value if hasattr(rows[r.id], "value") else rows[r.id] for r in replicas]


# --- transitions -----------------------------------------------------------------------------

ALLOWED = {
    (PlanState.READY, SessionKind.FAILOVER): PlanState.IN_PROGRESS,
    (PlanState.READY, SessionKind.TEST): PlanState.TEST_IN_PROGRESS,
    (PlanState.COMPLETED, SessionKind.UNDO): PlanState.UNDO_IN_PROGRESS,
    (PlanState.FAILED, SessionKind.UNDO): PlanState.UNDO_IN_PROGRESS,
    (PlanState.FAILED, SessionKind.RETRY): PlanState.IN_PROGRESS,
}
TABLE = [(state, kind) for state in PlanState for kind in SessionKind]


@pytest.mark.parametrize(("state", "kind"), TABLE, ids=[f"{s.value}-{k.value}" for s, k in TABLE])
async def test_every_transition_and_every_illegal_one(world, driver, state, kind) -> None:
    plan, replicas = await site(world, ("vm1",))
    if state is not PlanState.READY:
        await FailoverPlan.filter(id=plan.id).update(state=state)
        await VmReplica.filter(id=replicas[0].id).update(state=ReplicaState.FAILOVER)
    actor = await actor_of(world)
    if (state, kind) in ALLOWED:
        session = await failover_runs.start(actor, plan.id, kind)
        row = await FailoverPlan.get(id=plan.id)
        assert (row.state, row.current_session_id) == (ALLOWED[state, kind], session.id)
        job = await Job.get(id=session.job_id)  # type: ignore[attr-defined]
        assert (job.kind, job.params, job.state) == (
            "failover.run",
            {"session_id": session.id},
            JobState.QUEUED,
        )
        return
    with pytest.raises(Conflict) as err:
        await failover_runs.start(actor, plan.id, kind)
    assert f"the plan is {state.value}" in err.value.message
    assert (await FailoverPlan.get(id=plan.id)).state is state
    assert await FailoverSession.filter(plan_id=plan.id).count() == 0
    assert await Job.filter(kind="failover.run").count() == 0
    entry = await AuditEntry.filter(object_type="FailoverPlan").order_by("-id").first()
    assert entry is not None and entry.outcome == "FAILURE"


async def test_a_plan_not_ready_is_refused_with_its_reasons(world, driver) -> None:
    plan, replicas = await site(world, ("vm1", "vm2"))
    await VmReplica.filter(id=replicas[1].id).update(restore_points=[])
    with pytest.raises(Conflict) as err:
        await failover_runs.start(await actor_of(world), plan.id, SessionKind.FAILOVER)
    assert "vm2 has no restore point" in err.value.message
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.READY


async def test_failover_undo_and_test_end_to_end(world, driver) -> None:
    plan, replicas = await site(world)
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    assert [k for k, _ in await steps_of(session.id)] == [
        "SELECT_POINT",
        "POWER_ON",
        "WAIT_HEALTHY",
    ] * 3
    await run(driver)
    row = await FailoverSession.get(id=session.id)
    assert (row.state, row.vms_total, row.vms_up, row.vms_failed) == (S.SUCCEEDED, 3, 3, 0)
    assert row.finished_at is not None and row.recovery_seconds is not None
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.COMPLETED
    assert await power_ons(replicas) == [1, 1, 1]
    assert await replica_states(replicas) == ["FAILOVER"] * 3
    assert (await Job.get(id=row.job_id)).state is JobState.SUCCEEDED  # type: ignore[attr-defined]

    undo = await failover_runs.start(actor, plan.id, SessionKind.UNDO)
    # Failed back in reverse order: the last VM started is the first stopped.
    assert [k for k, _ in await steps_of(undo.id)] == ["POWER_OFF", "RELEASE"] * 3
    first_off = await FailoverStep.get(session_id=undo.id, seq=1)
    assert first_off.replica_id == replicas[2].id
    await run(driver)
    assert (await FailoverSession.get(id=undo.id)).state is S.SUCCEEDED
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.READY
    assert await replica_states(replicas) == ["READY"] * 3
    assert await powered(replicas) == [False] * 3

    test = await failover_runs.start(actor, plan.id, SessionKind.TEST)
    await run(driver)
    row = await FailoverSession.get(id=test.id)
    assert (row.state, row.vms_up) == (S.SUCCEEDED, 3)
    plan_row = await FailoverPlan.get(id=plan.id)
    assert plan_row.state is PlanState.READY
    assert plan_row.last_test_recovery_seconds == row.recovery_seconds is not None
    assert await powered(replicas) == [False] * 3  # powered off again
    assert await replica_states(replicas) == ["READY"] * 3
    results = [
        a.result["isolated"] for a in await SimulatedAction.filter(action="power_on").order_by("id")
    ]
    assert results == [False] * 3 + [True] * 3  # the failover, then the test in isolation
    events = await DomainEvent.filter(kind="failover_session.finished").order_by("id")
    assert [(e.subject_id, e.organization_id, e.payload) for e in events] == [
        (
            s.id,
            world.orgs["A1"].id,
            {"state": "SUCCEEDED", "plan": plan.id, "kind": k, "vms_up": 3, "vms_failed": 0},
        )
        for s, k in ((session, "FAILOVER"), (undo, "UNDO"), (test, "TEST"))
    ]
    audit = await AuditEntry.filter(object_type="FailoverPlan", outcome="SUCCESS").order_by("id")
    assert [a.action for a in audit] == [
        "failoverPlanStart",
        "failoverPlanUndo",
        "failoverPlanTest",
    ]


async def test_delays_scripts_and_public_ips_are_planned(world, driver) -> None:
    plan, replicas = await site(world, pre_failover_script="pre.sh", post_failover_script="post.sh")
    await FailoverPlanVm.filter(plan_id=plan.id).update(delay_seconds=1)
    await FailoverPlanVm.filter(plan_id=plan.id, replica_id=replicas[1].id).update(delay_seconds=0)
    pool = await PublicIpPool.create(
        name="pool", first_address="203.0.113.1", last_address="203.0.113.9"
    )
    for last in (1, 2):
        await PublicIpAllocation.create(
            pool=pool,
            address=f"203.0.113.{last}",
            tenant_account_id=plan.tenant_account_id,  # type: ignore[attr-defined]
        )
    session = await failover_runs.start(await actor_of(world), plan.id, SessionKind.FAILOVER)
    vm = ["SELECT_POINT", "POWER_ON", "WAIT_HEALTHY"]
    assert [k for k, _ in await steps_of(session.id)] == [
        "PRE_SCRIPT",
        *vm,
        "DELAY",  # vm1: 1 s
        *vm,  # vm2: 0 s, no delay
        *vm,  # vm3: the last, no delay
        "NETWORK_APPLIANCE",
        "MAP_PUBLIC_IPS",
        "POST_SCRIPT",
    ]
    await run(driver)
    assert (await FailoverSession.get(id=session.id)).state is S.SUCCEEDED
    mapped = await FailoverStep.get(session_id=session.id, kind=StepKind.MAP_PUBLIC_IPS)
    assert mapped.output == {
        "mapped": {
            "203.0.113.1": vm_ref(replicas[0].id, "vm1"),
            "203.0.113.2": vm_ref(replicas[1].id, "vm2"),
        }
    }
    delay = await FailoverStep.get(session_id=session.id, kind=StepKind.DELAY)
    assert delay.output == {"seconds": 1}
    assert (delay.finished_at - delay.started_at) >= timedelta(seconds=1)  # type: ignore[operator]


# --- restore points --------------------------------------------------------------------------


def test_select_point_boundaries() -> None:
    points = [P1, P2, P3]
    at = datetime.fromisoformat(P2)
    assert select_point(points, PointChoice.LATEST) == P3
    assert select_point(points, PointChoice.BEFORE, at) == P2  # exactly at: chosen
    assert select_point(points, PointChoice.BEFORE, at - timedelta(microseconds=1)) == P1
    assert select_point(points, PointChoice.BEFORE, at + timedelta(days=5)) == P3
    assert (
        select_point(points, PointChoice.BEFORE, datetime.fromisoformat(P1) - timedelta(seconds=1))
        is None
    )
    assert select_point([], PointChoice.LATEST) is None


async def test_restore_point_before_a_time(world, driver) -> None:
    plan, replicas = await site(world, ("vm1", "vm2"))
    await VmReplica.filter(id=replicas[1].id).update(restore_points=[P1, P3])
    actor = await actor_of(world)
    with pytest.raises(BadInput) as err:
        await failover_runs.start(
            actor,
            plan.id,
            SessionKind.TEST,
            PointChoice.BEFORE,
            datetime.fromisoformat(P1) - timedelta(seconds=1),
        )
    assert err.value.field == "input.pointInTime" and "vm1" in err.value.message
    with pytest.raises(BadInput):
        await failover_runs.start(actor, plan.id, SessionKind.TEST, PointChoice.BEFORE, None)
    with pytest.raises(BadInput):
        await failover_runs.start(
            actor, plan.id, SessionKind.TEST, PointChoice.BEFORE, datetime(2026, 1, 2)
        )
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.READY
    session = await failover_runs.start(
        actor, plan.id, SessionKind.FAILOVER, PointChoice.BEFORE, datetime.fromisoformat(P2)
    )
    await run(driver)
    chosen = await FailoverStep.filter(session_id=session.id, kind=StepKind.SELECT_POINT).order_by(
        "seq"
    )
    assert [s.output["restorePoint"] for s in chosen] == [P2, P1]  # vm2 has nothing at P2
    on = await SimulatedAction.filter(action="power_on").order_by("id")
    assert [a.result["restorePoint"] for a in on] == [P2, P1]
    log = [e.message for e in await FailoverLogEntry.filter(session_id=session.id)]
    assert f"vm1: restore point {P2} (closest before {P2})" in log


# --- failure policies ------------------------------------------------------------------------


async def test_stop_policy_skips_the_rest(world, driver) -> None:
    plan, replicas = await site(world, ("vm1", "vm2-fail", "vm3"))
    session = await failover_runs.start(await actor_of(world), plan.id, SessionKind.FAILOVER)
    await run(driver)
    row = await FailoverSession.get(id=session.id)
    assert (row.state, row.vms_up, row.vms_failed) == (S.FAILED, 1, 1)
    assert [s for _, s in await steps_of(session.id)] == (
        ["DONE"] * 3 + ["DONE", "FAILED", "SKIPPED"] + ["SKIPPED"] * 3
    )
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.FAILED
    assert await power_ons(replicas) == [1, 0, 0]
    failed = await FailoverStep.get(session_id=session.id, state=StepState.FAILED)
    assert "refused to power on" in failed.message
    event = await DomainEvent.get(subject_id=session.id)
    assert event.payload["state"] == "FAILED" and event.payload["vms_failed"] == 1


async def test_continue_policy_then_retry_keeps_the_vms_up(world, driver) -> None:
    plan, replicas = await site(world, ("vm1", "vm2-fail", "vm3"), FailurePolicy.CONTINUE)
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    await run(driver)
    row = await FailoverSession.get(id=session.id)
    assert (row.state, row.vms_up, row.vms_failed) == (S.FAILED, 2, 1)
    assert [s for _, s in await steps_of(session.id)] == (
        ["DONE"] * 3 + ["DONE", "FAILED", "SKIPPED"] + ["DONE"] * 3
    )
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.FAILED
    assert await power_ons(replicas) == [1, 0, 1]
    # The hypervisor lets vm2 start now: the retry starts vm2 alone.
    driver.fail_pattern = ""
    retry = await failover_runs.start(actor, plan.id, SessionKind.RETRY)
    retry_steps = await FailoverStep.filter(session_id=retry.id).order_by("seq")
    assert {s.replica_id for s in retry_steps} == {replicas[1].id}
    await run(driver)
    row = await FailoverSession.get(id=retry.id)
    assert (row.state, row.vms_total, row.vms_up, row.vms_failed) == (S.SUCCEEDED, 3, 3, 0)
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.COMPLETED
    assert await power_ons(replicas) == [1, 1, 1]


async def test_a_vm_that_never_becomes_healthy_fails_its_wait(world, driver) -> None:
    plan, replicas = await site(world, ("vm1",), FailurePolicy.CONTINUE)
    driver.fail_rate = 1.0  # every VM boots and never answers
    session = await failover_runs.start(await actor_of(world), plan.id, SessionKind.TEST)
    await run(driver)
    assert await steps_of(session.id) == [
        ("SELECT_POINT", "DONE"),
        ("POWER_ON", "DONE"),
        ("WAIT_HEALTHY", "FAILED"),
        ("POWER_OFF", "DONE"),  # a test cleans up after itself
    ]
    row = await FailoverSession.get(id=session.id)
    assert (row.state, row.vms_failed) == (S.FAILED, 1)
    plan_row = await FailoverPlan.get(id=plan.id)
    assert (plan_row.state, plan_row.last_test_recovery_seconds) == (PlanState.READY, None)
    assert await powered(replicas) == [False]


# --- cancellation ----------------------------------------------------------------------------


async def test_cancel_failover_at_a_step_boundary(world, driver) -> None:
    plan, replicas = await site(world)
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)

    async def cancel() -> None:
        await failover_runs.cancel(actor, session.id)

    driver.hooks[("power_on", "vm2")] = cancel
    await run(driver)
    row = await FailoverSession.get(id=session.id)
    assert row.state is S.CANCELLED
    # vm2's power-on had begun: it is finished; nothing after it starts.
    assert [s for _, s in await steps_of(session.id)] == (
        ["DONE"] * 3 + ["DONE", "DONE", "SKIPPED"] + ["SKIPPED"] * 3
    )
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.FAILED
    assert await power_ons(replicas) == [1, 1, 0]
    assert await powered(replicas) == [True, True, False]  # the VMs up keep running
    assert (await Job.get(id=row.job_id)).state is JobState.CANCELLED  # type: ignore[attr-defined]
    assert (await DomainEvent.get(subject_id=session.id)).payload["state"] == "CANCELLED"
    # Undo from there powers off what is up.
    undo = await failover_runs.start(actor, plan.id, SessionKind.UNDO)
    await run(driver)
    assert (await FailoverSession.get(id=undo.id)).state is S.SUCCEEDED
    assert await powered(replicas) == [False] * 3
    assert await replica_states(replicas) == ["READY"] * 3
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.READY


async def test_cancel_test_powers_off_what_it_booted(world, driver) -> None:
    plan, replicas = await site(world)
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, SessionKind.TEST)

    async def cancel() -> None:
        await failover_runs.cancel(actor, session.id)

    driver.hooks[("power_on", "vm2")] = cancel
    await run(driver)
    assert (await FailoverSession.get(id=session.id)).state is S.CANCELLED
    assert [s for _, s in await steps_of(session.id)] == (
        ["DONE"] * 3 + ["DONE", "DONE", "SKIPPED"] + ["SKIPPED"] * 3 + ["DONE", "DONE", "SKIPPED"]
    )
    assert await power_ons(replicas) == [1, 1, 0]
    assert await powered(replicas) == [False] * 3
    plan_row = await FailoverPlan.get(id=plan.id)
    assert (plan_row.state, plan_row.last_test_recovery_seconds) == (PlanState.READY, None)


async def test_cancel_undo_leaves_the_plan_completed(world, driver) -> None:
    plan, replicas = await site(world)
    actor = await actor_of(world)
    await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    await run(driver)
    undo = await failover_runs.start(actor, plan.id, SessionKind.UNDO)

    async def cancel() -> None:
        await failover_runs.cancel(actor, undo.id)

    driver.hooks[("power_off", "vm3")] = cancel  # the first one stopped
    await run(driver)
    assert (await FailoverSession.get(id=undo.id)).state is S.CANCELLED
    assert [s for _, s in await steps_of(undo.id)] == ["DONE"] + ["SKIPPED"] * 5
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.COMPLETED
    assert await replica_states(replicas) == ["FAILOVER", "FAILOVER", "FAILBACK"]
    again = await failover_runs.start(actor, plan.id, SessionKind.UNDO)
    assert await FailoverStep.filter(session_id=again.id).count() == 6
    await run(driver)
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.READY


@pytest.mark.parametrize(
    ("kind", "before", "after"),
    [
        (SessionKind.FAILOVER, PlanState.READY, PlanState.FAILED),
        (SessionKind.TEST, PlanState.READY, PlanState.READY),
        (SessionKind.UNDO, PlanState.COMPLETED, PlanState.COMPLETED),
    ],
)
async def test_cancel_before_the_worker_starts_ends_at_once(
    world, driver, kind, before, after
) -> None:
    plan, replicas = await site(world)
    if before is PlanState.COMPLETED:
        await FailoverPlan.filter(id=plan.id).update(state=before)
        await VmReplica.filter(id__in=[r.id for r in replicas]).update(state=ReplicaState.FAILOVER)
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, kind)
    row = await failover_runs.cancel(actor, session.id)
    assert row.state is S.CANCELLED and row.finished_at is not None
    assert (await Job.get(id=row.job_id)).state is JobState.CANCELLED  # type: ignore[attr-defined]
    assert (await FailoverPlan.get(id=plan.id)).state is after
    assert await run_queued_inline(driver.broker) >= 0
    assert await power_ons(replicas) == [0, 0, 0]
    with pytest.raises(Conflict) as err:
        await failover_runs.cancel(actor, session.id)
    assert "CANCELLED" in err.value.message
    entry = await AuditEntry.filter(action="failoverSessionCancel").order_by("id").first()
    assert entry is not None and entry.details["outcome"] == "ended"


# --- crashes ---------------------------------------------------------------------------------


async def test_a_worker_dying_after_the_power_on_never_powers_a_vm_twice(
    world, driver, monkeypatch
) -> None:
    plan, replicas = await site(world)
    real = failover_steps.commit_step
    crashes: list[int] = []

    async def dying(run, step, state, output, message, first_failure):  # type: ignore[no-untyped-def]
        # The hypervisor has acted; the worker dies before writing the step (once per VM).
        if step.kind is StepKind.POWER_ON and step.replica_id not in crashes:
            crashes.append(step.replica_id)
            raise ConnectionResetError("worker lost its database mid-step")
        await real(run, step, state, output, message, first_failure)

    monkeypatch.setattr(failover_steps, "commit_step", dying)
    session = await failover_runs.start(await actor_of(world), plan.id, SessionKind.FAILOVER)
    await run(driver)
    assert crashes == [r.id for r in replicas]
    row = await FailoverSession.get(id=session.id)
    assert (row.state, row.vms_up) == (S.SUCCEEDED, 3)
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.COMPLETED
    assert await power_ons(replicas) == [1, 1, 1]
    assert await SimulatedAction.filter(action="power_on").count() == 3
    power = await FailoverStep.filter(session_id=session.id, kind=StepKind.POWER_ON)
    assert [s.attempts for s in power] == [2, 2, 2]  # issued again with the same key
    job = await Job.get(id=row.job_id)  # type: ignore[attr-defined]
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 4)
    # The message delivered again, or the executor run again: nothing changes.
    from workers.actors.jobs import execute

    assert await execute(job.id, "late") == "skipped"
    summary = await failover_executor.execute(session.id)
    assert summary == {"session": session.id, "state": "SUCCEEDED", "vmsUp": 3, "vmsFailed": 0}
    assert await power_ons(replicas) == [1, 1, 1]
    assert await DomainEvent.filter(subject_id=session.id).count() == 1


async def test_a_run_that_cannot_go_on_ends_its_session(world, driver, monkeypatch) -> None:
    plan, _ = await site(world, ("vm1",))

    async def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(failover_steps, "commit_step", broken)
    session = await failover_runs.start(await actor_of(world), plan.id, SessionKind.FAILOVER)
    await run(driver)
    row = await FailoverSession.get(id=session.id)
    assert row.state is S.FAILED and "a bug" in (row.error or "")
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.FAILED


# --- disabling -------------------------------------------------------------------------------


async def test_disabling_the_company_ends_its_failover_work(world, driver) -> None:
    plan, replicas = await site(world)
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    await tenancy.set_organization_enabled(actor, world.orgs["A1"].id, OrgKind.COMPANY, False)
    row = await FailoverSession.get(id=session.id)
    assert row.state is S.CANCELLED
    assert (await FailoverPlan.get(id=plan.id)).state is PlanState.FAILED
    entry = await AuditEntry.get(action="companyDisable")
    assert entry.details["failoverSessionsCancelled"] == [session.id]
    log = [e.message for e in await FailoverLogEntry.filter(session_id=session.id)]
    assert "cancel: organization disabled" in log
    await run(driver)
    assert await power_ons(replicas) == [0, 0, 0]


async def test_disabling_the_tenant_account_stops_a_running_session(world, driver) -> None:
    plan, replicas = await site(world)
    other, _ = await site(world, ("b1",), company="B1")
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    untouched = await failover_runs.start(actor, other.id, SessionKind.TEST)

    async def disable() -> None:
        await tenant_accounts.set_enabled(actor, plan.tenant_account_id, False)  # type: ignore[attr-defined]

    driver.hooks[("power_on", "vm2")] = disable
    await run(driver)
    assert (await FailoverSession.get(id=session.id)).state is S.CANCELLED
    assert (await FailoverSession.get(id=untouched.id)).state is S.SUCCEEDED
    assert await power_ons(replicas) == [1, 1, 0]
    entry = await AuditEntry.get(action="tenantAccountDisable")
    assert entry.details["failoverSessionsCancelled"] == [session.id]


# --- concurrency (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_two_concurrent_starts_make_one_run(world, driver) -> None:
    plan, _ = await site(world)
    actor = await actor_of(world)
    results = await asyncio.gather(
        *(failover_runs.start(actor, plan.id, SessionKind.FAILOVER) for _ in range(2)),
        return_exceptions=True,
    )
    sessions = [r for r in results if isinstance(r, FailoverSession)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert (len(sessions), len(conflicts)) == (1, 1), results
    assert await FailoverSession.filter(plan_id=plan.id).count() == 1
    assert await Job.filter(kind="failover.run").count() == 1
    assert await FailoverStep.filter(session_id=sessions[0].id).count() == 9


# --- GraphQL ---------------------------------------------------------------------------------

SESSION_FIELDS = """id planId kind state pointChoice pointInTime vmsTotal vmsUp vmsFailed
  recoverySeconds error finishedAt jobId viewerCanCancel
  steps { seq kind state vmName attempts message restorePoint }
  log(first: 3) { totalCount pageInfo { hasNextPage endCursor } nodes { level stepSeq message } }"""
START = f"""mutation($input: FailoverPlanRunInput!) {{ failoverPlanStart(input: $input) {{
  {SESSION_FIELDS} }} }}"""
TEST = "mutation($input: FailoverPlanRunInput!) { failoverPlanTest(input: $input) { id state } }"
RETRY = "mutation($input: FailoverPlanRunInput!) { failoverPlanRetry(input: $input) { id } }"
UNDO = "mutation($id: ID!) { failoverPlanUndo(planId: $id) { id kind } }"
CANCEL = "mutation($id: ID!) { failoverSessionCancel(id: $id) { id state } }"
ONE = f"query($id: ID!) {{ failoverSession(id: $id) {{ {SESSION_FIELDS} }} }}"
LIST = """query($filter: FailoverSessionFilter) { failoverSessions(first: 20, filter: $filter) {
  nodes { id kind state } } }"""


async def test_graphql_start_read_list_and_cancel(world, driver, gql) -> None:
    plan, _ = await site(world, ("vm1", "vm2"))
    token = world.token(*OWNER)
    pid = gid("FailoverPlan", plan.id)
    body = await gql(
        START,
        {"input": {"planId": pid, "pointChoice": "BEFORE", "pointInTime": P2}},
        token=token,
    )
    started = body["data"]["failoverPlanStart"]
    assert (started["state"], started["kind"], started["pointChoice"]) == (
        "RUNNING",
        "FAILOVER",
        "BEFORE",
    )
    assert started["viewerCanCancel"] is True
    assert [s["state"] for s in started["steps"]] == ["PENDING"] * 6
    body = await gql(START, {"input": {"planId": pid}}, token=token)
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert "IN_PROGRESS" in body["errors"][0]["message"]
    await run(driver)
    body = await gql(ONE, {"id": started["id"]}, token=token)
    got = body["data"]["failoverSession"]
    assert (got["state"], got["vmsUp"], got["viewerCanCancel"]) == ("SUCCEEDED", 2, False)
    assert got["steps"][0] == {
        "seq": 1,
        "kind": "SELECT_POINT",
        "state": "DONE",
        "vmName": "vm1",
        "attempts": 1,
        "message": f"vm1: restore point {P2} (closest before {P2})",
        "restorePoint": P2,
    }
    assert got["log"]["totalCount"] == 8  # requested, 6 steps, the end
    assert got["log"]["pageInfo"]["hasNextPage"] is True
    assert got["log"]["nodes"][0]["message"].startswith("failover requested by")
    page2 = await gql(
        "query($id: ID!, $after: String) { failoverSession(id: $id) { log(first: 10, after: $after)"
        " { pageInfo { hasNextPage } nodes { stepSeq } } } }",
        {"id": started["id"], "after": got["log"]["pageInfo"]["endCursor"]},
        token=token,
    )
    assert [n["stepSeq"] for n in page2["data"]["failoverSession"]["log"]["nodes"]] == [
        3,
        4,
        5,
        6,
        None,
    ]
    body = await gql(UNDO, {"id": pid}, token=token)
    undo_id = body["data"]["failoverPlanUndo"]["id"]
    body = await gql(CANCEL, {"id": undo_id}, token=token)
    assert body["data"]["failoverSessionCancel"]["state"] == "CANCELLED"
    body = await gql(LIST, {"filter": {"planId": pid}}, token=token)
    assert [(n["kind"], n["state"]) for n in body["data"]["failoverSessions"]["nodes"]] == [
        ("UNDO", "CANCELLED"),
        ("FAILOVER", "SUCCEEDED"),
    ]
    body = await gql(LIST, {"filter": {"state": "SUCCEEDED"}}, token=token)
    assert [n["id"] for n in body["data"]["failoverSessions"]["nodes"]] == [started["id"]]
    body = await gql("query($id: ID!) { node(id: $id) { id } }", {"id": undo_id}, token=token)
    assert body["data"]["node"] == {"id": undo_id}
    body = await gql(RETRY, {"input": {"planId": pid}}, token=token)
    assert "COMPLETED" in body["errors"][0]["message"]


async def test_a_page_of_sessions_costs_the_same_whatever_its_size(world, driver, gql) -> None:
    token = world.token(*GA)
    query = f"query {{ failoverSessions(first: 50) {{ nodes {{ {SESSION_FIELDS} }} }} }}"
    counts = []
    for n in (1, 4):
        for i in range(n):
            company = "A1" if i % 2 else "A2"
            names = (f"p{n}-{i}-a", f"p{n}-{i}-b")
            plan, _ = await site(world, names, company=company, name=f"plan {n}-{i}")
            await failover_runs.start(await actor_of(world), plan.id, SessionKind.TEST)
        await run(driver)
        with count_queries() as queries:
            body = await gql(query, token=token)
        assert "errors" not in body, body
        counts.append(queries.count)
        assert len(body["data"]["failoverSessions"]["nodes"]) == (1 if n == 1 else 5)
    # Steps, log pages and log counts come through loaders: one statement each per page.
    assert counts[1] == counts[0], counts


async def test_live_progress(world, driver) -> None:
    from app.graphql.failover.sessions import follow
    from app.services import events

    events.install(TEST_SETTINGS)
    plan, _ = await site(world, ("vm1",))
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    seen: list[tuple[str, int]] = []

    async def watch() -> None:
        async for item in follow(actor.p, session.id):
            seen.append((item.state.value, item.vms_up))  # type: ignore[attr-defined]

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.05)
    await run(driver)
    await asyncio.wait_for(watcher, 5)
    assert seen[0] == ("RUNNING", 0)
    assert seen[-1] == ("SUCCEEDED", 1)
    assert len(seen) >= 4  # a wake-up per step


@pytest.mark.parametrize(
    "who", [("R2", "Service Provider Global Administrator"), ("B1", "Company Owner")]
)
async def test_other_tenants_sessions_are_not_found(world, driver, gql, who) -> None:
    plan, _ = await site(world, ("vm1",))
    session = await failover_runs.start(await actor_of(world), plan.id, SessionKind.FAILOVER)
    sid, pid = gid("FailoverSession", session.id), gid("FailoverPlan", plan.id)
    token = world.token(*who)
    for document, variables, field in (
        (ONE, {"id": sid}, "failoverSession"),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": sid}, "node"),
        (CANCEL, {"id": sid}, "failoverSessionCancel"),
        (TEST, {"input": {"planId": pid}}, "failoverPlanTest"),
        (UNDO, {"id": pid}, "failoverPlanUndo"),
    ):
        body = await gql(document, variables, token=token)
        assert outcome(body, field) == "NOT_FOUND", (document, body)
    body = await gql(LIST, {}, token=token)
    assert body["data"]["failoverSessions"]["nodes"] == []
    assert (await FailoverSession.get(id=session.id)).state is S.RUNNING


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_runs_follow_the_matrix(subject: Subject, use_settings, db, gql, driver) -> None:
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    ga = await actor_of(world)
    visible: list[str] = []
    for company_key in sorted({home_company(world, subject), "A1"}):
        org = world.orgs[company_key]
        plan, _ = await site(world, (f"{company_key}-vm",), company=company_key)
        other, _ = await site(
            world, (f"{company_key}-vm2",), company=company_key, name=f"{company_key} other"
        )
        session = await failover_runs.start(ga, plan.id, SessionKind.FAILOVER)
        sid = gid("FailoverSession", session.id)

        body = await gql(ONE, {"id": sid}, token=token)
        want = expected(p, FAILOVER_SESSIONS, Action.READ, org)
        assert outcome(body, "failoverSession") == want, (company_key, body)
        if want is None:
            visible.append(sid)
            assert body["data"]["failoverSession"]["log"]["totalCount"] == 1
            can_cancel = expected(p, FAILOVER_SESSIONS, Action.UPDATE, org) is None
            assert body["data"]["failoverSession"]["viewerCanCancel"] == can_cancel

        body = await gql(TEST, {"input": {"planId": gid("FailoverPlan", other.id)}}, token=token)
        want = expected(p, FAILOVER_SESSIONS, Action.CREATE, org)
        assert outcome(body, "failoverPlanTest") == want, (company_key, body)
        if want is None:
            visible.append(body["data"]["failoverPlanTest"]["id"])
        assert await FailoverSession.filter(plan_id=other.id).count() == (want is None)

        body = await gql(CANCEL, {"id": sid}, token=token)
        want = expected(p, FAILOVER_SESSIONS, Action.UPDATE, org)
        assert outcome(body, "failoverSessionCancel") == want, (company_key, body)
        state = (await FailoverSession.get(id=session.id)).state
        assert state is (S.CANCELLED if want is None else S.RUNNING)
    body = await gql(LIST, {}, token=token)
    if not engine.allows(p, FAILOVER_SESSIONS, Action.READ):
        assert outcome(body, "failoverSessions") == "FORBIDDEN"
    else:
        got = [n["id"] for n in body["data"]["failoverSessions"]["nodes"]]
        assert sorted(got) == sorted(visible)


def test_the_matrix_has_read_only_and_no_access_cells() -> None:
    """The table above meets both: Read cells (read, no start) and N/A cells (nothing)."""
    from tests.permission_cases import make_principal

    cells = set()
    for s in ALL_SUBJECTS:
        p = make_principal(s.portal, s.role)
        read = engine.allows(p, FAILOVER_SESSIONS, Action.READ)
        run_ = engine.allows(p, FAILOVER_SESSIONS, Action.CREATE)
        cells.add("full" if run_ else "read" if read else "none")
    assert cells == {"full", "read", "none"}
