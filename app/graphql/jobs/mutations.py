"""Cancelling jobs, and the starters of the job kinds users launch themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import AUDIT_LOG
from app.authz.matrix import Action
from app.errors import BadInput, Forbidden
from app.graphql.common import actor, principal
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.jobs.types import JobType, can_cancel
from app.graphql.permissions import authenticated, guard
from app.models import Organization
from app.services import jobs
from app.services.jobs import job_in_scope

Info = strawberry.Info[Context, Any]

AUDIT_LOG_EXPORT = "audit_log_export"


@strawberry.input(description="The period to export; an omitted bound does not limit.")
class AuditLogExportInput:
    from_: datetime | None = strawberry.field(default=None, name="from", description="At or after.")
    to: datetime | None = strawberry.field(default=None, description="At or before.")


@strawberry.type
class JobMutation:
    @strawberry.mutation(
        extensions=authenticated(),
        description=(
            "Cancels a job: a queued one at once, a running one at its next step "
            "(cancelRequested). Needs more than READ on the job's functionality; "
            "CONFLICT when it is already finished."
        ),
    )
    async def job_cancel(self, info: Info, id: strawberry.ID) -> JobType:
        p = principal(info)
        job = await job_in_scope(p, pk_of(id, "Job"))
        if not info.context.bypass_authorization and not can_cancel(p, job):
            raise Forbidden(f"your role ({p.role.name}) may only read this job")
        return JobType.from_row(await jobs.request_cancel(actor(info), job))

    @strawberry.mutation(
        extensions=guard(AUDIT_LOG, Action.READ),
        description=(
            "Exports your organization's audit log in the background; the finished job's "
            "result holds { path rows }."
        ),
    )
    async def audit_log_export_start(self, info: Info, input: AuditLogExportInput) -> JobType:
        who = actor(info)
        if input.from_ is not None and input.to is not None and input.from_ > input.to:
            raise BadInput("'from' must not be after 'to'", field="input.to")
        organization = await Organization.get(id=who.p.organization_id)
        params = {
            "from": input.from_.isoformat() if input.from_ else None,
            "to": input.to.isoformat() if input.to else None,
        }
        job, _ = await jobs.create(who, AUDIT_LOG_EXPORT, organization, params)
        return JobType.from_row(job)
