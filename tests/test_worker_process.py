"""A real `tenantry worker` (dramatiq processes) on real Redis and PostgreSQL: the ORM runs on
the worker's event loop, a worker killed with `kill -9` mid-job leaves a job that a new worker
finishes exactly once (resuming after the last persisted step), and a duplicated message runs
the job once. CI's second pass runs these (TENANTRY_TEST_DATABASE_URL, TENANTRY_TEST_REDIS_URL
and TENANTRY_REQUIRE_SERVICES=1); without those variables they are skipped."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from app.models import Job, JobState
from app.services import jobs
from tests.conftest import ON_POSTGRES, PG_URL, REDIS_URL, TEST_SETTINGS
from tests.workerproc import FAST_ENV, WorkerProcess, redis_url_with_db, wait_for

REDIS_DB = 7
NOOP = "diagnostics.noop"
REQUIRED = os.environ.get("TENANTRY_REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True)
def services():
    if not (ON_POSTGRES and REDIS_URL):
        if REQUIRED:
            pytest.fail(
                "TENANTRY_REQUIRE_SERVICES=1 but TENANTRY_TEST_DATABASE_URL (PostgreSQL) or "
                "TENANTRY_TEST_REDIS_URL is not set"
            )
        pytest.skip("needs TENANTRY_TEST_DATABASE_URL (PostgreSQL) and TENANTRY_TEST_REDIS_URL")


@pytest.fixture
def redis_url() -> str:
    import redis

    url = redis_url_with_db(REDIS_URL, REDIS_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()  # this test module's own database index
    client.close()
    return url


@pytest.fixture
def broker(db, redis_url, monkeypatch):
    """This process sends through the same Redis namespace as the worker processes."""
    from workers.broker import setup

    namespace = f"tenantry-test-{uuid.uuid4().hex[:8]}"
    settings = replace(
        TEST_SETTINGS,
        redis_url=redis_url,
        redis_namespace=namespace,
        job_heartbeat_ms=int(FAST_ENV["TENANTRY_JOB_HEARTBEAT_MS"]),
        job_stale_after_ms=int(FAST_ENV["TENANTRY_JOB_STALE_AFTER_MS"]),
        job_unclaimed_after_ms=int(FAST_ENV["TENANTRY_JOB_UNCLAIMED_AFTER_MS"]),
    )
    previous = jobs._dispatcher
    for name in ("HEARTBEAT_INTERVAL", "STALE_AFTER", "UNCLAIMED_AFTER"):
        monkeypatch.setattr(jobs, name, getattr(jobs, name))
    b = setup(settings, stub=False)  # also shortens this process's recovery windows
    yield b, settings
    jobs.set_dispatcher(previous)


@pytest.fixture
def workers(broker, tmp_path: Path):
    """Start worker processes; every one is stopped (or killed) at the end, its log shown."""
    _, settings = broker
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        w = WorkerProcess(PG_URL, settings.redis_url, settings.redis_namespace, log)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
        print(f"--- {w.log.name}\n{w.output()}")


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
