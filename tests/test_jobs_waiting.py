"""Waiting without a worker thread (app.jobs.context ContinueLater, app.services.jobs park / wake):
a job that waits is parked — RUNNING, held by no worker, due at the end of its wait — and sent
again with the wait as its delay; its wake-up is not an attempt; the recovery sweep does not
take a parked job for a dead one until its wake-up is overdue; a cancel wakes it at once; and
a handler that waits runs again from its checkpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.authz.matrix import Functionality
from app.jobs import registry
from app.jobs.context import INLINE_WAIT_SECONDS, ContinueLater, JobContext, JobLost
from app.models import Job, JobState
from app.services import jobs
from app.services.actor import Actor
from workers.actors.jobs import execute

WAITER = "tests.waiter"


async def waiter(ctx: JobContext) -> dict[str, Any]:
    """`params.waits` waits of `params.seconds`, one step each, counted in the checkpoint."""
    done = int(ctx.checkpoint.get("done", 0))
    woken = [*ctx.checkpoint.get("woken", []), ctx.woken]
    waits = int(ctx.params["waits"])
    if done < waits:
        await ctx.step(f"wait {done + 1}")
        await ctx.save_checkpoint({"done": done + 1, "woken": woken})
        await ctx.wait(float(ctx.params["seconds"]), f"wait {done + 1} of {waits}")
        return await waiter(ctx)  # a short wait was slept here: go on
    return {"done": done, "woken": woken, "attempt": ctx.attempt}


@pytest.fixture
def sent(db, monkeypatch):
    """The test kind registered; dispatches recorded instead of sent: [(job_id, delay_ms)]."""
    kind = registry.JobKind(WAITER, "Test waiter", Functionality.CONFIGURATION, waiter)
    registry.load_kinds()
    monkeypatch.setitem(registry.KINDS, WAITER, kind)
    calls: list[tuple[int, int | None]] = []
    previous = jobs._dispatcher
    jobs.set_dispatcher(lambda job_id, delay: calls.append((job_id, delay)))
    yield calls
    jobs.set_dispatcher(previous)


async def new_job(waits: int = 2, seconds: float = 30.0) -> Job:
    job, _ = await jobs.create(None, WAITER, None, {"waits": waits, "seconds": seconds})
    return job


async def test_a_wait_parks_the_job_and_its_wake_up_is_not_an_attempt(sent):
    job = await new_job(waits=2, seconds=30)
    before = jobs.now()
    assert await execute(job.id, "w1") == "waiting"
    row = await Job.get(id=job.id)
    assert (row.state, row.worker_id, row.attempts) == (JobState.RUNNING, jobs.WAITING, 1)
    assert row.progress_message == "wait 1 of 2"
    # Due at the end of the wait, and sent again with it as the delay.
    assert row.heartbeat_at is not None and row.heartbeat_at >= before + timedelta(seconds=30)
    assert sent[-1] == (job.id, 30_000)

    # Nobody claims it meanwhile; the worker that parked it no longer holds it.
    assert await jobs.claim(job.id, "w2") is None
    assert await jobs.heartbeat(job.id, "w1") is False
    assert await jobs.progress(job.id, "w1", 50) is False

    assert await execute(job.id, "w2") == "waiting"  # woken (early: the test does not sleep)
    assert await execute(job.id, "w3") == "succeeded"
    row = await Job.get(id=job.id)
    assert (row.state, row.attempts, row.worker_id) == (JobState.SUCCEEDED, 1, "w3")
    assert row.result == {"done": 2, "woken": [False, True, True], "attempt": 1}
    assert [delay for _, delay in sent] == [None, 30_000, 30_000]


async def test_a_delivery_finds_a_parked_job_only_once(sent):
    job = await new_job()
    await execute(job.id, "w1")
    assert await jobs.wake(job.id, "w2") is not None
    assert await jobs.wake(job.id, "w3") is None  # a duplicate delivery
    assert await execute(job.id, "w4") == "skipped"
    assert (await Job.get(id=job.id)).worker_id == "w2"


async def test_the_sweep_leaves_a_sleeping_job_and_resends_an_overdue_one(sent):
    job = await new_job(seconds=60)
    await execute(job.id, "w1")
    due = (await Job.get(id=job.id)).heartbeat_at
    assert due is not None
    # Longer asleep than STALE_AFTER, not yet due: not dead.
    assert jobs.STALE_AFTER < timedelta(seconds=60)
    assert await jobs.recover(at=jobs.now() + jobs.STALE_AFTER) == []
    # Its wake-up message lost: sent again once it is overdue, and woken, not reclaimed.
    assert await jobs.recover(at=due + jobs.STALE_AFTER + timedelta(seconds=1)) == [job.id]
    assert await jobs.claim(job.id, "w2") is None
    woken = await jobs.wake(job.id, "w2")
    assert woken is not None and woken.attempts == 1


async def test_a_worker_lost_while_the_job_runs_is_still_a_new_attempt(sent):
    job = await new_job()
    await execute(job.id, "w1")
    assert await jobs.wake(job.id, "w2") is not None  # w2 dies here
    await Job.filter(id=job.id).update(
        heartbeat_at=jobs.now() - jobs.STALE_AFTER - timedelta(seconds=1)
    )
    again = await jobs.claim(job.id, "w3")
    assert again is not None and again.attempts == 2


async def test_a_cancel_wakes_a_parked_job_at_once_and_it_stops(sent):
    job = await new_job(seconds=3600)
    await execute(job.id, "w1")
    sent.clear()
    row = await jobs.request_cancel(Actor(None), await Job.get(id=job.id))
    assert (row.state, row.cancel_requested) == (JobState.RUNNING, True)
    assert sent == [(job.id, None)]  # not in an hour
    assert await execute(job.id, "w2") == "cancelled"
    row = await Job.get(id=job.id)
    assert (row.state, row.attempts) == (JobState.CANCELLED, 1)
    assert row.checkpoint["done"] == 1
    assert await jobs.wake_now(job.id) is False


async def test_a_job_lost_before_it_parks_is_not_parked(sent):
    job = await new_job()
    claimed = await jobs.claim(job.id, "w1")
    assert claimed is not None
    await Job.filter(id=job.id).update(worker_id="w2")  # reclaimed meanwhile
    assert await jobs.park(job.id, "w1", 5) is False
    assert (await Job.get(id=job.id)).worker_id == "w2"
    assert sent == [(job.id, None)]


async def test_short_waits_and_waits_outside_the_actor_are_slept_in_place(sent):
    job = await new_job(waits=3, seconds=INLINE_WAIT_SECONDS / 50)
    assert await execute(job.id, "w1") == "succeeded"
    assert (await Job.get(id=job.id)).result["woken"] == [False] * 4
    # A context built by hand (no actor to park it) sleeps whatever the length.
    claimed = await jobs.claim((await new_job(seconds=INLINE_WAIT_SECONDS)).id, "w1")
    assert claimed is not None
    ctx = JobContext(claimed, "w1")
    await ctx.wait(0.01)
    with pytest.raises(ContinueLater) as wait:
        await JobContext(claimed, "w1", can_continue_later=True).wait(INLINE_WAIT_SECONDS, "m")
    assert (wait.value.seconds, wait.value.message) == (INLINE_WAIT_SECONDS, "m")


async def test_progress_from_a_parked_job_raises_job_lost(sent):
    job = await new_job()
    claimed = await jobs.claim(job.id, "w1")
    assert claimed is not None
    assert await jobs.park(job.id, "w1", 5, "later")
    with pytest.raises(JobLost):
        await JobContext(claimed, "w1").progress(10)
