"""The run_job actor under a real dramatiq Worker (threads, its own event loop and its own
database connection) on the in-process StubBroker, against a temporary SQLite *file*: the
worker's connection and the test's see the same database."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise.context import TortoiseContext

from app.db import tortoise_config
from app.jobs import audit_export
from app.jobs.context import JobContext
from app.models import AuditEntry, Job, JobState
from app.services import jobs
from app.services.actor import Actor
from app.settings import Settings
from workers.broker import QUEUE, setup
from workers.runtime import start_worker

NOOP = "diagnostics.noop"


@pytest.fixture
async def filedb(tmp_path: Path, use_settings, monkeypatch) -> Iterator[Settings]:
    url = f"sqlite://{tmp_path / 'jobs.sqlite3'}"
    settings = use_settings(
        database_url=url,
        redis_url=None,
        job_heartbeat_ms=50,
        job_retry_base_ms=20,
        job_retry_max_ms=100,
    )
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    # The module-level windows are set from the settings by setup(); restored afterwards.
    for name in ("HEARTBEAT_INTERVAL", "STALE_AFTER", "UNCLAIMED_AFTER"):
        monkeypatch.setattr(jobs, name, getattr(jobs, name))
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(settings), _enable_global_fallback=True)
        await ctx.generate_schemas(safe=False)
        yield settings


@pytest.fixture
def events(filedb) -> Iterator[list[jobs.JobEvent]]:
    """Every JobEvent, as published by whoever made the change (here: the worker thread)."""
    seen: list[jobs.JobEvent] = []
    jobs.on_event(seen.append)
    yield seen
    jobs._publishers.remove(seen.append)


@pytest.fixture
def worker(filedb):
    previous = jobs._dispatcher
    broker = setup(filedb, stub=True)
    w = start_worker(broker, threads=2)
    yield broker, w
    w.stop(timeout=5000)
    jobs.set_dispatcher(previous)


def drain(broker, w) -> None:
    """Wait until every message (delayed retries included) has been processed."""
    broker.join(QUEUE, fail_fast=False, timeout=20_000)
    w.join()


async def test_noop_succeeds_with_progress_events(worker, events):
    broker, w = worker
    job, _ = await jobs.create(None, NOOP, None, {"steps": 4})
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert row.state == JobState.SUCCEEDED
    assert (row.attempts, row.progress_percent) == (1, 100)
    assert row.result["completed"] == [0, 1, 2, 3]
    assert row.worker_id.split(":")[-1].startswith("Thread")  # hostname:pid:thread
    mine = [(e.state, e.progress_percent) for e in events if e.id == job.id]
    assert mine == [
        ("QUEUED", 0),
        ("RUNNING", 0),
        ("RUNNING", 25),
        ("RUNNING", 50),
        ("RUNNING", 75),
        ("RUNNING", 100),
        ("SUCCEEDED", 100),
    ]


async def test_duplicate_message_runs_once(worker, events):
    from workers.actors.jobs import run_job

    broker, w = worker
    job, _ = await jobs.create(None, NOOP, None, {"steps": 3})
    run_job.send(job.id)
    run_job.send(job.id)
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert (row.state, row.attempts) == (JobState.SUCCEEDED, 1)
    assert row.result["completed"] == [0, 1, 2]
    claims = [
        e for e in events if e.id == job.id and e.state == "RUNNING" and e.progress_percent == 0
    ]
    assert len(claims) == 1


async def test_transient_failures_are_retried_then_succeed(worker):
    broker, w = worker
    job, _ = await jobs.create(None, NOOP, None, {"steps": 1, "fail_transient_times": 2})
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert (row.state, row.attempts) == (JobState.SUCCEEDED, 3)
    assert row.result["attempt"] == 3
    assert row.error == "TransientError: asked to fail transiently 2 times (attempt 2)"


async def test_transient_failures_give_up_at_max_attempts(worker):
    broker, w = worker
    job, _ = await jobs.create(None, NOOP, None, {"steps": 1, "fail_transient_times": 99})
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert (row.state, row.attempts) == (JobState.FAILED, row.max_attempts)
    assert row.error.startswith(f"gave up after {row.max_attempts} attempts: TransientError")


async def test_permanent_failure_is_not_retried(worker):
    broker, w = worker
    job, _ = await jobs.create(None, NOOP, None, {"steps": 3, "fail": "disk on fire"})
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert (row.state, row.attempts, row.error) == (JobState.FAILED, 1, "disk on fire")
    assert broker.dead_letters == []


async def test_bad_params_fail_permanently(worker):
    broker, w = worker
    job, _ = await jobs.create(None, NOOP, None, {"steps": 5000})
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert (row.state, row.error) == (JobState.FAILED, "steps must be between 0 and 1000")


async def test_cancel_mid_run_stops_at_a_step_boundary(worker, events):
    broker, w = worker
    started = threading.Event()

    def on_progress(e: jobs.JobEvent) -> None:
        if e.state == "RUNNING" and e.progress_percent > 0:
            started.set()

    jobs.on_event(on_progress)
    try:
        job, _ = await jobs.create(None, NOOP, None, {"steps": 200, "step_seconds": 0.02})
        assert started.wait(timeout=10)
        await jobs.request_cancel(Actor(None), await Job.get(id=job.id))
        drain(broker, w)
    finally:
        jobs._publishers.remove(on_progress)
    row = await Job.get(id=job.id)
    assert (row.state, row.cancel_requested) == (JobState.CANCELLED, True)
    done = row.checkpoint["completed"]
    # Consistent state: the steps done are exactly a prefix, and the run stopped early.
    assert done == list(range(len(done)))
    assert 0 < len(done) < 200
    assert row.progress_percent == round(len(done) * 100 / 200)


async def test_dramatiq_time_limit_dead_letters_and_fails_the_job(worker):
    from workers.actors.jobs import run_job

    broker, w = worker
    jobs.set_dispatcher(
        lambda job_id, delay: run_job.send_with_options(args=(job_id,), time_limit=200)
    )
    job, _ = await jobs.create(None, NOOP, None, {"steps": 100, "step_seconds": 0.05})
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert (row.state, row.error) == (JobState.FAILED, "time limit exceeded")
    assert [m.args for m in broker.dead_letters] == [(job.id,)]
    assert 0 < len(row.checkpoint.get("completed", [])) < 100


# --- audit_log_export -----------------------------------------------------------------


async def audit_rows(world) -> dict[str, list[int]]:
    """Entries for R1, A1, A2 (R1's tree) and B1 (elsewhere), interleaved."""
    orgs = {k: world.orgs[k].id for k in ("R1", "A1", "A2", "B1")}
    await AuditEntry.bulk_create(
        [
            AuditEntry(
                organization_id=orgs[("R1", "A1", "A2", "B1")[i % 4]],
                action="=cmd|' /C calc'!A0" if i == 5 else f"thing{i}",
                object_type="Thing",
                object_id=str(i),
                details={"i": i},
            )
            for i in range(2600)
        ]
    )
    by_org: dict[str, list[int]] = {k: [] for k in orgs}
    for row in await AuditEntry.all().order_by("id").values("id", "organization_id"):
        for key, org_id in orgs.items():
            if row["organization_id"] == org_id:
                by_org[key].append(row["id"])
    return by_org


def csv_ids(path: str) -> list[int]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(audit_export.COLUMNS)
    return [int(r[0]) for r in rows[1:]]


@pytest.fixture
async def world(filedb):
    from tests.factories import build_world

    return await build_world()


def read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


async def export_job(world, user_key: str, org_key: str, params=None, send=True) -> Job:
    """The job as `user_key` asked for it; its message is sent once the row says so."""
    dispatcher = jobs._dispatcher
    jobs.set_dispatcher(lambda job_id, delay: None)
    try:
        job, _ = await jobs.create(None, "audit_log_export", world.orgs[org_key], params or {})
    finally:
        jobs.set_dispatcher(dispatcher)
    await Job.filter(id=job.id).update(requested_by_id=world.users[user_key].id)
    if send:
        await jobs.dispatch(job.id)
    return job


async def test_audit_export_writes_the_scoped_csv(worker, world):
    broker, w = worker
    by_org = await audit_rows(world)
    job = await export_job(world, "R1:Service Provider Administrator", "R1")
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert row.state == JobState.SUCCEEDED, row.error
    expected = sorted(by_org["R1"] + by_org["A1"] + by_org["A2"])
    assert row.result["rows"] == len(expected)
    assert csv_ids(row.result["path"]) == expected
    assert row.result["path"].endswith(f"exports/job-{job.id}.csv")
    text = read_text(row.result["path"])
    assert "'=cmd" in text  # formula cells are quoted


async def test_audit_export_narrows_to_the_job_organization(worker, world):
    broker, w = worker
    by_org = await audit_rows(world)
    job = await export_job(world, "R1:Service Provider Administrator", "A1")
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert row.state == JobState.SUCCEEDED, row.error
    assert csv_ids(row.result["path"]) == by_org["A1"]


async def test_audit_export_refused_without_logs_permission(worker, world):
    broker, w = worker
    await audit_rows(world)
    job = await export_job(world, "R1:Service Provider User", "R1")
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert (row.state, row.error) == (
        JobState.FAILED,
        "the requesting user may no longer read the audit log",
    )


class Crash(BaseException):
    """The process dies: nothing after it runs."""


async def test_audit_export_resumes_after_a_crash_without_duplicates(worker, world, monkeypatch):
    broker, w = worker
    by_org = await audit_rows(world)
    expected = sorted(by_org["R1"] + by_org["A1"] + by_org["A2"])
    # Create the job without a message: the first run happens here, inline, and "crashes".
    job = await export_job(world, "R1:Service Provider Administrator", "R1", send=False)
    claimed = await jobs.claim(job.id, "doomed")
    assert claimed is not None

    real_append = audit_export._append
    calls = {"n": 0}

    def crashing_append(path, offset, data):
        calls["n"] += 1
        length = real_append(path, offset, data)
        if calls["n"] == 3:  # header, chunk 1, chunk 2 written: dies before checkpointing it
            raise Crash()
        return length

    monkeypatch.setattr(audit_export, "_append", crashing_append)
    with pytest.raises(Crash):
        await audit_export.export(JobContext(claimed, "doomed"))
    monkeypatch.setattr(audit_export, "_append", real_append)

    row = await Job.get(id=job.id)
    assert row.checkpoint["rows"] == 1000  # one chunk vouched for, the second one was lost
    path = audit_export.export_path(job.id)
    assert csv_ids(str(path)) == expected  # ...but it is in the file

    # The worker died: its heartbeat goes stale, the recovery sweep sends the job again.
    await Job.filter(id=job.id).update(
        heartbeat_at=jobs.now() - jobs.STALE_AFTER - timedelta(seconds=1)
    )
    assert await jobs.recover() == [job.id]
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert (row.state, row.attempts) == (JobState.SUCCEEDED, 2), row.error
    ids = csv_ids(row.result["path"])
    assert ids == expected
    assert len(ids) == len(set(ids))
    assert row.result["rows"] == len(expected)


async def test_maintenance_purge(worker, world):
    from app.models import LoginThrottle, SessionToken

    broker, w = worker
    now = jobs.now()
    user = world.users["R1:Service Provider Administrator"]
    await SessionToken.filter(user=user).update(expires_at=now + timedelta(hours=1))
    old = await SessionToken.create(
        token_hash="a" * 64, user=user, expires_at=now - timedelta(days=2)
    )
    revoked = await SessionToken.create(
        token_hash="b" * 64,
        user=user,
        expires_at=now + timedelta(days=2),
        revoked_at=now - timedelta(days=2),
    )
    recent = await SessionToken.create(
        token_hash="c" * 64, user=user, expires_at=now - timedelta(hours=1)
    )
    await LoginThrottle.create(
        key="account:x", failures=3, window_started_at=now - timedelta(days=1)
    )
    await LoginThrottle.create(key="account:y", failures=3, window_started_at=now)
    finished, _ = await jobs.create(None, NOOP, None, {"steps": 0})
    drain(broker, w)
    await Job.filter(id=finished.id).update(finished_at=now - timedelta(days=31))
    job, _ = await jobs.create(None, "maintenance.purge", None, {})
    drain(broker, w)
    row = await Job.get(id=job.id)
    assert row.state == JobState.SUCCEEDED, row.error
    assert row.result == {"sessions": 2, "login_throttle": 1, "remote_sessions": 0, "jobs": 1}
    assert not await SessionToken.filter(id__in=[old.id, revoked.id]).exists()
    assert await SessionToken.filter(id=recent.id).exists()
    assert await LoginThrottle.filter(key="account:y").exists()
    assert not await Job.filter(id=finished.id).exists()


async def test_the_app_lifespan_runs_the_embedded_worker_and_resends_orphans(filedb):
    from dataclasses import replace

    from workers import runtime
    from workers.broker import current

    previous = jobs._dispatcher
    orphan = await Job.create(kind=NOOP, functionality="CONFIGURATION", params={"steps": 2})
    try:
        await runtime.start_for_app(replace(filedb, embedded_worker=True))
        job, _ = await jobs.create(None, NOOP, None, {"steps": 1})
        broker = current()
        broker.join(QUEUE, fail_fast=False, timeout=20_000)
    finally:
        runtime.stop_for_app()
        jobs.set_dispatcher(previous)
    assert (await Job.get(id=orphan.id)).state == JobState.SUCCEEDED
    assert (await Job.get(id=job.id)).state == JobState.SUCCEEDED
