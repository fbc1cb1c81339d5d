"""The monitoring summary: session results over a period, jobs by last result, computers by
agent status and protection, computed by SQL aggregates for the caller's scope."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import strawberry

from app.authz.capabilities import MONITORING
from app.authz.matrix import Action
from app.graphql.common import principal
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.permissions import guard
from app.graphql.workloads.types import AgentStatusEnum, Long, SessionResultEnum
from app.models.backups import SessionResult
from app.services import monitoring

Info = strawberry.Info[Context, Any]


@strawberry.type
class SessionResultCounts:
    success: int
    warning: int
    failed: int
    processed_bytes: Long  # type: ignore[valid-type]


@strawberry.type
class JobResultCount:
    result: SessionResultEnum  # type: ignore[valid-type]
    count: int


@strawberry.type
class AgentStatusCount:
    status: AgentStatusEnum  # type: ignore[valid-type]
    count: int


@strawberry.type
class ProtectionCounts:
    protected: int = strawberry.field(description="Newest restore point within the RPO.")
    rpo_breached: int = strawberry.field(description="Newest restore point older than the RPO.")
    unprotected: int = strawberry.field(description="No restore point at all.")


@strawberry.type
class MonitoringSummary:
    from_: date = strawberry.field(name="from")
    to: date
    sessions: SessionResultCounts = strawberry.field(
        description="Finished sessions of the days from `from` to `to` (inclusive), by result."
    )
    jobs_by_last_result: list[JobResultCount]
    computers_by_agent_status: list[AgentStatusCount]
    computers: ProtectionCounts


@strawberry.type
class MonitoringQuery:
    @strawberry.field(
        extensions=guard(MONITORING, Action.READ),
        description="Counts for your scope over a period of at most 366 days (days in UTC).",
    )
    async def monitoring_summary(
        self,
        info: Info,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
        company_id: strawberry.ID | None = None,
    ) -> MonitoringSummary | None:
        company = pk_of(company_id, "Company", "companyId") if company_id else None
        s = await monitoring.summary(principal(info), from_, to, company)
        return MonitoringSummary(
            from_=from_,
            to=to,
            sessions=SessionResultCounts(
                success=s.sessions[SessionResult.SUCCESS],
                warning=s.sessions[SessionResult.WARNING],
                failed=s.sessions[SessionResult.FAILED],
                processed_bytes=s.processed_bytes,
            ),
            jobs_by_last_result=[JobResultCount(result=r, count=n) for r, n in s.jobs.items()],
            computers_by_agent_status=[
                AgentStatusCount(status=st, count=n) for st, n in s.computers.items()
            ],
            computers=ProtectionCounts(
                protected=s.protected, rpo_breached=s.rpo_breached, unprotected=s.unprotected
            ),
        )
