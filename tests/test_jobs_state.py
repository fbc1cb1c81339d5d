"""The job state machine (app.services.jobs) directly on the database: every transition is
conditional, so duplicates, late workers and recovery sweeps change nothing they should not."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from app.jobs import registry
from app.jobs.context import JobCancelled, JobContext
from app.models import Job, JobState
from app.services import jobs
from app.services.actor import Actor

NOOP = "diagnostics.noop"


@pytest.fixture
def sent(db):
    """Dispatches recorded instead of sent: [(job_id, delay_ms)]."""
    calls: list[tuple[int, int | None]] = []
    previous = jobs._dispatcher
    jobs.set_dispatcher(lambda job_id, delay: calls.append((job_id, delay)))
    yield calls
    jobs.set_dispatcher(previous)


async def new_job(**params) -> Job:
    job, created = await jobs.create(None, NOOP, None, params)
    assert created
    return job


async def make_stale(job_id: int) -> None:
    await Job.filter(id=job_id).update(
        heartbeat_at=jobs.now() - jobs.STALE_AFTER - timedelta(seconds=1)
    )


async def test_create_commits_a_queued_row_then_dispatches(sent):
    job = await new_job(steps=2)
    row = await Job.get(id=job.id)
    assert (row.state, row.kind, row.functionality) == (JobState.QUEUED, NOOP, "CONFIGURATION")
    assert row.max_attempts == registry.get(NOOP).max_attempts
    assert row.enqueued_at is not None
    assert sent == [(job.id, None)]


async def test_unknown_kind_is_bad_input(sent):
    from app.errors import BadInput

    with pytest.raises(BadInput) as err:
        await jobs.create(None, "no.such.kind", None, {})
    assert err.value.field == "kind"
    assert await Job.all().count() == 0


async def test_second_claim_gets_nothing(sent):
    job = await new_job()
    first = await jobs.claim(job.id, "w1")
    assert first is not None
    assert (first.state, first.worker_id, first.attempts) == (JobState.RUNNING, "w1", 1)
    assert first.started_at is not None
    assert await jobs.claim(job.id, "w1") is None
    assert await jobs.claim(job.id, "w2") is None
    row = await Job.get(id=job.id)
    assert (row.worker_id, row.attempts) == ("w1", 1)


async def test_stale_heartbeat_lets_another_worker_reclaim(sent):
    job = await new_job()
    await jobs.claim(job.id, "w1")
    await make_stale(job.id)
    second = await jobs.claim(job.id, "w2")
    assert second is not None
    assert (second.worker_id, second.attempts) == ("w2", 2)
    # The first worker lost it: its heartbeats, progress and finish change nothing.
    assert await jobs.heartbeat(job.id, "w1") is False
    assert await jobs.progress(job.id, "w1", 50, "late") is False
    assert await jobs.succeed(job.id, "w1", {"by": "w1"}) is False
    assert await jobs.succeed(job.id, "w2", {"by": "w2"}) is True
    row = await Job.get(id=job.id)
    assert (row.state, row.result, row.progress_percent) == (JobState.SUCCEEDED, {"by": "w2"}, 100)
    assert await jobs.claim(job.id, "w3") is None


async def test_progress_only_by_the_owner(sent):
    job = await new_job()
    await jobs.claim(job.id, "w1")
    assert await jobs.progress(job.id, "w2", 40, "intruder", {"completed": [9]}) is False
    assert await jobs.progress(job.id, "w1", 140, "half", {"completed": [0]}) is True
    row = await Job.get(id=job.id)
    assert (row.progress_percent, row.progress_message, row.checkpoint) == (
        100,
        "half",
        {"completed": [0]},
    )


async def test_retry_later_until_attempts_are_used_up_then_failed(sent):
    job = await new_job()
    await Job.filter(id=job.id).update(max_attempts=2)
    await jobs.claim(job.id, "w1")
    assert await jobs.retry_later(job.id, "w1", "OSError: peer down", 250) is True
    row = await Job.get(id=job.id)
    assert (row.state, row.worker_id, row.error) == (JobState.QUEUED, "", "OSError: peer down")
    assert sent[-1] == (job.id, 250)
    again = await jobs.claim(job.id, "w2")
    assert again is not None and again.attempts == 2
    assert await jobs.retry_later(job.id, "w2", "OSError: still down", 500) is True
    row = await Job.get(id=job.id)
    assert row.state == JobState.FAILED
    assert row.error == "gave up after 2 attempts: OSError: still down"
    assert len(sent) == 2  # no dispatch after giving up


async def test_cancel_queued_job_is_immediate(sent):
    job = await new_job()
    cancelled = await jobs.request_cancel(Actor(None), job)
    assert (cancelled.state, cancelled.cancel_requested) == (JobState.CANCELLED, True)
    assert cancelled.finished_at is not None
    assert await jobs.claim(job.id, "w1") is None


async def test_cancel_running_job_sets_the_flag_and_stops_at_the_next_step(sent):
    job = await new_job()
    claimed = await jobs.claim(job.id, "w1")
    assert claimed is not None
    after = await jobs.request_cancel(Actor(None), claimed)
    assert (after.state, after.cancel_requested) == (JobState.RUNNING, True)
    ctx = JobContext(claimed, "w1")
    with pytest.raises(JobCancelled):
        await ctx.step("step 1")
    assert await jobs.cancelled(job.id, "w1") is True
    assert (await Job.get(id=job.id)).state == JobState.CANCELLED


async def test_cancel_of_a_finished_job_is_a_conflict(sent):
    from app.errors import Conflict

    job = await new_job()
    await jobs.claim(job.id, "w1")
    await jobs.succeed(job.id, "w1", {})
    with pytest.raises(Conflict):
        await jobs.request_cancel(Actor(None), await Job.get(id=job.id))


async def test_recover_sends_stale_and_lost_jobs_but_leaves_live_ones(sent):
    stale = await new_job()
    await jobs.claim(stale.id, "dead")
    await make_stale(stale.id)
    live = await new_job()
    await jobs.claim(live.id, "alive")
    lost = await new_job()
    await Job.filter(id=lost.id).update(
        enqueued_at=jobs.now() - jobs.UNCLAIMED_AFTER - timedelta(seconds=1)
    )
    fresh = await new_job()
    done = await new_job()
    await jobs.claim(done.id, "w")
    await jobs.succeed(done.id, "w", {})
    sent.clear()

    assert await jobs.recover() == sorted([stale.id, lost.id])
    assert sorted(job_id for job_id, _ in sent) == sorted([stale.id, lost.id])
    assert fresh.id not in [job_id for job_id, _ in sent]
    # The live job keeps its worker even if a message for it arrives.
    assert await jobs.claim(live.id, "other") is None
    assert (await Job.get(id=live.id)).worker_id == "alive"


async def test_dedup_key_returns_the_existing_job(sent):
    first, created = await jobs.create(None, NOOP, None, {"steps": 1}, dedup_key="tick:1")
    again, created_again = await jobs.create(None, NOOP, None, {"steps": 9}, dedup_key="tick:1")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert await Job.all().count() == 1
    assert sent == [(first.id, None)]


async def test_execute_runs_noop_to_success_inline(sent):
    from workers.actors.jobs import execute

    job = await new_job(steps=3)
    assert await execute(job.id, "inline") == "succeeded"
    assert await execute(job.id, "inline") == "skipped"
    row = await Job.get(id=job.id)
    assert row.state == JobState.SUCCEEDED
    assert row.result["completed"] == [0, 1, 2]
    assert row.checkpoint == {"completed": [0, 1, 2]}
    assert row.attempts == 1
    assert row.result["latency_ms"] >= 0


async def test_kind_time_limit_fails_the_job(sent, monkeypatch):
    from workers.actors.jobs import execute

    quick = dataclasses.replace(registry.get(NOOP), time_limit_seconds=0.2)
    monkeypatch.setitem(registry.KINDS, NOOP, quick)
    job = await new_job(steps=10, step_seconds=0.1)
    assert await execute(job.id, "inline") == "failed"
    row = await Job.get(id=job.id)
    assert row.state == JobState.FAILED
    assert row.error == "time limit of 0.2 s exceeded"


async def test_lost_job_stops_without_writing(sent):
    """A worker whose claim was taken over stops at its next progress report."""
    from workers.actors.jobs import _run

    job = await new_job(steps=3)
    claimed = await jobs.claim(job.id, "w1")
    await make_stale(job.id)
    assert await jobs.claim(job.id, "w2") is not None
    ctx = JobContext(claimed, "w1")  # type: ignore[arg-type]
    assert await _run(ctx, registry.get(NOOP)) == "lost"
    row = await Job.get(id=job.id)
    assert (row.state, row.worker_id, row.checkpoint) == (JobState.RUNNING, "w2", {})
