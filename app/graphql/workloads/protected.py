"""Protected data: per managed computer, what is protected and whether its RPO holds.

One SQL statement per page (the computer with its company and location joined, and the count
of the enabled jobs protecting it that the caller may read as a correlated subquery), plus a
COUNT when `totalCount` is asked for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from tortoise.expressions import RawSQL, Subquery
from tortoise.functions import Count

from app.authz import scope
from app.authz.capabilities import PROTECTED_DATA
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import principal
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.workloads.filters import in_place
from app.models.backups import BackupJob
from app.models.inventory import ManagedComputer
from app.services import monitoring, workloads
from app.services.monitoring import RpoStatus

Info = strawberry.Info[Context, Any]

RpoStatusEnum = strawberry.enum(
    RpoStatus,
    name="RpoStatus",
    description="OK: the newest restore point is within TENANTRY_RPO_HOURS (default 24); "
    "BREACHED: older; NEVER_PROTECTED: none.",
)


def protecting_jobs(p: Principal) -> Subquery:
    """The number of enabled jobs protecting the page's computer (agent jobs bound to it) that
    the principal may read: a product row of the matrix that lets it read the job's kind (and
    "Jobs assigned by service provider" for the provider's jobs in the Client Portal), and the
    job inside its locations and own computers. The company part of the job's scope follows
    from the computer's, which is in scope; the company condition also lets the
    (company_id, functionality) index narrow the scan. A correlated subquery inside the page's
    statement, so the page stays one statement."""
    jobs = BackupJob.filter(
        scope.within_q(p, subtenant="target_subtenant_id"),
        scope.backup_job_q(p),
        enabled=True,
        company_id=RawSQL('"managed_computers"."company_id"'),
        computer_id=RawSQL('"managed_computers"."id"'),
    )
    return Subquery(jobs.annotate(n=Count("id")).values("n"))


@strawberry.type(name="ProtectedComputer", description="A managed computer's protection.")
class ProtectedComputerType:
    computer_id: strawberry.ID
    hostname: str
    company_id: strawberry.ID
    company_name: str
    location_id: strawberry.ID
    location_name: str
    last_restore_point_at: datetime | None
    restore_point_count: int
    rpo_status: RpoStatusEnum  # type: ignore[valid-type]
    protected_job_count: int = strawberry.field(
        description="The enabled backup jobs protecting the computer (its agent jobs) that you "
        "may read: disabled jobs, and jobs of a product (or provider-assigned jobs) your role "
        "cannot read, are not counted."
    )


@strawberry.input
class ProtectedComputerFilter:
    company_id: strawberry.ID | None = None
    location_id: strawberry.ID | None = None
    rpo_status: RpoStatusEnum | None = None  # type: ignore[valid-type]


def _node(cutoff: datetime) -> Any:
    def build(row: ManagedComputer) -> ProtectedComputerType:
        return ProtectedComputerType(
            computer_id=strawberry.ID(to_global_id("ManagedComputer", row.id)),
            hostname=row.hostname,
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            company_name=row.company.name,
            location_id=strawberry.ID(to_global_id("Location", row.location_id)),  # type: ignore[attr-defined]
            location_name=row.location.name,
            last_restore_point_at=row.last_restore_point_at,
            restore_point_count=row.restore_point_count,
            rpo_status=monitoring.rpo_status(row.last_restore_point_at, cutoff),
            protected_job_count=int(row.protected_jobs),  # type: ignore[attr-defined]
        )

    return build


@strawberry.type
class ProtectedDataQuery:
    @strawberry.field(
        extensions=guard(PROTECTED_DATA, Action.READ),
        description="Managed computers in your scope with their newest restore point and RPO "
        "status (a Subtenant: their own computers).",
    )
    async def protected_computers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: ProtectedComputerFilter | None = None,
    ) -> Connection[ProtectedComputerType] | None:
        cutoff = monitoring.rpo_cutoff()
        p = principal(info)
        query = ManagedComputer.filter(workloads.computer_q(p))
        if filter is not None:
            query = in_place(query, filter.company_id, filter.location_id)
            if filter.rpo_status is not None:
                query = query.filter(monitoring.rpo_q(RpoStatus(filter.rpo_status), cutoff))
        page = query.select_related("company", "location").annotate(
            protected_jobs=protecting_jobs(p)
        )
        connection = await paginate(page, first, after, _node(cutoff))
        connection._count_query = query
        return connection
