"""Backup reports: per company and period, generated in the background
(`backup_report.generate`, app/jobs/backup_report.py) and kept until removed.

One generation in flight per requester, company and period: asking again while one is queued
or running returns that report (the company's row is locked while deciding, so two requests
racing make one). A report covers what its requester may see (a Location Administrator's
report covers their locations), so another user's report in flight is never handed out, and a
principal limited to locations reads only the reports they asked for.

Permission: BACKUP_REPORTS (created and deleted; a report's content is never edited).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tortoise.expressions import Q, Subquery

from app.authz import scope
from app.authz.capabilities import BACKUP_REPORTS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import BadInput, Conflict, NotFound
from app.models import BackupReport, Job, JobState, Organization
from app.models.jobs import FINISHED
from app.models.tenancy import OrgKind
from app.services import jobs
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.monitoring import validate_period
from app.services.tenancy import org_in_scope

RUN_KIND = "backup_report.generate"
# A report row whose job was never linked (the process died in between) stops counting as in
# flight after this long.
UNLINKED_GRACE = timedelta(minutes=5)


def report_q(p: Principal) -> Q:
    """Reports of the companies in scope; a principal limited to locations reads only their
    own (a company-wide report would show other locations), a Subtenant none."""
    q = scope.company_q(p, "company") & scope.untied_rows_q(p)
    if p.location_ids is not None:
        q &= Q(requested_by_id=p.user_id)
    return q


async def report_in_scope(p: Principal, pk: int) -> BackupReport:
    row = await BackupReport.filter(report_q(p), id=pk).first()
    if row is None:
        raise NotFound("backup report")
    return row


def target(company_id: int) -> Target:
    return Target(
        kind=BACKUP_REPORTS.kind, organization_id=company_id, organization_kind=OrgKind.COMPANY
    )


def period(start: date, end: date) -> tuple[date, date]:
    try:
        validate_period(start, end)
    except BadInput as exc:
        field = "input.periodStart" if exc.field == "from" else "input.periodEnd"
        raise BadInput(exc.message, field=field) from None
    if end > datetime.now(UTC).date():
        raise BadInput("the period must not end in the future", field="input.periodEnd")
    return start, end


def in_flight_q(now: datetime) -> Q:
    live_jobs = Job.filter(state__in=[JobState.QUEUED, JobState.RUNNING]).values("id")
    running = Q(job_id__in=Subquery(live_jobs))
    unlinked = Q(job_id__isnull=True, created_at__gte=now - UNLINKED_GRACE)
    return Q(generated_at__isnull=True) & (running | unlinked)


async def generate(
    actor: Actor, company_id: int, period_start: date, period_end: date
) -> tuple[BackupReport, bool]:
    """The report the caller is generating for the company and period, or a new one (True)."""
    p = actor.p
    require(p, BACKUP_REPORTS, Action.CREATE)
    try:
        company = await org_in_scope(p, company_id, OrgKind.COMPANY)
    except NotFound:
        raise NotFound("company", field="input.companyId") from None
    require(p, BACKUP_REPORTS, Action.CREATE, target(company.id))
    start, end = period(period_start, period_end)
    async with audited(
        actor, "backupReportGenerate", "BackupReport", organization_id=company.id
    ) as entry:
        # Serialises generations for the company (PostgreSQL; SQLite writes one at a time).
        await Organization.filter(id=company.id).select_for_update().first()
        existing = (
            await BackupReport.filter(
                in_flight_q(datetime.now(UTC)),
                company_id=company.id,
                period_start=start,
                period_end=end,
                # A report covers what its requester sees: another's is not this one.
                requested_by_id=p.user_id,
            )
            .order_by("id")
            .first()
        )
        if existing is None:
            report = await BackupReport.create(
                company=company, period_start=start, period_end=end, requested_by_id=p.user_id
            )
        else:
            report = existing
        entry.bind(
            report.id,
            periodStart=start.isoformat(),
            periodEnd=end.isoformat(),
            deduplicated=existing is not None,
        )
    if existing is not None:
        return existing, False
    # After the commit: the worker must find the report when the job reaches it.
    job, _ = await jobs.create(
        actor, RUN_KIND, company, {"report_id": report.id}, dedup_key=f"{RUN_KIND}:{report.id}"
    )
    await BackupReport.filter(id=report.id).update(job=job)
    return await BackupReport.get(id=report.id), True


async def delete(actor: Actor, report_id: int) -> BackupReport:
    """Remove a report; one still being generated has its job cancelled too."""
    p = actor.p
    report = await report_in_scope(p, report_id)
    company_id = report.company_id  # type: ignore[attr-defined]
    require(p, BACKUP_REPORTS, Action.DELETE, target(company_id))
    async with audited(actor, "backupReportDelete", "BackupReport", report.id, company_id) as entry:
        entry.details.update(
            periodStart=report.period_start.isoformat(), periodEnd=report.period_end.isoformat()
        )
        await BackupReport.filter(id=report.id).delete()
    job_id = report.job_id  # type: ignore[attr-defined]
    job = await Job.get_or_none(id=job_id) if job_id is not None else None
    if job is not None and job.state not in FINISHED:
        try:
            await jobs.request_cancel(actor, job)
        except Conflict:
            pass  # finished meanwhile; the handler finds no report and writes nothing
    return report
