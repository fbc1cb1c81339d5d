"""Aggregates over job rows for /metrics: counted in SQL, whatever the number of processes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.functions import Count

from app.models import Job, JobState

RECENT = timedelta(hours=1)
RECENT_SAMPLE = 2000


@dataclass(frozen=True)
class JobStats:
    by_state: dict[str, int]
    # Per kind, durations (seconds from start to finish) of jobs finished in the last hour.
    durations: dict[str, list[float]]
    # Per kind, waits (seconds from creation to first start) of jobs started in the last hour.
    waits: dict[str, list[float]]


async def collect(now: datetime | None = None) -> JobStats:
    now = now or datetime.now(UTC)
    rows = await Job.all().group_by("state").annotate(n=Count("id")).values("state", "n")
    by_state = {s.value: 0 for s in JobState}
    for row in rows:
        state = row["state"]
        by_state[state.value if isinstance(state, JobState) else str(state)] = row["n"]
    recent = (
        await Job.filter(started_at__gte=now - RECENT)
        .order_by("-id")
        .limit(RECENT_SAMPLE)
        .values("kind", "created_at", "started_at", "finished_at")
    )
    durations: dict[str, list[float]] = {}
    waits: dict[str, list[float]] = {}
    for r in recent:
        waits.setdefault(r["kind"], []).append((r["started_at"] - r["created_at"]).total_seconds())
        if r["finished_at"] is not None:
            durations.setdefault(r["kind"], []).append(
                (r["finished_at"] - r["started_at"]).total_seconds()
            )
    return JobStats(by_state, durations, waits)
