"""Failover plans on real `tenantry worker` processes, Redis and PostgreSQL: a worker killed with
`kill -9` in the middle of a plan (a failover, and a test failover) leaves a run that a new
worker finishes with every VM powered on exactly once (the simulator counts the power-on
actions each VM received), every step done once and one continuous session log; two
concurrent start requests make one session and one job, the other is CONFLICT.

CI's second pass runs these (TENANTRY_TEST_DATABASE_URL, TENANTRY_TEST_REDIS_URL and
TENANTRY_REQUIRE_SERVICES=1); without those variables they are skipped, and with
TENANTRY_REQUIRE_SERVICES=1 a missing service fails them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.auth.authenticate import principal_for_bearer
from app.errors import Conflict
from app.models import Job, JobState
from app.models.cloud import ReplicaState, TenantAccount, TenantAccountType, VmReplica
from app.models.failover import (
    FailoverLogEntry,
    FailoverPlan,
    FailoverPlanVm,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    PlanState,
    SessionKind,
    SimulatedAction,
    SimulatedVm,
    StepKind,
    StepState,
)
from app.services import failover_runs, jobs
from app.services.actor import Actor
from tests.workerproc import (
    WorkerProcess,
    redis_broker,
    require_services,
    wait_for,
    worker_processes,
)

# A Redis database of its own (test_worker_process: 7, discovery: 8, scheduler: 13, bench: 11/12).
REDIS_DB = 9
PROVIDER_ADMIN = ("Provider", "Service Provider Global Administrator")
VMS = 12
# Long enough to catch a plan mid-boot, short enough for the file to stay well under a minute.
BOOT_SECONDS = "0.3"


@pytest.fixture(autouse=True)
def services():
    require_services()


@pytest.fixture
def broker(db, monkeypatch):
    """This process sends `run_job` through the Redis namespace the worker processes read."""
    with redis_broker(REDIS_DB, "tenantry-failover", monkeypatch) as (_, settings):
        yield settings


@pytest.fixture
def workers(broker, tmp_path: Path):
    """Start worker processes (simulator boot time BOOT_SECONDS); all stopped at the end."""
    env = {"TENANTRY_HYPERVISOR_DRIVER": "simulator", "TENANTRY_HV_SIM_BOOT_SECONDS": BOOT_SECONDS}
    with worker_processes(broker, tmp_path, env) as start:
        yield start


@dataclass
class Site:
    actor: Actor
    plan: FailoverPlan
    replicas: list[VmReplica]


async def build_site(world, name: str = "Site", vms: int = VMS) -> Site:
    """A1's tenant account with `vms` replicas (two restore points each) in one plan, no delays."""
    account = await TenantAccount.create(
        company=world.orgs["A1"],
        name=f"a1-{name.lower()}",
        type=TenantAccountType.STANDALONE,
        password_hash="x",
    )
    base = datetime(2026, 11, 1, tzinfo=UTC)
    points = [base.isoformat(), (base + timedelta(hours=12)).isoformat()]
    replicas = [
        await VmReplica.create(
            tenant_account=account,
            name=f"{name}-vm{i:02}",
            source_vm=f"vm{i}",
            restore_points=points,
        )
        for i in range(vms)
    ]
    plan = await FailoverPlan.create(company=world.orgs["A1"], tenant_account=account, name=name)
    await FailoverPlanVm.bulk_create(
        [FailoverPlanVm(plan=plan, replica=r, position=i) for i, r in enumerate(replicas)]
    )
    actor = Actor(await principal_for_bearer(world.token(*PROVIDER_ADMIN)))
    return Site(actor, plan, replicas)


async def steps_of(session_id: int) -> list[FailoverStep]:
    return list(await FailoverStep.filter(session_id=session_id).order_by("seq"))


async def session_of(session_id: int) -> FailoverSession:
    return await FailoverSession.get(id=session_id)


async def powered_on(step: FailoverStep) -> bool:
    """The simulator has powered the step's VM on (whatever key it was asked with)."""
    replica = await VmReplica.get(id=step.replica_id)
    ref = f"replica/{replica.id}/{replica.name}"
    return await SimulatedVm.filter(vm_ref=ref, power_on_count__gt=0).exists()


async def kill_mid_run(first: WorkerProcess, session: FailoverSession) -> dict[int, StepKind]:
    """Kill -9 the worker group in the worst place: after the simulator powered a VM on (the
    power-on is committed) and before the POWER_ON step's outcome is written. The group is
    frozen (SIGSTOP) whenever a POWER_ON step is seen RUNNING once some VMs are up; if the
    power-on is done it is killed there, otherwise it goes on. Should no freeze land in that
    window before most VMs are up, the kill falls on whatever step is RUNNING. Returns the
    steps the kill left RUNNING (started, outcome not written), by seq."""

    async def in_the_window() -> bool:
        row = await session_of(session.id)
        if row.vms_up < 3:
            return False
        step = await FailoverStep.filter(
            session_id=session.id, state=StepState.RUNNING, kind=StepKind.POWER_ON
        ).first()
        if step is None:
            if row.vms_up < VMS - 2:
                return False
            # The fallback freezes the group too, and kills only if a step is still RUNNING
            # while frozen: unfrozen, the step could finish between this read and the kill.
            first.pause()
            try:
                any_running = FailoverStep.filter(session_id=session.id, state=StepState.RUNNING)
                if await any_running.exists():
                    return True
            except BaseException:
                first.unpause()
                raise
            first.unpause()
            return False
        first.pause()
        try:
            still = await FailoverStep.filter(id=step.id, state=StepState.RUNNING).exists()
            acted = await powered_on(step)
        except BaseException:
            first.unpause()
            raise
        if still and acted:
            return True
        first.unpause()
        return False

    await wait_for(in_the_window, 20, "some VMs up and a step RUNNING", every=0.001)
    first.kill()
    at_kill = await session_of(session.id)
    assert 3 <= at_kill.vms_up < VMS, "the plan finished before the kill: nothing was proven"
    assert at_kill.state is FailoverSessionState.RUNNING
    running = await FailoverStep.filter(session_id=session.id, state=StepState.RUNNING)
    assert len(running) == 1, [s.seq for s in running]  # one step at a time, cut by the kill
    acted = await powered_on(running[0])
    print(
        f"killed: {at_kill.vms_up} VMs up, {running[0].kind} {running[0].seq} RUNNING, acted {acted}"
    )
    return {s.seq: s.kind for s in running}


async def resume(workers, session: FailoverSession) -> None:
    """A new worker, the job recovered once the dead worker's heartbeat is stale (the scheduler
    runs `jobs.recover` every few seconds; called here so the test does not wait for it), and
    the session run to its end."""
    workers()
    job_id = session.job_id  # type: ignore[attr-defined]

    async def stale():
        job = await Job.get(id=job_id)
        return job.state is not JobState.RUNNING or job.heartbeat_at < jobs.now() - jobs.STALE_AFTER

    await wait_for(stale, 10, "the dead worker's heartbeat to go stale")
    await jobs.recover()

    async def ended():
        if (await session_of(session.id)).state is FailoverSessionState.RUNNING:
            return False
        job = await Job.get(id=job_id)  # the session ends first, then its job
        return job.state not in {JobState.QUEUED, JobState.RUNNING}

    await wait_for(ended, 30, "the new worker to finish the session and its job")


async def assert_log_continuous(session_id: int, steps: list[FailoverStep]) -> list[str]:
    """One line when requested, one per step in order (each exactly once), one at the end,
    and one saying the run was resumed after the worker died."""
    log = list(await FailoverLogEntry.filter(session_id=session_id).order_by("id"))
    resumed = [e for e in log if e.message.startswith("resumed after an interruption")]
    assert len(resumed) == 1, [e.message for e in log]
    assert "attempt 2" in resumed[0].message, resumed[0].message
    log = [e for e in log if e not in resumed]
    assert log[0].step_seq is None and "requested" in log[0].message, log[0].message
    assert log[-1].step_seq is None, log[-1].message
    assert [e.step_seq for e in log[1:-1]] == [s.seq for s in steps]
    assert [e.at for e in log] == sorted(e.at for e in log)
    return [e.message for e in log]


async def test_worker_killed_mid_failover_is_resumed_with_each_vm_powered_on_once(world, workers):
    site = await build_site(world)
    first = workers()
    session = await failover_runs.start(site.actor, site.plan.id, SessionKind.FAILOVER)
    cut = await kill_mid_run(first, session)

    await resume(workers, session)

    row = await session_of(session.id)
    assert (row.state, row.error) == (FailoverSessionState.SUCCEEDED, None)
    assert (row.vms_total, row.vms_up, row.vms_failed) == (VMS, VMS, 0)
    assert row.recovery_seconds is not None and row.recovery_seconds > 0
    plan = await FailoverPlan.get(id=site.plan.id)
    assert (plan.state, plan.current_session_id) == (PlanState.COMPLETED, session.id)
    job = await Job.get(id=session.job_id)  # type: ignore[attr-defined]
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)
    assert job.worker_id.split(":")[1] != str(first.proc.pid)

    # Every VM: powered on exactly once, up, failed over.
    refs = {f"replica/{r.id}/{r.name}" for r in site.replicas}
    vms = {vm.vm_ref: vm for vm in await SimulatedVm.filter(vm_ref__in=list(refs))}
    assert set(vms) == refs
    assert {ref: vm.power_on_count for ref, vm in vms.items()} == dict.fromkeys(refs, 1)
    assert all(vm.powered_on and not vm.isolated for vm in vms.values())
    power_ons = await SimulatedAction.filter(action="power_on", vm_ref__in=list(refs)).count()
    assert power_ons == VMS
    states = await VmReplica.filter(id__in=[r.id for r in site.replicas]).values_list(
        "state", flat=True
    )
    assert set(states) == {ReplicaState.FAILOVER}

    # Every step DONE once: 3 per VM, in plan order, the one cut by the kill issued twice
    # (same idempotency key), the others once.
    steps = await steps_of(session.id)
    assert [s.kind for s in steps] == [
        k
        for _ in range(VMS)
        for k in (StepKind.SELECT_POINT, StepKind.POWER_ON, StepKind.WAIT_HEALTHY)
    ]
    assert [s.replica_id for s in steps[::3]] == [r.id for r in site.replicas]
    assert {s.state for s in steps} == {StepState.DONE}
    assert {s.seq for s in steps if s.attempts != 1} == set(cut), [
        (s.seq, s.attempts) for s in steps
    ]
    assert all(s.attempts == 2 for s in steps if s.seq in cut)
    assert all(s.finished_at >= s.started_at for s in steps)  # type: ignore[operator]

    await assert_log_continuous(session.id, steps)


async def test_worker_killed_mid_test_failover_is_resumed_and_leaves_the_plan_ready(world, workers):
    site = await build_site(world, "Drill")
    first = workers()
    session = await failover_runs.start(site.actor, site.plan.id, SessionKind.TEST)
    cut = await kill_mid_run(first, session)

    await resume(workers, session)

    row = await session_of(session.id)
    assert (row.state, row.error) == (FailoverSessionState.SUCCEEDED, None)
    assert (row.vms_up, row.vms_failed) == (VMS, 0)
    plan = await FailoverPlan.get(id=site.plan.id)
    assert plan.state is PlanState.READY
    # The measured recovery time: from the start to the last VM healthy, resumption included.
    assert plan.last_test_recovery_seconds == row.recovery_seconds
    assert plan.last_test_recovery_seconds is not None
    assert plan.last_test_recovery_seconds >= VMS * float(BOOT_SECONDS)
    assert plan.last_test_at is not None

    refs = {f"replica/{r.id}/{r.name}" for r in site.replicas}
    vms = await SimulatedVm.filter(vm_ref__in=list(refs))
    assert len(vms) == VMS
    # Booted once each, in isolation, and powered off again.
    assert [vm.power_on_count for vm in vms] == [1] * VMS
    assert [(vm.powered_on, vm.isolated) for vm in vms] == [(False, False)] * VMS
    actions = await SimulatedAction.filter(vm_ref__in=list(refs)).values_list("action", "result")
    assert sorted(a for a, _ in actions) == ["power_off"] * VMS + ["power_on"] * VMS
    assert all(r["isolated"] for a, r in actions if a == "power_on")
    assert all(r["wasOn"] for a, r in actions if a == "power_off")
    # A test leaves the replicas as they were.
    states = await VmReplica.filter(id__in=[r.id for r in site.replicas]).values_list(
        "state", flat=True
    )
    assert set(states) == {ReplicaState.READY}

    steps = await steps_of(session.id)
    assert {s.state for s in steps} == {StepState.DONE}
    assert [s.kind for s in steps[-VMS:]] == [StepKind.POWER_OFF] * VMS
    assert {s.seq for s in steps if s.attempts != 1} == set(cut), [
        (s.seq, s.attempts) for s in steps
    ]
    await assert_log_continuous(session.id, steps)


async def test_two_concurrent_starts_make_one_session_and_one_job(world, broker):
    """On PostgreSQL the two requests run in two transactions at once; one conditional UPDATE
    of the plan decides. Several rounds, both orders, each plan its own."""
    for round_ in range(4):
        site = await build_site(world, f"Race{round_}", vms=3)
        kinds = [SessionKind.FAILOVER, SessionKind.TEST]
        if round_ % 2:
            kinds.reverse()
        outcomes = await asyncio.gather(
            *(failover_runs.start(site.actor, site.plan.id, k) for k in kinds),
            return_exceptions=True,
        )
        won = [o for o in outcomes if isinstance(o, FailoverSession)]
        lost = [o for o in outcomes if isinstance(o, Exception)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert isinstance(lost[0], Conflict), repr(lost[0])
        assert lost[0].code == "CONFLICT"
        sessions = await FailoverSession.filter(plan_id=site.plan.id)
        assert [s.id for s in sessions] == [won[0].id]
        assert await FailoverStep.filter(session__plan_id=site.plan.id).count() == len(
            await steps_of(won[0].id)
        )
        job_ids = await Job.filter(kind="failover.run").values_list("id", flat=True)
        assert sorted(job_ids)[-1] == won[0].job_id  # type: ignore[attr-defined]
        assert len(job_ids) == round_ + 1  # one job per round: the loser wrote none
        plan = await FailoverPlan.get(id=site.plan.id)
        running = {
            SessionKind.FAILOVER: PlanState.IN_PROGRESS,
            SessionKind.TEST: PlanState.TEST_IN_PROGRESS,
        }
        assert plan.state is running[won[0].kind]
        assert plan.current_session_id == won[0].id
    # No job left without a session, none sent twice.
    assert await Job.filter(kind="failover.run").count() == 4


async def test_two_concurrent_graphql_starts_make_one_run(world, broker, gql):
    """The same through the API: two failoverPlanStart requests at once, one answered with the
    session, the other with a CONFLICT error and no data."""
    from app.graphql.ids import to_global_id

    site = await build_site(world, "Api", vms=3)
    document = (
        "mutation($input: FailoverPlanRunInput!) { failoverPlanStart(input: $input) { id state } }"
    )
    variables = {"input": {"planId": to_global_id("FailoverPlan", site.plan.id)}}
    token = world.token(*PROVIDER_ADMIN)
    bodies = await asyncio.gather(*(gql(document, variables, token=token) for _ in range(2)))
    won = [b for b in bodies if not b.get("errors")]
    lost = [b for b in bodies if b.get("errors")]
    assert len(won) == 1 and len(lost) == 1, bodies
    assert won[0]["data"]["failoverPlanStart"]["state"] == "RUNNING"
    assert [e["extensions"]["code"] for e in lost[0]["errors"]] == ["CONFLICT"]
    assert lost[0]["data"] is None
    sessions = await FailoverSession.filter(plan_id=site.plan.id)
    assert [to_global_id("FailoverSession", s.id) for s in sessions] == [
        won[0]["data"]["failoverPlanStart"]["id"]
    ]
    assert await Job.filter(kind="failover.run").count() == 1
