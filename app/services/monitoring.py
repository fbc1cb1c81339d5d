"""Protected data and the monitoring summary, computed in SQL for the caller's scope.

RPO status of a computer, from its newest restore point (kept on the computer by ingestion):
OK when it is at most `TENANTRY_RPO_HOURS` old, BREACHED when older, NEVER_PROTECTED when
there is none. The same rule is a SQL filter (`rpo_q`), so the status filter and the summary's
counts never load rows into Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count, Sum

from app.authz import capabilities, scope
from app.authz.principal import Principal
from app.errors import BadInput, NotFound
from app.models.backups import BackupJob, SessionResult, SessionRollup
from app.models.inventory import AgentStatus, ManagedComputer
from app.models.tenancy import Organization
from app.services import workloads
from app.settings import get_settings

MAX_PERIOD_DAYS = 366


class RpoStatus(StrEnum):
    OK = "OK"
    BREACHED = "BREACHED"
    NEVER_PROTECTED = "NEVER_PROTECTED"


def rpo_cutoff(at: datetime | None = None) -> datetime:
    return (at or datetime.now(UTC)) - timedelta(hours=get_settings().rpo_hours)


def rpo_status(last_restore_point_at: datetime | None, cutoff: datetime) -> RpoStatus:
    if last_restore_point_at is None:
        return RpoStatus.NEVER_PROTECTED
    return RpoStatus.OK if last_restore_point_at >= cutoff else RpoStatus.BREACHED


def rpo_q(status: RpoStatus, cutoff: datetime) -> Q:
    """Computers of this RPO status, as a filter on ManagedComputer."""
    if status is RpoStatus.NEVER_PROTECTED:
        return Q(last_restore_point_at__isnull=True)
    if status is RpoStatus.OK:
        return Q(last_restore_point_at__gte=cutoff)
    return Q(last_restore_point_at__lt=cutoff)


async def company_filter(p: Principal, company_id: int | None) -> Q:
    """Narrow to one company; NOT_FOUND when it is outside the caller's scope."""
    if company_id is None:
        return Q()
    if not await Organization.filter(scope.company_q(p), id=company_id).exists():
        raise NotFound("company")
    return Q(company_id=company_id)


def validate_period(start: date, end: date) -> None:
    if start > end:
        raise BadInput("'from' must not be after 'to'", field="from")
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise BadInput(f"the period may cover at most {MAX_PERIOD_DAYS} days", field="to")


@dataclass
class Summary:
    sessions: dict[SessionResult, int] = field(default_factory=dict)
    processed_bytes: int = 0
    jobs: dict[SessionResult, int] = field(default_factory=dict)
    computers: dict[AgentStatus, int] = field(default_factory=dict)
    protected: int = 0
    unprotected: int = 0
    rpo_breached: int = 0


async def summary(
    p: Principal, start: date, end: date, company_id: int | None = None, at: datetime | None = None
) -> Summary:
    """Three aggregate statements, whatever the fleet's size: session results summed from the
    daily rollups, jobs grouped by last result, computers grouped by agent status with their
    protection counts."""
    validate_period(start, end)
    only = await company_filter(p, company_id)
    out = Summary()

    # Only the products whose jobs the principal may read (the Department Portal has no
    # Public Clouds or Microsoft 365 rows: those sessions and jobs are not its to count).
    products = sorted(
        {capabilities.JOB_FUNCTIONALITY[kind].value for kind, _ in workloads.readable_job_kinds(p)}
    )
    rollups = await (
        SessionRollup.filter(
            workloads.flat_workload_q(p),
            only,
            day__gte=start,
            day__lte=end,
            functionality__in=products,
        )
        .annotate(
            success_sum=Sum("success"),
            warning_sum=Sum("warning"),
            failed_sum=Sum("failed"),
            bytes_sum=Sum("processed_bytes"),
        )
        .values("success_sum", "warning_sum", "failed_sum", "bytes_sum")
    )
    totals: dict[str, Any] = rollups[0] if rollups else {}
    out.sessions = {
        SessionResult.SUCCESS: int(totals.get("success_sum") or 0),
        SessionResult.WARNING: int(totals.get("warning_sum") or 0),
        SessionResult.FAILED: int(totals.get("failed_sum") or 0),
    }
    out.processed_bytes = int(totals.get("bytes_sum") or 0)

    jobs = (
        await BackupJob.filter(
            scope.workload_q(p, subtenant="target_subtenant_id", flat=True),
            scope.backup_job_q(p),
            only,
        )
        .annotate(n=Count("id"))
        .group_by("last_result")
        .values("last_result", "n")
    )
    out.jobs = {result: 0 for result in SessionResult}
    for row in jobs:
        out.jobs[SessionResult(row["last_result"])] = row["n"]

    # Computers by agent status, with the protection counts of each status in the same
    # statement (an explicit GROUP BY; at most one row per status).
    cutoff = rpo_cutoff(at)
    computers = (
        await ManagedComputer.filter(scope.workload_q(p, flat=True), only)
        .annotate(
            n=Count("id"),
            protected=Count("id", _filter=rpo_q(RpoStatus.OK, cutoff)),
            breached=Count("id", _filter=rpo_q(RpoStatus.BREACHED, cutoff)),
            never=Count("id", _filter=rpo_q(RpoStatus.NEVER_PROTECTED, cutoff)),
        )
        .group_by("agent_status")
        .values("agent_status", "n", "protected", "breached", "never")
    )
    out.computers = {status: 0 for status in AgentStatus}
    for row in computers:
        out.computers[AgentStatus(row["agent_status"])] = row["n"]
        out.protected += row["protected"]
        out.rpo_breached += row["breached"]
        out.unprotected += row["never"]
    return out
