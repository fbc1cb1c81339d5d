"""Reading jobs: scoped in SQL to the organizations and functionalities the caller may see."""

from __future__ import annotations

from typing import Any

import strawberry
from tortoise.queryset import QuerySet

from app.authz import scope
from app.authz.principal import Principal
from app.errors import BadInput
from app.graphql.common import principal, register_node
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, from_global_id, pk_of
from app.graphql.jobs.types import JobStateType, JobType
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import authenticated
from app.models import Job, JobState
from app.services.jobs import job_in_scope

Info = strawberry.Info[Context, Any]

ORG_TYPES = frozenset(ORG_TYPE_NAMES.values())


async def fetch_job_node(p: Principal, pk: int) -> JobType:
    return JobType.from_row(await job_in_scope(p, pk))


register_node("Job", None, fetch_job_node)


@strawberry.input(description="All conditions must hold; omitted ones do not filter.")
class JobFilter:
    state: JobStateType | None = None  # type: ignore[valid-type]
    kind: str | None = None
    organization_id: strawberry.ID | None = strawberry.field(
        default=None, description="A Company's, Reseller's or ServiceProvider's global id."
    )


def apply_filter(query: QuerySet, f: JobFilter | None) -> QuerySet:
    if f is None:
        return query
    if f.state is not None:
        query = query.filter(state=JobState(f.state))
    if f.kind:
        query = query.filter(kind=f.kind)
    if f.organization_id:
        type_name, pk = from_global_id(f.organization_id, "filter.organizationId")
        if type_name not in ORG_TYPES:
            raise BadInput("expected an organization's id", field="filter.organizationId")
        query = query.filter(organization_id=pk)
    return query


@strawberry.type
class JobQuery:
    @strawberry.field(
        extensions=authenticated(),
        description="A job you may see (its organization and functionality); else NOT_FOUND.",
    )
    async def job(self, info: Info, id: strawberry.ID) -> JobType | None:
        return await fetch_job_node(principal(info), pk_of(id, "Job"))

    @strawberry.field(
        extensions=authenticated(),
        description="The jobs you may see, newest first.",
    )
    async def jobs(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: JobFilter | None = None,
    ) -> Connection[JobType] | None:
        query = apply_filter(Job.filter(scope.job_q(principal(info))), filter)
        return await paginate(query, first, after, JobType.from_row, descending=True)
