"""Live progress: `jobUpdated(id)` over graphql-transport-ws.

The subscriber listens on the job's channel first and reads the row second, so no change can
fall between the two; every event is a wake-up after which the row is read again (in scope:
a job that leaves the caller's scope ends the stream with NOT_FOUND). The stream completes
after a finished state. A quiet job is re-read now and then, in case an event was lost.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import strawberry

from app.authz.principal import Principal
from app.graphql.common import principal
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.jobs.types import JobType
from app.models import Job
from app.models.jobs import FINISHED
from app.services import events
from app.services.jobs import job_in_scope

Info = strawberry.Info[Context, Any]

# Without any event for this long, the row is read again (a lost event costs at most this).
QUIET_RECHECK_SECONDS = 15.0


def _snapshot(row: Job) -> tuple[Any, ...]:
    return (
        row.state,
        row.progress_percent,
        row.progress_message,
        row.cancel_requested,
        row.attempts,
        row.error,
        row.heartbeat_at,
        row.finished_at,
    )


async def follow(p: Principal, pk: int) -> AsyncIterator[JobType]:
    """The job now, then once per change, until it is finished."""
    async with events.subscribe(events.job_channel(pk)) as subscription:
        row = await job_in_scope(p, pk)
        yield JobType.from_row(row)
        seen = _snapshot(row)
        while row.state not in FINISHED:
            await subscription.next(within=QUIET_RECHECK_SECONDS)
            row = await job_in_scope(p, pk)
            if _snapshot(row) == seen:
                continue  # coalesced wake-ups, or a quiet re-check that found nothing new
            seen = _snapshot(row)
            yield JobType.from_row(row)


@strawberry.type
class JobSubscription:
    @strawberry.subscription(
        description=(
            "The job now, then after each change (state, progress); completes once it is "
            "finished. NOT_FOUND outside your scope."
        )
    )
    async def job_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[JobType, None]:  # type: ignore[misc]
        # Checked before the stream starts, so a refusal is the protocol's `error` message.
        p = principal(info)
        pk = pk_of(id, "Job")
        await job_in_scope(p, pk)
        return follow(p, pk)  # type: ignore[return-value]
