"""Live alarms: `alarmRaised` over graphql-transport-ws.

The engine publishes each change on `alarm:<organization>` for the alarm's organization, its
ancestors and its template owner (`changes.publish`); acknowledging and resolving publish the same
way. A subscriber listens on its own organization's channel — and, when its role is limited to
selected companies, on theirs (the list is read again every minute) — all feeding one queue.
Events are wake-ups carrying alarm ids: each batch of ids is read again through `alarm_q` in one
query, so an alarm outside the caller's scope (another company for a user limited to some
companies, another location, another Subtenant's computer, a template of the reseller for a
company user, a PENDING alarm) is never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import strawberry

from app.alarms.changes import alarm_channel
from app.authz import scope
from app.authz.capabilities import ALARMS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.alarms.types import AlarmType
from app.graphql.common import principal
from app.graphql.context import Context
from app.models import Organization
from app.models.alarms import Alarm
from app.services import alarms, events
from app.services.guards import require

Info = strawberry.Info[Context, Any]

# Ids read per wake-up at most (a sweep that changes more sends the newest of them).
MAX_BATCH = 500
# How often the organizations in scope are read again (new companies join the stream).
RESCOPE_SECONDS = 60.0


def _ids(payload: dict[str, Any]) -> set[int]:
    """`{"alarm": id}` (the engine's) or `{"alarms": [ids]}`; a resync carries none."""
    found = payload.get("alarms") or [payload.get("alarm")]
    return {int(i) for i in found if isinstance(i, int)}


def _drain(queue: asyncio.Queue[dict[str, Any]], first: dict[str, Any]) -> set[int]:
    """The ids of a wake-up and of every one already queued behind it."""
    ids = _ids(first)
    while True:
        try:
            ids |= _ids(queue.get_nowait())
        except asyncio.QueueEmpty:
            return ids


async def _channels(p: Principal) -> set[str]:
    orgs: list[int] = []
    if p.company_ids is not None:
        orgs = await Organization.filter(scope.org_q(p)).values_list(  # type: ignore[assignment]
            "id", flat=True
        )
    return {alarm_channel(org) for org in [p.organization_id, *orgs]}


async def follow(p: Principal) -> AsyncIterator[AlarmType]:
    """Each alarm in scope as it is raised or changes, until the client stops."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=events.QUEUE_SIZE)
    async with contextlib.AsyncExitStack() as stack:
        listening: set[str] = set()

        async def listen() -> None:
            for channel in sorted(await _channels(p) - listening):
                subscription = await stack.enter_async_context(events.subscribe(channel))
                subscription.queue = queue  # every channel feeds the one queue
                listening.add(channel)

        await listen()
        scoped_at = time.monotonic()
        while True:
            if time.monotonic() - scoped_at >= RESCOPE_SECONDS:
                await listen()
                scoped_at = time.monotonic()
            try:
                first = await asyncio.wait_for(queue.get(), RESCOPE_SECONDS)
            except TimeoutError:
                continue
            ids = _drain(queue, first)
            if not ids:
                continue  # a resync after a lost connection: nothing to re-read by id
            rows = (
                await Alarm.filter(alarms.alarm_q(p), id__in=sorted(ids)[-MAX_BATCH:])
                .select_related("template")
                .order_by("id")
            )
            for row in rows:
                yield AlarmType.from_row(row)


@strawberry.type
class AlarmSubscription:
    @strawberry.subscription(
        description="Alarms in your scope as they are raised and change (acknowledged, "
        "resolved, severity changed)."
    )
    async def alarm_raised(self, info: Info) -> AsyncGenerator[AlarmType, None]:  # type: ignore[misc]
        # Checked before the stream starts, so a refusal is the protocol's `error` message.
        p = principal(info)
        if not info.context.bypass_authorization:
            require(p, ALARMS, Action.READ)
        return follow(p)  # type: ignore[return-value]
