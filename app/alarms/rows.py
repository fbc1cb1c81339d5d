"""Alarm rows as the engine writes them: their keys, what one evaluation plans to write
(`Writes`) and `write`, the set-based statements that store it.

`last_seen_at` of a raised alarm whose condition still holds unchanged is not rewritten on
every evaluation: it is refreshed once it is older than `LAST_SEEN_REFRESH` plus a spread of up
to `LAST_SEEN_SPREAD` taken from the alarm's id (so the alarms raised by one sweep do not all
come due in the same minute). It is therefore less than `LAST_SEEN_REFRESH +
LAST_SEEN_SPREAD` (30 minutes) behind the last evaluation that saw the condition, and exact
whenever the alarm changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from tortoise.expressions import F

from app.models.alarms import Alarm, AlarmChange, AlarmEvent, AlarmSeverity, AlarmStatus

RAISED = (AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED)
CHUNK = 1000
LAST_SEEN_REFRESH = timedelta(minutes=15)
LAST_SEEN_SPREAD = 15  # minutes, by alarm id

# An alarm's facts (what `plan` compares with its condition) and what a change rewrites.
FACT_FIELDS = ("severity", "message", "object_name", "location_id", "subtenant_id")
UPDATED_FIELDS = ("occurrences", "last_seen_at", "status", "raised_at", *FACT_FIELDS)


def utcnow() -> datetime:
    return datetime.now(UTC)


def active_key(template_id: int, object_type: str, object_id: int) -> str:
    return f"{template_id}:{object_type}:{object_id}"


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def last_seen_due(alarm_id: int, last_seen_at: datetime, now: datetime) -> bool:
    """Whether an unchanged raised alarm's `last_seen_at` is old enough to be refreshed."""
    return last_seen_at <= last_seen_cutoffs(now)[alarm_id % LAST_SEEN_SPREAD]


@lru_cache(maxsize=8)
def last_seen_cutoffs(now: datetime) -> tuple[datetime, ...]:
    """Per `id % LAST_SEEN_SPREAD`, the `last_seen_at` at or before which a refresh is due."""
    return tuple(now - LAST_SEEN_REFRESH - timedelta(minutes=m) for m in range(LAST_SEEN_SPREAD))


@dataclass(slots=True)
class OpenAlarm:
    """An open alarm as an evaluation reads it: the columns `plan` compares and may change,
    read as plain values (a model instance costs several times more, and most open alarms are
    seen again unchanged). `write` reads the changed ones as models, one SELECT per 1,000."""

    id: int
    template_id: int
    active_key: str | None
    status: AlarmStatus
    severity: AlarmSeverity
    message: str
    object_name: str
    location_id: int | None
    subtenant_id: int | None
    occurrences: int
    last_seen_at: datetime
    raised_at: datetime | None
    resolved_at: datetime | None = None

    @classmethod
    def of(cls, row: Sequence[Any]) -> OpenAlarm:
        """From a `values_list(*OPEN_FIELDS)` row (enums already converted by the field)."""
        return cls(*row)


OPEN_FIELDS = tuple(f for f in OpenAlarm.__dataclass_fields__ if f != "resolved_at")
CARRIED = tuple(f for f in OpenAlarm.__dataclass_fields__ if f not in ("id", "template_id"))
AnyAlarm = Alarm | OpenAlarm


@dataclass
class Writes:
    """What one evaluation (or resolution) writes: new rows (and the history change each gets
    once stored), PENDING rows counting occurrences (`counted`, one UPDATE per 1,000), raised
    rows merely confirmed whose `last_seen_at` is due (`seen`, one UPDATE per 1,000), rows whose
    facts or status changed (`updated`, bulk), resolutions, discarded PENDING rows and the
    history rows."""

    new: list[Alarm] = field(default_factory=list)
    new_changes: dict[str, AlarmChange | None] = field(default_factory=dict)
    counted: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    updated: list[AnyAlarm] = field(default_factory=list)
    resolved: list[AnyAlarm] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    history: list[tuple[AnyAlarm, AlarmChange]] = field(default_factory=list)


async def _models(w: Writes) -> Callable[[AnyAlarm], Alarm]:
    """The changed alarms read as models (one SELECT per 1,000 `OpenAlarm`s changed): a
    function giving each alarm of `w` as a model carrying the planned values."""
    ids = sorted({a.id for a in [*w.updated, *w.resolved] if isinstance(a, OpenAlarm)})
    models: dict[int, Alarm] = {}
    for chunk in chunks(ids):
        for row in await Alarm.filter(id__in=list(chunk)):
            models[row.id] = row

    def model(alarm: AnyAlarm) -> Alarm:
        if isinstance(alarm, Alarm):
            return alarm
        row = models[alarm.id]
        for name in CARRIED:
            setattr(row, name, getattr(alarm, name))
        return row

    return model


async def write(w: Writes, now: datetime, comment: str = "") -> list[tuple[Alarm, AlarmChange]]:
    """Store `w`; returns the history rows written, with the alarms as models (what the
    notifications and the hub are given)."""
    model = await _models(w)
    history = [(model(a), change) for a, change in w.history]
    if w.new:
        await Alarm.bulk_create(w.new, batch_size=CHUNK)
        keys = [a.active_key for a in w.new]
        stored: dict[str, Alarm] = {}
        for chunk in chunks(keys):
            for row in await Alarm.filter(active_key__in=list(chunk)):
                stored[row.active_key or ""] = row
        for key in keys:
            change = w.new_changes.get(key or "")
            if change is not None:
                history.append((stored[key or ""], change))
    for chunk in chunks(w.counted):
        await Alarm.filter(id__in=list(chunk)).update(
            occurrences=F("occurrences") + 1, last_seen_at=now
        )
    for chunk in chunks(w.seen):
        await Alarm.filter(id__in=list(chunk)).update(last_seen_at=now)
    if w.updated:
        updated = [model(a) for a in w.updated]
        await Alarm.bulk_update(updated, fields=list(UPDATED_FIELDS), batch_size=CHUNK)
    for chunk in chunks([a.id for a in w.resolved]):
        await Alarm.filter(id__in=list(chunk), active_key__isnull=False).update(
            status=AlarmStatus.RESOLVED, active_key=None, resolved_at=now
        )
    for chunk in chunks(w.discarded):
        await Alarm.filter(id__in=list(chunk), status=AlarmStatus.PENDING).delete()
    if history:
        await AlarmEvent.bulk_create(
            [
                AlarmEvent(
                    alarm_id=alarm.id,
                    change=change,
                    status=alarm.status,
                    severity=alarm.severity,
                    comment=comment,
                    at=now,
                )
                for alarm, change in history
            ],
            batch_size=CHUNK,
        )
    return history


def resolve_into(w: Writes, alarm: AnyAlarm, now: datetime) -> bool:
    """An open alarm whose condition is gone: a PENDING one (never raised nor told) is
    discarded, a raised one resolved with an AUTO_RESOLVED history row. True when resolved."""
    if AlarmStatus(alarm.status) is AlarmStatus.PENDING:
        w.discarded.append(alarm.id)
        return False
    alarm.status, alarm.active_key, alarm.resolved_at = AlarmStatus.RESOLVED, None, now
    w.resolved.append(alarm)
    w.history.append((alarm, AlarmChange.AUTO_RESOLVED))
    return True
