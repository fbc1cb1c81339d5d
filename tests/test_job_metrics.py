"""Job metrics come from the database, so every process's jobs count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.models import Job, JobState
from app.observability import metrics_text, refresh_job_metrics
from app.services.job_stats import collect


async def _job(state: JobState, kind: str = "k", waited: float = 0, ran: float | None = None):
    now = datetime.now(UTC)
    created = now - timedelta(seconds=waited + (ran or 0) + 1)
    started = created + timedelta(seconds=waited) if state is not JobState.QUEUED else None
    finished = started + timedelta(seconds=ran) if started and ran is not None else None
    job = await Job.create(kind=kind, state=state, functionality="LOGS")
    await Job.filter(id=job.id).update(created_at=created, started_at=started, finished_at=finished)


async def test_collect_counts_by_state_and_measures_recent_jobs(db):
    await _job(JobState.QUEUED)
    await _job(JobState.QUEUED)
    await _job(JobState.RUNNING, waited=2)
    await _job(JobState.SUCCEEDED, kind="export", waited=1, ran=10)
    await _job(JobState.SUCCEEDED, kind="export", waited=3, ran=30)
    stats = await collect()
    assert stats.by_state == {
        "QUEUED": 2,
        "RUNNING": 1,
        "SUCCEEDED": 2,
        "FAILED": 0,
        "CANCELLED": 0,
    }
    assert sorted(round(d) for d in stats.durations["export"]) == [10, 30]
    assert sorted(round(w) for w in stats.waits["export"]) == [1, 3]
    assert "k" not in stats.durations  # the running one has no duration yet


async def test_metrics_text_exposes_queue_depth_and_states(db):
    await _job(JobState.QUEUED)
    await _job(JobState.FAILED, waited=1, ran=2)
    await refresh_job_metrics()
    text = metrics_text().decode()
    assert "tenantry_job_queue_depth 1.0" in text
    assert 'tenantry_jobs{state="FAILED"} 1.0' in text
    assert 'tenantry_job_duration_seconds{kind="k",quantile="0.5"} 2.0' in text
