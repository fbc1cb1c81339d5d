"""GraphQL for failover plan runs: start, test, undo, retry and cancel; the sessions (types in
session_types, loaders in session_loaders: one query per level for a page of sessions); live
progress with `failoverSessionUpdated(id)`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import FAILOVER_SESSIONS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import actor, principal
from app.graphql.context import Context
from app.graphql.failover.session_types import (
    FailoverSessionType,
    PointChoiceEnum,
    SessionStateEnum,
    session_node,
)
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.models.failover import (
    FailoverLogEntry,
    FailoverSession,
    FailoverSessionState,
    PointChoice,
    SessionKind,
)
from app.services import events, failover_runs
from app.services.failover_progress import session_channel
from app.services.guards import require

Info = strawberry.Info[Context, Any]

# Without any event for this long, a followed session is read again.
QUIET_RECHECK_SECONDS = 15.0


# --- queries and mutations -------------------------------------------------------------------


@strawberry.input
class FailoverSessionFilter:
    plan_id: strawberry.ID | None = None
    state: SessionStateEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class FailoverPlanRunInput:
    plan_id: strawberry.ID
    point_choice: PointChoiceEnum = PointChoice.LATEST  # type: ignore[valid-type]
    point_in_time: datetime | None = strawberry.field(
        default=None, description="With BEFORE: the closest restore point at or before it."
    )


@strawberry.type
class FailoverSessionQuery:
    @strawberry.field(extensions=guard(FAILOVER_SESSIONS, Action.READ), description="Newest first.")
    async def failover_sessions(
        self,
        info: Info,
        filter: FailoverSessionFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[FailoverSessionType] | None:
        query = FailoverSession.filter(failover_runs.session_q(principal(info)))
        if filter is not None:
            if filter.plan_id:
                query = query.filter(plan_id=pk_of(filter.plan_id, "FailoverPlan", "filter.planId"))
            if filter.state:
                query = query.filter(state=filter.state)
        return await paginate(query, first, after, FailoverSessionType.from_row, descending=True)

    @strawberry.field(extensions=guard(FAILOVER_SESSIONS, Action.READ))
    async def failover_session(self, info: Info, id: strawberry.ID) -> FailoverSessionType | None:
        return await session_node(principal(info), pk_of(id, "FailoverSession"))


async def _run(info: Info, input: FailoverPlanRunInput, kind: SessionKind) -> FailoverSessionType:
    session = await failover_runs.start(
        actor(info),
        pk_of(input.plan_id, "FailoverPlan", "input.planId"),
        kind,
        PointChoice(input.point_choice),
        input.point_in_time,
    )
    return FailoverSessionType.from_row(session)


@strawberry.type
class FailoverSessionMutation:
    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.CREATE),
        description="Fails the plan over (READY → IN_PROGRESS): its VMs powered on in order "
        "from the chosen restore points, then the network appliance and public IPs.",
    )
    async def failover_plan_start(
        self, info: Info, input: FailoverPlanRunInput
    ) -> FailoverSessionType:
        return await _run(info, input, SessionKind.FAILOVER)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.CREATE),
        description="Tests the plan (READY → TEST_IN_PROGRESS → READY): VMs booted in "
        "isolation, checked, powered off; the recovery time is measured.",
    )
    async def failover_plan_test(
        self, info: Info, input: FailoverPlanRunInput
    ) -> FailoverSessionType:
        return await _run(info, input, SessionKind.TEST)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.CREATE),
        description="Runs a FAILED plan's failover again; the VMs already up are kept.",
    )
    async def failover_plan_retry(
        self, info: Info, input: FailoverPlanRunInput
    ) -> FailoverSessionType:
        return await _run(info, input, SessionKind.RETRY)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.CREATE),
        description="Fails back a COMPLETED or FAILED plan: its replicas powered off and "
        "returned to READY, the plan READY.",
    )
    async def failover_plan_undo(self, info: Info, plan_id: strawberry.ID) -> FailoverSessionType:
        session = await failover_runs.start(
            actor(info), pk_of(plan_id, "FailoverPlan", "planId"), SessionKind.UNDO
        )
        return FailoverSessionType.from_row(session)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.UPDATE),
        description="Stops a running session at its next step boundary: a failover leaves "
        "the VMs up running and the plan FAILED; a test powers off what it booted (READY); "
        "an undo leaves the plan COMPLETED.",
    )
    async def failover_session_cancel(self, info: Info, id: strawberry.ID) -> FailoverSessionType:
        session = await failover_runs.cancel(actor(info), pk_of(id, "FailoverSession"))
        return FailoverSessionType.from_row(session)


# --- live progress ---------------------------------------------------------------------------


async def _snapshot(row: FailoverSession) -> tuple[Any, ...]:
    last_log = (
        await FailoverLogEntry.filter(session_id=row.id)
        .order_by("-id")
        .limit(1)
        .values_list("id", flat=True)
    )
    return (row.state, row.vms_up, row.vms_failed, row.finished_at, tuple(last_log))


async def follow(p: Principal, pk: int) -> AsyncIterator[FailoverSessionType]:
    """The session now, then after each step, until it has ended (re-read in scope)."""
    async with events.subscribe(session_channel(pk)) as subscription:
        row = await failover_runs.session_in_scope(p, pk)
        yield FailoverSessionType.from_row(row)
        seen = await _snapshot(row)
        while row.state is FailoverSessionState.RUNNING:
            await subscription.next(within=QUIET_RECHECK_SECONDS)
            row = await failover_runs.session_in_scope(p, pk)
            now = await _snapshot(row)
            if now == seen:
                continue
            seen = now
            yield FailoverSessionType.from_row(row)


@strawberry.type
class FailoverSessionSubscription:
    @strawberry.subscription(
        description="The session now, then after each step; completes once it has ended. "
        "NOT_FOUND outside your scope."
    )
    async def failover_session_updated(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[FailoverSessionType, None]:  # type: ignore[misc]
        # Checked before the stream starts, so a refusal is the protocol's `error` message.
        p = principal(info)
        pk = pk_of(id, "FailoverSession")
        if not info.context.bypass_authorization:
            require(p, FAILOVER_SESSIONS, Action.READ)
        await failover_runs.session_in_scope(p, pk)
        return follow(p, pk)  # type: ignore[return-value]
