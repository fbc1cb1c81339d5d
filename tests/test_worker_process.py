"""A real `tenantry worker` (dramatiq processes) on real Redis and PostgreSQL: the ORM runs on
the worker's event loop, a worker killed with `kill -9` mid-job leaves a job that a new worker
finishes exactly once (resuming after the last persisted step), and a duplicated message runs
the job once. CI's second pass runs these (TENANTRY_TEST_DATABASE_URL, TENANTRY_TEST_REDIS_URL
and TENANTRY_REQUIRE_SERVICES=1); without those variables they are skipped."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.models import Job, JobState
from app.services import jobs
from tests.workerproc import redis_broker, require_services, wait_for, worker_processes

REDIS_DB = 7
NOOP = "diagnostics.noop"


@pytest.fixture(autouse=True)
def services():
    require_services()


@pytest.fixture
def broker(db, monkeypatch):
    """This process sends through the same Redis namespace as the worker processes."""
    with redis_broker(REDIS_DB, "tenantry-test", monkeypatch) as (b, settings):
        yield b, settings


@pytest.fixture
def workers(broker, tmp_path: Path):
    """Start worker processes; every one is stopped (or killed) at the end, its log shown."""
    with worker_processes(broker[1], tmp_path) as start:
        yield start


async def job_row(job_id: int) -> Job:
    return await Job.get(id=job_id)


async def test_killed_worker_mid_job_is_finished_once_by_a_new_worker(broker, workers):
    first = workers()
    job, _ = await jobs.create(None, NOOP, None, {"steps": 8, "step_seconds": 0.4})

    async def progressed():
        row = await job_row(job.id)
        return row.state == JobState.RUNNING and row.progress_percent > 0

    await wait_for(progressed, 15, "the first worker to make progress")
    first.kill()
    at_kill = (await job_row(job.id)).checkpoint["completed"]
    assert 0 < len(at_kill) < 8

    workers()  # a new worker; the old one's message is invisible until recovered

    async def stale():
        row = await job_row(job.id)
        return row.state != JobState.RUNNING or row.heartbeat_at < jobs.now() - jobs.STALE_AFTER

    await wait_for(stale, 10, "the dead worker's heartbeat to go stale")
    # The recovery sweep (the scheduler runs it every few seconds) sends the job again.
    recovered = await jobs.recover()
    assert job.id in recovered or (await job_row(job.id)).state != JobState.QUEUED

    async def finished():
        row = await job_row(job.id)
        return row.state in {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}

    await wait_for(finished, 15, "the new worker to finish the job")
    row = await job_row(job.id)
    assert row.state == JobState.SUCCEEDED, row.error
    assert row.attempts == 2
    assert row.result["completed"] == list(range(8))  # every step once, none twice
    assert row.checkpoint == {"completed": list(range(8))}
    assert row.result["resumed_from"] == len(at_kill)
    assert row.result["attempt"] == 2
    assert row.worker_id.split(":")[1] != str(first.proc.pid)


async def test_duplicate_message_runs_the_job_once(broker, workers):
    from workers.actors.jobs import run_job
    from workers.broker import QUEUE

    b, _ = broker
    workers()
    job, _ = await jobs.create(None, NOOP, None, {"steps": 3, "step_seconds": 0.05})
    run_job.send(job.id)
    run_job.send(job.id)

    async def finished():
        return (await job_row(job.id)).state == JobState.SUCCEEDED

    await wait_for(finished, 15, "the job to succeed")
    b.join(QUEUE, timeout=10_000)  # the duplicates have been taken off the queue too
    row = await job_row(job.id)
    assert (row.state, row.attempts) == (JobState.SUCCEEDED, 1)
    assert row.result["completed"] == [0, 1, 2]
    finished_at = row.finished_at

    # A message for the finished job, much later, changes nothing either.
    run_job.send(job.id)
    b.join(QUEUE, timeout=10_000)
    again = await job_row(job.id)
    assert (again.attempts, again.finished_at) == (1, finished_at)
    assert again.updated_at - finished_at < timedelta(seconds=1)


async def test_progress_from_a_worker_process_reaches_a_subscriber_through_redis(broker, workers):
    """The worker process publishes job events on the Redis hub (installed at worker boot), so
    an API process's subscriber sees progress the worker makes."""
    from app.services import events

    _, settings = broker
    hub = events.build_hub(settings)
    try:
        workers()
        job, _ = await jobs.create(None, NOOP, None, {"steps": 4, "step_seconds": 0.2})
        seen: list[dict] = []
        async with hub.subscribe(events.job_channel(job.id)) as sub:
            while True:
                payload = await sub.next(within=15)
                assert payload is not None, f"no event from the worker; got {seen}"
                seen.append(payload)
                if payload["state"] == JobState.SUCCEEDED.value:
                    break
        percents = [p["progress_percent"] for p in seen if p["state"] == "RUNNING"]
        assert any(0 < p < 100 for p in percents), seen
        assert seen[-1]["progress_percent"] == 100
    finally:
        await hub.close()
