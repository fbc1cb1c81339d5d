"""Resolving open alarms without an evaluation: a template disabled or deleted, organizations
disabled, and the sweep's safety net for templates disabled behind the engine's back. Each
resolves with AUTO_RESOLVED history rows (PENDING alarms, never raised nor told, are deleted)
and notifies in the same transaction; the caller publishes once its transaction committed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from app.alarms import notify as notifications
from app.alarms.catalogue import CATALOGUE
from app.alarms.changes import Changes, publish
from app.alarms.rows import Writes, resolve_into, utcnow, write
from app.db import connection_name
from app.models.alarms import Alarm, AlarmTemplate


async def _resolve(query: Any, comment: str, now: datetime | None) -> Changes:
    """Resolve the open alarms `query` selects (one transaction, nested in the caller's when
    there is one). The caller publishes the Changes once its transaction has committed."""
    now = now or utcnow()
    async with in_transaction(connection_name()):
        w = Writes()
        changes = Changes()
        for alarm in await query.filter(active_key__isnull=False):
            if not resolve_into(w, alarm, now):
                changes.discarded += 1
        changes.changed = await write(w, now, comment)
        await notifications.notify_many(changes.changed, now)
    if changes.changed:
        owners = await AlarmTemplate.filter(
            id__in=sorted({a.template_id for a, _ in changes.changed})  # type: ignore[attr-defined]
        ).values_list("id", "owner_id")
        changes.owners = dict(owners)  # type: ignore[arg-type]
    return changes


async def resolve_for_template(template: AlarmTemplate, now: datetime | None = None) -> Changes:
    """A template disabled or deleted: its open alarms resolve (AUTO_RESOLVED, "template
    disabled"). Call it in the transaction that disables it; `publish` the result after."""
    return await _resolve(Alarm.filter(template_id=template.id), "template disabled", now)


async def resolve_for_organizations(
    org_ids: Iterable[int], reason: str, now: datetime | None = None
) -> Changes:
    """Organizations disabled: the open alarms about their objects resolve (AUTO_RESOLVED with
    `reason`), whichever template raised them; evaluations skip them until re-enabled.
    Call it in the disabling transaction; `publish` the result after it commits."""
    ids = sorted({int(i) for i in org_ids})
    if not ids:
        return Changes()
    return await _resolve(Alarm.filter(organization_id__in=ids), reason, now)


async def resolve_disabled_templates(now: datetime | None = None) -> Changes:
    """The sweep's safety net: open alarms of templates disabled (or of keys no longer in the
    catalogue) without `resolve_for_template`."""
    stale = AlarmTemplate.filter(enabled=False).values_list("id", flat=True)
    gone = AlarmTemplate.exclude(catalogue_key__in=sorted(CATALOGUE)).values_list("id", flat=True)
    ids = sorted({int(str(i)) for i in [*(await stale), *(await gone)]})
    if not ids:
        return Changes()
    changes = await _resolve(Alarm.filter(template_id__in=ids), "template disabled", now)
    await publish(changes)
    return changes
