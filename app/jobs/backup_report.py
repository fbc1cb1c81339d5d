"""backup_report.generate: compute one backup report's content in SQL and store it.

For the report's company and period (whole days, UTC), within what its requester may see:
sessions by result per job, data processed and transferred, computers protected and out of
RPO at the period's end (from restore points, `TENANTRY_RPO_HOURS`), and the jobs that failed.
Every figure is a GROUP BY or COUNT in the database; Python only shapes the answer. The
content is written once (a second delivery finds it generated and stops). Params:
{"report_id": n}.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tortoise.functions import Count, Max, Sum

from app.authz.capabilities import BACKUP_REPORTS
from app.authz.matrix import Action, Functionality
from app.authz.principal import Principal
from app.jobs.context import JobContext, JobFailed
from app.jobs.registry import JobKind, register
from app.jobs.requester import requester_principal
from app.models import (
    BackupJob,
    BackupJobSession,
    BackupReport,
    ManagedComputer,
    RestorePoint,
    SessionResult,
)
from app.services.monitoring import rpo_cutoff
from app.services.workloads import computer_q, restore_point_q, session_q
from app.settings import get_settings

CHUNK = 1000


def _start(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


async def _jobs(ids: list[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), CHUNK):
        for row in await BackupJob.filter(id__in=ids[i : i + CHUNK]).values(
            "id", "name", "kind", "assigned_by_provider"
        ):
            found[row["id"]] = row
    return found


async def _distinct_computers(p: Principal, company_id: int, **filters: Any) -> int:
    rows = (
        await RestorePoint.filter(restore_point_q(p), company_id=company_id, **filters)
        .annotate(n=Count("computer_id", distinct=True))
        .values("n")
    )
    return int(rows[0]["n"] or 0) if rows else 0


async def content(p: Principal, company_id: int, start: date, end: date) -> dict[str, Any]:
    since, until = _start(start), _start(end + timedelta(days=1))
    at = min(until, datetime.now(UTC))
    grouped = (
        await BackupJobSession.filter(
            session_q(p), company_id=company_id, started_at__gte=since, started_at__lt=until
        )
        .annotate(
            sessions=Count("id"),
            processed=Sum("processed_bytes"),
            transferred=Sum("transferred_bytes"),
            last_started=Max("started_at"),
        )
        .group_by("job_id", "result")
        .values("job_id", "result", "sessions", "processed", "transferred", "last_started")
    )
    names = await _jobs(sorted({row["job_id"] for row in grouped}))
    results = [r.value for r in SessionResult]
    totals: dict[str, Any] = {
        "sessions": dict.fromkeys(results, 0),
        "processedBytes": 0,
        "transferredBytes": 0,
    }
    per_job: dict[int, dict[str, Any]] = {}
    for row in grouped:
        job = names.get(row["job_id"], {})
        entry = per_job.setdefault(
            row["job_id"],
            {
                "jobId": row["job_id"],
                "name": job.get("name", ""),
                "kind": str(job.get("kind", "")),
                "assignedByProvider": bool(job.get("assigned_by_provider", False)),
                "sessions": dict.fromkeys(results, 0),
                "processedBytes": 0,
                "transferredBytes": 0,
                "lastFailedAt": None,
            },
        )
        result = str(row["result"])
        count, processed = int(row["sessions"]), int(row["processed"] or 0)
        transferred = int(row["transferred"] or 0)
        entry["sessions"][result] += count
        entry["processedBytes"] += processed
        entry["transferredBytes"] += transferred
        totals["sessions"][result] += count
        totals["processedBytes"] += processed
        totals["transferredBytes"] += transferred
        if result == SessionResult.FAILED.value:
            entry["lastFailedAt"] = _iso(row["last_started"])
    jobs = sorted(per_job.values(), key=lambda j: (j["name"], j["jobId"]))
    failed = sorted(
        (
            {
                "jobId": j["jobId"],
                "name": j["name"],
                "failed": j["sessions"]["FAILED"],
                "lastFailedAt": j["lastFailedAt"],
            }
            for j in jobs
            if j["sessions"]["FAILED"]
        ),
        key=lambda j: (-j["failed"], j["name"]),
    )
    computers = await ManagedComputer.filter(computer_q(p), company_id=company_id).count()
    protected = await _distinct_computers(p, company_id, created_at__lt=at)
    within_rpo = await _distinct_computers(
        p, company_id, created_at__lt=at, created_at__gte=rpo_cutoff(at)
    )
    return {
        "periodStart": start.isoformat(),
        "periodEnd": end.isoformat(),
        "locations": sorted(p.location_ids) if p.location_ids is not None else None,
        "totals": totals,
        "jobs": jobs,
        "failedJobs": failed,
        "computers": {
            "total": computers,
            "protected": protected,
            "unprotected": max(0, computers - protected),
            "outOfRpo": max(0, protected - within_rpo),
            "rpoHours": get_settings().rpo_hours,
            "at": at.isoformat(),
        },
    }


async def generate(ctx: JobContext) -> dict[str, Any]:
    report = await BackupReport.get_or_none(id=int(ctx.params.get("report_id", 0)))
    if report is None:
        raise JobFailed("the backup report was removed")
    if report.generated_at is not None:
        return {"report_id": report.id, "already": True}
    principal = await requester_principal(
        report.requested_by_id,  # type: ignore[attr-defined]
        BACKUP_REPORTS,
        Action.CREATE,
        "generate backup reports",
    )
    await ctx.step("aggregate")
    body = await content(
        principal,
        report.company_id,  # type: ignore[attr-defined]
        report.period_start,
        report.period_end,
    )
    await ctx.step("store")
    stored = await BackupReport.filter(id=report.id, generated_at__isnull=True).update(
        content=body, generated_at=datetime.now(UTC)
    )
    return {
        "report_id": report.id,
        "stored": bool(stored),
        "jobs": len(body["jobs"]),
        "sessions": sum(body["totals"]["sessions"].values()),
    }


BACKUP_REPORT_GENERATE = register(
    JobKind(
        name="backup_report.generate",
        label="Generate a backup report",
        functionality=Functionality.BACKUP_REPORTS,
        handler=generate,
        time_limit_seconds=1800,
        max_attempts=3,
    )
)
