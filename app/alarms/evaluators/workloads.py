"""Backup jobs, protected computers and the console's own operations on them (file-level
restores, discovery rules)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.functions import Max

from app.alarms.evaluators.base import (
    HOURS,
    Check,
    Condition,
    K,
    S,
    define,
    stamp,
)
from app.models import (
    AlarmSeverity,
    BackupJob,
    DiscoveryRule,
    FileRestoreRequest,
    JobRunState,
    JobState,
    ManagedComputer,
    RestoreState,
    SessionResult,
)

JOB_FIELDS = (
    "id",
    "name",
    "company_id",
    "location_id",
    "target_subtenant_id",
    "computer__subtenant_id",
    "last_run_at",
)


def _job(row: dict[str, Any], severity: AlarmSeverity, message: str) -> Condition:
    return Condition(
        "BackupJob",
        row["id"],
        row["name"],
        row["company_id"],
        row["location_id"],
        row["target_subtenant_id"] or row["computer__subtenant_id"],
        severity,
        message,
    )


async def _jobs_with_result(check: Check, result: SessionResult, said: str) -> list[Condition]:
    if check.empty_scope:
        return []
    rows = await check.narrow(BackupJob.filter(last_result=result), "company_id").values(
        *JOB_FIELDS
    )
    return [
        _job(
            r, check.severity, f"the last session of {r['name']} {said} ({stamp(r['last_run_at'])})"
        )
        for r in rows
    ]


async def job_failed(check: Check) -> list[Condition]:
    return await _jobs_with_result(check, SessionResult.FAILED, "failed")


async def job_warning(check: Check) -> list[Condition]:
    return await _jobs_with_result(check, SessionResult.WARNING, "ended with warnings")


async def job_too_long(check: Check) -> list[Condition]:
    """A job whose latest session (ingestion keeps `last_run_at` = its start and `run_state`
    RUNNING until it ends) started more than `hours` ago and is still running."""
    if check.empty_scope:
        return []
    limit = check.thresholds["hours"]
    rows = await check.narrow(
        BackupJob.filter(
            run_state__in=[JobRunState.RUNNING, JobRunState.STOPPING],
            last_run_at__lt=check.now - timedelta(hours=limit),
        ),
        "company_id",
    ).values(*JOB_FIELDS)
    return [
        _job(
            r,
            check.severity,
            f"{r['name']} has been running since {stamp(r['last_run_at'])} (limit {limit} h)",
        )
        for r in rows
    ]


async def rpo_exceeded(check: Check) -> list[Condition]:
    """Protected computers (with at least one backup job) whose newest restore point is older
    than `hours`, or that have none and were added more than `hours` ago."""
    if check.empty_scope:
        return []
    limit = check.thresholds["hours"]
    cutoff = check.now - timedelta(hours=limit)
    protected = BackupJob.filter(computer_id__not_isnull=True).values("computer_id")
    rows = await check.narrow(
        ManagedComputer.filter(
            Q(last_restore_point_at__lt=cutoff)
            | Q(last_restore_point_at__isnull=True, created_at__lt=cutoff),
            id__in=Subquery(protected),
        ),
        "company_id",
    ).values("id", "hostname", "company_id", "location_id", "subtenant_id", "last_restore_point_at")
    out = []
    for r in rows:
        last = r["last_restore_point_at"]
        said = (
            f"no successful backup since {stamp(last)} (limit {limit} h)"
            if last
            else f"never backed up (limit {limit} h)"
        )
        out.append(
            Condition(
                "ManagedComputer",
                r["id"],
                r["hostname"],
                r["company_id"],
                r["location_id"],
                r["subtenant_id"],
                check.severity,
                said,
            )
        )
    return out


async def file_restore_failed(check: Check) -> list[Condition]:
    """Restores that failed within `hours`, unless a later restore of the same computer
    completed. Two statements: the failures, then the computers' latest completions."""
    if check.empty_scope:
        return []
    limit = check.thresholds["hours"]
    cutoff = check.now - timedelta(hours=limit)
    failed = await check.narrow(
        FileRestoreRequest.filter(
            Q(finished_at__gte=cutoff) | Q(finished_at__isnull=True, created_at__gte=cutoff),
            state=RestoreState.FAILED,
        ),
        "company_id",
    ).values(
        "id",
        "company_id",
        "computer_id",
        "computer__hostname",
        "computer__location_id",
        "computer__subtenant_id",
        "error",
        "created_at",
        "finished_at",
    )
    if not failed:
        return []
    completed = await (
        FileRestoreRequest.filter(
            state=RestoreState.COMPLETED, computer_id__in={r["computer_id"] for r in failed}
        )
        .group_by("computer_id")
        .annotate(last=Max("finished_at"))
        .values("computer_id", "last")
    )
    later = {r["computer_id"]: r["last"] for r in completed if r["last"] is not None}
    out = []
    for r in failed:
        at = r["finished_at"] or r["created_at"]
        done = later.get(r["computer_id"])
        if done is not None and done > at:
            continue
        out.append(
            Condition(
                "FileRestoreRequest",
                r["id"],
                r["computer__hostname"],
                r["company_id"],
                r["computer__location_id"],
                r["computer__subtenant_id"],
                check.severity,
                f"file-level restore #{r['id']} on {r['computer__hostname']} failed"
                f" ({stamp(at)}): {(r['error'] or 'no reason given')[:300]}",
            )
        )
    return out


async def discovery_failed(check: Check) -> list[Condition]:
    """Rules whose last run's job failed, or whose last result lists errors. The JSON result
    is read for the rules that have one (a few per company) and its errors counted here."""
    if check.empty_scope:
        return []
    rows = await check.narrow(
        DiscoveryRule.filter(Q(last_run_job__state=JobState.FAILED) | Q(last_result__isnull=False)),
        "company_id",
    ).values(
        "id",
        "name",
        "company_id",
        "location_id",
        "last_result",
        "last_run_job__state",
        "last_run_job__error",
    )
    out = []
    for r in rows:
        errors = list((r["last_result"] or {}).get("errors") or [])
        if r["last_run_job__state"] == JobState.FAILED:
            said = f"the last run of {r['name']} failed: {(r['last_run_job__error'] or '')[:300]}"
        elif errors:
            said = f"the last run of {r['name']} reported {len(errors)} error(s): {str(errors[0])[:300]}"
        else:
            continue
        out.append(
            Condition(
                "DiscoveryRule",
                r["id"],
                r["name"],
                r["company_id"],
                r["location_id"],
                None,
                check.severity,
                said,
            )
        )
    return out


DEFINITIONS = [
    define(
        "job_session_failed",
        "Job session failed",
        "The latest finished session of a backup job failed; clears when a later session"
        " succeeds or ends with a warning.",
        K.STATE_CHANGE,
        S.ERROR,
        "sessions",
        job_failed,
        "BackupJob",
    ),
    define(
        "job_session_warning",
        "Job session warning",
        "The latest finished session of a backup job ended with warnings.",
        K.STATE_CHANGE,
        S.WARNING,
        "sessions",
        job_warning,
        "BackupJob",
    ),
    define(
        "job_running_too_long",
        "Job running longer than allowed",
        "A backup job session has been running for more than the allowed hours.",
        K.THRESHOLD,
        S.WARNING,
        "time",
        job_too_long,
        "BackupJob",
        {"hours": 8},
        HOURS,
    ),
    define(
        "rpo_exceeded",
        "No successful backup within the RPO",
        "A protected computer (one with backup jobs) has no restore point newer than the"
        " allowed hours.",
        K.THRESHOLD,
        S.ERROR,
        "time",
        rpo_exceeded,
        "ManagedComputer",
        {"hours": 24},
        HOURS,
    ),
    define(
        "file_restore_failed",
        "File-level restore failed",
        "A file-level restore failed within the last hours and no later restore of the same"
        " computer completed.",
        K.EVENT,
        S.ERROR,
        "inventory",
        file_restore_failed,
        "FileRestoreRequest",
        {"hours": 72},
        HOURS,
    ),
    define(
        "discovery_rule_failed",
        "Discovery rule failed",
        "The last run of a discovery rule failed or reported errors.",
        K.STATE_CHANGE,
        S.WARNING,
        "inventory",
        discovery_failed,
        "DiscoveryRule",
    ),
]
