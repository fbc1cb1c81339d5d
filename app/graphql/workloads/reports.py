"""GraphQL for backup reports: per company and period, generated in the background
(app.services.backup_reports), read and removed."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.authz.capabilities import BACKUP_REPORTS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import Node, actor, principal, register_node, viewer_allows
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.jobs.types import JobType
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.graphql.workloads.types import gid
from app.models import BackupReport, Job
from app.services import backup_reports

Info = strawberry.Info[Context, Any]


@strawberry.type(
    name="BackupReport",
    description="A company's backup activity over a period: sessions by result per job, data "
    "processed, computers protected and out of RPO, failed jobs. Null content until generated.",
)
class BackupReportType(Node):
    id: strawberry.ID
    company_id: strawberry.ID
    period_start: date
    period_end: date = strawberry.field(description="Inclusive.")
    job_id: strawberry.ID | None = strawberry.field(description="The job generating it.")
    content: JSON | None = strawberry.field(
        description="{ periodStart periodEnd locations totals jobs failedJobs computers }."
    )
    generated_at: datetime | None
    created_at: datetime
    _row: strawberry.Private[BackupReport]

    @classmethod
    def from_row(cls, row: BackupReport) -> BackupReportType:
        return cls(
            id=strawberry.ID(to_global_id("BackupReport", row.id)),
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            period_start=row.period_start,
            period_end=row.period_end,
            job_id=gid("Job", row.job_id),  # type: ignore[attr-defined]
            content=row.content,  # type: ignore[arg-type]
            generated_at=row.generated_at,
            created_at=row.created_at,
            _row=row,
        )

    @strawberry.field(description="You may remove this report.")
    def viewer_can_delete(self, info: Info) -> bool:
        return viewer_allows(info, BACKUP_REPORTS, Action.DELETE)


@strawberry.input
class BackupReportFilter:
    company_id: strawberry.ID | None = None


@strawberry.input
class BackupReportGenerateInput:
    company_id: strawberry.ID
    period_start: date
    period_end: date = strawberry.field(description="Inclusive; at most 366 days in all.")


@strawberry.type
class BackupReportGeneratePayload:
    report: BackupReportType
    job: JobType | None
    created: bool = strawberry.field(
        description="False when the same company and period were already being generated."
    )


async def _report(p: Principal, pk: int) -> BackupReportType:
    return BackupReportType.from_row(await backup_reports.report_in_scope(p, pk))


register_node("BackupReport", BACKUP_REPORTS, _report)


@strawberry.type
class BackupReportQuery:
    @strawberry.field(extensions=guard(BACKUP_REPORTS, Action.READ))
    async def backup_reports(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: BackupReportFilter | None = None,
    ) -> Connection[BackupReportType] | None:
        query = BackupReport.filter(backup_reports.report_q(principal(info)))
        if filter is not None and filter.company_id:
            query = query.filter(company_id=pk_of(filter.company_id, "Company", "filter.companyId"))
        return await paginate(query, first, after, BackupReportType.from_row, descending=True)

    @strawberry.field(extensions=guard(BACKUP_REPORTS, Action.READ))
    async def backup_report(self, info: Info, id: strawberry.ID) -> BackupReportType | None:
        return await _report(principal(info), pk_of(id, "BackupReport"))


@strawberry.type
class BackupReportMutation:
    @strawberry.mutation(
        extensions=guard(BACKUP_REPORTS, Action.CREATE),
        description="Generates a report in the background; while the same company and period "
        "are being generated, returns that report.",
    )
    async def backup_report_generate(
        self, info: Info, input: BackupReportGenerateInput
    ) -> BackupReportGeneratePayload:
        report, created = await backup_reports.generate(
            actor(info),
            pk_of(input.company_id, "Company", "input.companyId"),
            input.period_start,
            input.period_end,
        )
        job_id = report.job_id  # type: ignore[attr-defined]
        job = await Job.get_or_none(id=job_id) if job_id is not None else None
        return BackupReportGeneratePayload(
            report=BackupReportType.from_row(report),
            job=JobType.from_row(job) if job is not None else None,
            created=created,
        )

    @strawberry.mutation(
        extensions=guard(BACKUP_REPORTS, Action.DELETE),
        description="Removes a report (a generation in progress is cancelled).",
    )
    async def backup_report_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await backup_reports.delete(actor(info), pk_of(id, "BackupReport"))
        return DeletePayload(deleted_id=id)
