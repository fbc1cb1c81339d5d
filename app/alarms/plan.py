"""Planning one template's evaluation: its admitted conditions against its open alarms → the
rows to write (app.alarms.rows.Writes) and the counts (app.alarms.changes.Changes). Pure: no
SQL here. The rules (new, PENDING, repeats, severity changes, resolution, suppression) are
those of app.alarms.engine's docstring."""

from __future__ import annotations

from datetime import datetime

from app.alarms.catalogue import Condition
from app.alarms.changes import Changes
from app.alarms.rows import AnyAlarm, OpenAlarm, Writes, active_key, last_seen_due, resolve_into
from app.alarms.templates import Item, Spec
from app.models.alarms import Alarm, AlarmChange, AlarmSeverity, AlarmStatus

Facts = tuple[AlarmSeverity, str, str, int | None, int | None]


def facts_of(c: Condition) -> Facts:
    """What an alarm stores of its condition (severity, message, object name, location,
    Subtenant), cut to the columns' sizes."""
    return (
        AlarmSeverity(c.severity),
        c.message[:1000],
        c.object_name[:300],
        c.location_id,
        c.subtenant_id,
    )


def stored_facts(alarm: AnyAlarm) -> Facts:
    return (
        alarm.severity,
        alarm.message,
        alarm.object_name,
        alarm.location_id,
        alarm.subtenant_id,
    )


def _take(alarm: AnyAlarm, facts: Facts) -> None:
    alarm.severity, alarm.message, alarm.object_name = facts[0], facts[1], facts[2]
    alarm.location_id, alarm.subtenant_id = facts[3], facts[4]


class _Planner:
    """One template's plan; `raised` counts its ACTIVE / ACKNOWLEDGED alarms (suppress_after)."""

    def __init__(self, spec: Spec, raised: int, now: datetime, w: Writes, ch: Changes) -> None:
        self.spec, self.raised, self.now, self.w, self.ch = spec, raised, now, w, ch

    def suppressed(self) -> bool:
        limit = self.spec.suppress_after
        if limit and self.raised >= limit:
            self.ch.suppressed += 1
            return True
        return False

    def new(self, c: Condition, key: str, facts: Facts) -> None:
        trigger = self.spec.trigger_after <= 1
        if self.suppressed():
            return
        now = self.now
        self.w.new.append(
            Alarm(
                template_id=self.spec.id,
                organization_id=c.organization_id,
                location_id=facts[3],
                subtenant_id=facts[4],
                object_type=c.object_type,
                object_id=c.object_id,
                object_name=facts[2],
                status=AlarmStatus.ACTIVE if trigger else AlarmStatus.PENDING,
                severity=facts[0],
                message=facts[1],
                active_key=key,
                occurrences=1,
                first_seen_at=now,
                last_seen_at=now,
                raised_at=now if trigger else None,
            )
        )
        self.w.new_changes[key] = AlarmChange.TRIGGERED if trigger else None
        if trigger:
            self.raised += 1
        else:
            self.ch.pending += 1

    def pending_again(self, alarm: OpenAlarm, facts: Facts) -> None:
        """Every evaluation that sees a PENDING alarm counts (trigger_after: "seen this many
        times in a row"); it takes the condition's facts, severity included, silently."""
        self.ch.pending += 1
        alarm.occurrences += 1
        alarm.last_seen_at = self.now
        triggered = alarm.occurrences >= self.spec.trigger_after and not self.suppressed()
        if triggered:
            alarm.status, alarm.raised_at = AlarmStatus.ACTIVE, self.now
            self.raised += 1
        if facts == stored_facts(alarm) and not triggered:
            self.w.counted.append(alarm.id)
            return
        _take(alarm, facts)
        self.w.updated.append(alarm)
        if triggered:
            self.w.history.append((alarm, AlarmChange.TRIGGERED))

    def raised_again(self, alarm: OpenAlarm, facts: Facts) -> None:
        """A raised alarm seen again: written only when something changed (see the engine's
        docstring for what counts as a new occurrence)."""
        stored = stored_facts(alarm)
        if facts == stored:
            self.ch.unchanged += 1
            if last_seen_due(alarm.id, alarm.last_seen_at, self.now):
                alarm.last_seen_at = self.now
                self.w.seen.append(alarm.id)
                self.ch.refreshed += 1
            return
        if facts[:2] != stored[:2]:  # another severity or another message: a new occurrence
            alarm.occurrences += 1
            self.ch.repeated += 1
        alarm.last_seen_at = self.now
        _take(alarm, facts)
        self.w.updated.append(alarm)
        if facts[0] != stored[0]:
            self.w.history.append((alarm, AlarmChange.SEVERITY_CHANGED))


def plan(
    item: Item,
    open_alarms: dict[str, OpenAlarm],
    raised: int,
    now: datetime,
    w: Writes,
    ch: Changes,
    settled: set[tuple[str, int]] | None = None,
) -> None:
    """Plan one template's conditions against its open alarms in the evaluated scope (by
    active key); `settled`: the EVENT objects resolved by hand whose occurrence is not over."""
    planner = _Planner(item.spec, raised, now, w, ch)
    seen: set[str] = set()
    for c in item.conditions:
        if not item.watch.admits(c):
            continue
        key = active_key(item.spec.id, c.object_type, c.object_id)
        if key in seen:
            continue
        seen.add(key)
        facts = facts_of(c)
        alarm = open_alarms.get(key)
        if alarm is None:
            if not (settled and (c.object_type, c.object_id) in settled):
                planner.new(c, key, facts)
        elif AlarmStatus(alarm.status) is AlarmStatus.PENDING:
            planner.pending_again(alarm, facts)
        else:
            planner.raised_again(alarm, facts)
    for key, alarm in open_alarms.items():
        if key not in seen and not resolve_into(w, alarm, now):
            ch.discarded += 1
