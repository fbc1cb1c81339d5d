"""Failover runs that wait without holding a worker thread: a VM booting or a delay parks the
`failover.run` job (app.jobs.context.ContinueLater) and the next delivery goes on with the same
step — not marked again, not another attempt, no "resumed" note; a cancel during a health wait
ends it at the next wake-up (the step SKIPPED, the session CANCELLED, a test's VM powered off);
a worker lost during a wait resumes without a second power-on; and more plans than worker
threads boot their VMs side by side under a real dramatiq Worker."""

from __future__ import annotations

import asyncio

import pytest

from app.integrations.hypervisor import override_hypervisor
from app.jobs.context import INLINE_WAIT_SECONDS
from app.models import Job, JobState
from app.models.failover import (
    FailoverLogEntry,
    FailoverPlan,
    FailoverPlanVm,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    PlanState,
    SessionKind,
    SimulatedVm,
    StepKind,
    StepState,
)
from app.services import failover_runs, jobs
from tests.test_failover_runs import Hooked, actor_of, power_ons, powered, site, steps_of
from tests.test_worker_stub import filedb  # noqa: F401  (the worker's SQLite file)
from workers.actors.jobs import execute

S = FailoverSessionState


@pytest.fixture
def booting(db):
    """The simulator with a boot time; dispatches recorded ([(job_id, delay_ms)]), and the
    deliveries run by the test with `execute`."""
    sim = Hooked(boot_seconds=3600.0)
    sent: list[tuple[int, int | None]] = []
    previous = jobs._dispatcher
    jobs.set_dispatcher(lambda job_id, delay: sent.append((job_id, delay)))
    override_hypervisor(sim)
    sim.sent = sent  # type: ignore[attr-defined]
    yield sim
    override_hypervisor(None)
    jobs.set_dispatcher(previous)


async def wait_step(session_id: int, replica_id: int) -> FailoverStep:
    return await FailoverStep.get(
        session_id=session_id, kind=StepKind.WAIT_HEALTHY, replica_id=replica_id
    )


async def resumed_notes(session_id: int) -> list[str]:
    log = await FailoverLogEntry.filter(session_id=session_id).values_list("message", flat=True)
    return [m for m in log if m.startswith("resumed after")]


async def deliver_until_done(job_id: int, sent: list[tuple[int, int | None]]) -> int:
    """Deliver the job as the broker would (each delivery after the delay it was sent with)
    until it ends; the deliveries."""
    n = 1
    while await execute(job_id, f"w{n}") == "waiting":
        delay = sent[-1][1] or 0
        await asyncio.sleep(delay / 1000)
        n += 1
    return n


@pytest.mark.parametrize("kind", [SessionKind.FAILOVER, SessionKind.TEST])
async def test_a_cancel_during_a_boot_ends_the_wait_at_the_next_wake_up(
    world, booting, kind
) -> None:
    plan, replicas = await site(world, ("vm1", "vm2"))
    actor = await actor_of(world)
    session = await failover_runs.start(actor, plan.id, kind)
    job_id: int = session.job_id  # type: ignore[attr-defined]

    assert await execute(job_id, "w1") == "waiting"
    job = await Job.get(id=job_id)
    assert (job.state, job.worker_id, job.attempts) == (JobState.RUNNING, jobs.WAITING, 1)
    assert job.progress_message.startswith("vm1: booting for")
    wait = await wait_step(session.id, replicas[0].id)
    assert (wait.state, wait.attempts) == (StepState.RUNNING, 1)
    assert (await FailoverSession.get(id=session.id)).state is S.RUNNING

    # Woken: still booting; the same step waits again, neither marked again nor re-tried.
    assert await execute(job_id, "w2") == "waiting"
    assert (await wait_step(session.id, replicas[0].id)).attempts == 1

    booting.sent.clear()
    await failover_runs.cancel(actor, session.id)
    assert booting.sent == [(job_id, None)]  # woken now, not at its next check
    assert await execute(job_id, "w3") == "cancelled"

    row = await FailoverSession.get(id=session.id)
    assert (row.state, row.vms_up, row.vms_failed) == (S.CANCELLED, 0, 0)
    wait = await wait_step(session.id, replicas[0].id)
    assert (wait.state, wait.attempts, wait.output) == (StepState.SKIPPED, 1, {"cut": True})
    assert "cancel requested while it was booting" in wait.message
    line = await FailoverLogEntry.get(session_id=session.id, step_seq=wait.seq)
    assert line.level == "WARN"
    boot = [("SELECT_POINT", "DONE"), ("POWER_ON", "DONE"), ("WAIT_HEALTHY", "SKIPPED")]
    not_started = [
        ("SELECT_POINT", "SKIPPED"),
        ("POWER_ON", "SKIPPED"),
        ("WAIT_HEALTHY", "SKIPPED"),
    ]
    if kind is SessionKind.TEST:  # the booting VM is powered off again
        cleanup = [("POWER_OFF", "DONE"), ("POWER_OFF", "SKIPPED")]
        assert await steps_of(session.id) == boot + not_started + cleanup
        assert await powered(replicas) == [False, False]
        assert (await FailoverPlan.get(id=plan.id)).state is PlanState.READY
    else:  # a cancelled failover leaves what it started running
        assert await steps_of(session.id) == boot + not_started
        assert await powered(replicas) == [True, False]
        assert (await FailoverPlan.get(id=plan.id)).state is PlanState.FAILED
    assert await power_ons(replicas) == [1, 0]
    job = await Job.get(id=job_id)
    assert (job.state, job.attempts) == (JobState.CANCELLED, 1)
    assert await resumed_notes(session.id) == []


async def test_boots_and_delays_continue_in_later_deliveries_as_the_same_steps(
    world, booting
) -> None:
    booting.boot_seconds = 1.0
    plan, replicas = await site(world, ("vm1", "vm2"))
    await FailoverPlanVm.filter(plan_id=plan.id, replica_id=replicas[0].id).update(delay_seconds=1)
    session = await failover_runs.start(await actor_of(world), plan.id, SessionKind.FAILOVER)
    job_id: int = session.job_id  # type: ignore[attr-defined]

    deliveries = await deliver_until_done(job_id, booting.sent)

    assert deliveries >= 4  # each boot and the delay parked the job at least once
    waits = [d for _, d in booting.sent[1:]]
    assert len(waits) == deliveries - 1 and all(
        d and d >= INLINE_WAIT_SECONDS * 1000 for d in waits
    )
    row = await FailoverSession.get(id=session.id)
    assert (row.state, row.vms_up) == (S.SUCCEEDED, 2)
    steps = await FailoverStep.filter(session_id=session.id).order_by("seq")
    assert [s.kind for s in steps] == [
        StepKind.SELECT_POINT, StepKind.POWER_ON, StepKind.WAIT_HEALTHY, StepKind.DELAY,
        StepKind.SELECT_POINT, StepKind.POWER_ON, StepKind.WAIT_HEALTHY,
    ]  # fmt: skip
    assert {(s.state, s.attempts) for s in steps} == {(StepState.DONE, 1)}
    assert [s.output for s in steps if s.kind is StepKind.DELAY] == [{"seconds": 1}]
    job = await Job.get(id=job_id)
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert await power_ons(replicas) == [1, 1]
    assert await resumed_notes(session.id) == []


async def test_a_worker_lost_during_a_wait_resumes_without_a_second_power_on(
    world, booting
) -> None:
    plan, replicas = await site(world, ("vm1",))
    session = await failover_runs.start(await actor_of(world), plan.id, SessionKind.FAILOVER)
    job_id: int = session.job_id  # type: ignore[attr-defined]
    assert await execute(job_id, "w1") == "waiting"
    # The delivery that takes the job back dies with it (its heartbeats stop).
    assert await jobs.wake(job_id, "dead") is not None
    await Job.filter(id=job_id).update(heartbeat_at=jobs.now() - 2 * jobs.STALE_AFTER)
    assert await jobs.recover() == [job_id]
    booting.boot_seconds = 0.0  # booted meanwhile
    assert await execute(job_id, "w2") == "succeeded"

    job = await Job.get(id=job_id)
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)
    assert (await FailoverSession.get(id=session.id)).state is S.SUCCEEDED
    assert await power_ons(replicas) == [1]
    steps = await FailoverStep.filter(session_id=session.id).order_by("seq")
    # The wait the lost worker held is issued again (attempt 2); the power-on is not.
    assert [(s.kind, s.attempts) for s in steps] == [
        (StepKind.SELECT_POINT, 1), (StepKind.POWER_ON, 1), (StepKind.WAIT_HEALTHY, 2),
    ]  # fmt: skip
    notes = await resumed_notes(session.id)
    assert len(notes) == 1 and "attempt 2" in notes[0], notes


# --- under a real worker: more plans than threads --------------------------------------------


@pytest.fixture
async def file_world(filedb):  # noqa: F811
    from tests.factories import build_world

    return await build_world()


@pytest.fixture
def stub_broker(filedb):  # noqa: F811
    from workers.broker import setup

    previous = jobs._dispatcher
    broker = setup(filedb, stub=True)
    override_hypervisor(Hooked(boot_seconds=BOOT_SECONDS))
    yield broker
    override_hypervisor(None)
    jobs.set_dispatcher(previous)


# Long enough that a plan holding a thread for its boots would be seen doing so.
BOOT_SECONDS = 3.0
PLANS = 6


async def test_more_plans_than_worker_threads_boot_side_by_side(file_world, stub_broker):
    from workers.broker import QUEUE, dispatch
    from workers.runtime import start_worker

    actor = await actor_of(file_world)
    sessions = []
    jobs.set_dispatcher(lambda job_id, delay: None)  # sent below, all at once
    for i in range(PLANS):
        plan, _ = await site(file_world, (f"p{i}-vm1", f"p{i}-vm2"), name=f"Plan {i}")
        sessions.append(await failover_runs.start(actor, plan.id, SessionKind.FAILOVER))
    ids = [s.id for s in sessions]
    jobs.set_dispatcher(dispatch)
    for session in sessions:
        await jobs.dispatch(session.job_id)  # type: ignore[attr-defined]
    # The test's own connection stays idle while the worker runs (one SQLite file).
    w = start_worker(stub_broker, threads=2)
    try:
        stub_broker.join(QUEUE, fail_fast=False, timeout=60_000)
        w.join()
    finally:
        w.stop(timeout=5000)
    rows = await FailoverSession.filter(id__in=ids)
    assert {(r.state, r.vms_up) for r in rows} == {(S.SUCCEEDED, 2)}, [r.error for r in rows]
    # Every VM of every plan was powered on before any plan finished: 6 plans on 2 threads
    # ran side by side, where a thread held per run would have let only 2 start.
    power = await FailoverStep.filter(session_id__in=ids, kind=StepKind.POWER_ON).values_list(
        "started_at", flat=True
    )
    assert len(power) == 2 * PLANS
    first_finished = min(r.finished_at for r in rows if r.finished_at is not None)
    assert max(power) < first_finished
    waits = await FailoverStep.filter(session_id__in=ids, kind=StepKind.WAIT_HEALTHY)
    assert {s.attempts for s in waits} == {1}
    assert set(await Job.filter(kind="failover.run").values_list("attempts", flat=True)) == {1}
    counts = await SimulatedVm.all().values_list("power_on_count", flat=True)
    assert sorted(counts) == [1] * 2 * PLANS
