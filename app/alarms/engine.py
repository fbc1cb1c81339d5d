"""The alarm engine: what an evaluator sees now (conditions) → alarm rows, their history, the
notifications (app.alarms.notify, in the same transaction) and the hub's wake-ups (after it).

One alarm per template and object: while open (PENDING, ACTIVE, ACKNOWLEDGED) an alarm holds
`active_key` = "<template id>:<object type>:<object id>", unique in the table, so two
evaluations racing on one object cannot both insert; the loser's transaction is rolled back
and `apply` runs again on what the winner committed.

An object watched by several organizations' templates (the company's own, its reseller's and
the provider's) gets one alarm per template: each portal has its own alarms, configured,
acknowledged and resolved independently (as in VSPC).

`apply(template, conditions, scope, now)`, in one transaction per batch of templates:
* conditions are filtered by the template's assignment and masks (app.alarms.watch);
* new object → PENDING (occurrences 1), or ACTIVE at once when trigger_after ≤ 1 (TRIGGERED);
* PENDING seen again → occurrences + 1, ACTIVE (TRIGGERED) when it reaches trigger_after;
* ACTIVE / ACKNOWLEDGED seen again → occurrences + 1 and last_seen_at (repeats are the
  counter: no history row per evaluation);
* another severity → SEVERITY_CHANGED history row (a PENDING alarm just takes it);
* open alarms of the template in the evaluated scope whose object is not among the admitted
  conditions → RESOLVED with an AUTO_RESOLVED row; a PENDING one, never raised nor told, is
  deleted instead. EVENT rules clear the same way: their evaluators report an object while its
  event is inside the template's window (a failed failover session until a later one succeeds,
  failed logins within the last N minutes), so the alarm resolves once the window has passed;
* suppress_after N: while N or more of the template's alarms are ACTIVE / ACKNOWLEDGED, no new
  alarm is raised (no new row, no PENDING → ACTIVE). The count is read in the apply's
  transaction under an advisory lock per template (PostgreSQL), so concurrent applies of one
  template cannot overshoot; on SQLite writers are serialized anyway.

Cost: per batch of templates, one SELECT of the open alarms, one of the raised counts when a
template suppresses, one INSERT (+ one SELECT for the new ids), one UPDATE per 1,000 plain
repeats, a bulk UPDATE for changed rows, one for resolutions, one INSERT of history and the
notifications' constant reads, whatever the number of objects.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from app.alarms import notify as notifications
from app.alarms.catalogue import CATALOGUE, Condition, EvalScope
from app.alarms.watch import Tree, Watch, assignment_locations, load_tree, watch_of
from app.db import connection_name, serialize
from app.models.alarms import (
    Alarm,
    AlarmChange,
    AlarmEvent,
    AlarmSeverity,
    AlarmStatus,
    AlarmTemplate,
    RuleKind,
)
from app.models.tenancy import Organization
from app.services import events

log = logging.getLogger(__name__)

RAISED = (AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED)
CHUNK = 1000
ATTEMPTS = 3
After = Callable[[], Awaitable[Any]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def active_key(template_id: int, object_type: str, object_id: int) -> str:
    return f"{template_id}:{object_type}:{object_id}"


def alarm_channel(organization_id: int) -> str:
    return f"alarm:{organization_id}"


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class Spec:
    """The columns of a template the engine uses (read with `.values()`: a sweep reads every
    organization's templates)."""

    id: int
    owner_id: int
    catalogue_key: str
    enabled: bool
    severity: AlarmSeverity
    thresholds: dict[str, Any]
    trigger_after: int
    suppress_after: int
    name_include: list[str]
    name_exclude: list[str]
    assignment: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> Spec:
        get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
        values: dict[str, Any] = {name: get(name) for name in SPEC_FIELDS}
        return cls(**values)

    def model(self) -> AlarmTemplate:
        """An unsaved template carrying what evaluators read (thresholds, severity)."""
        return AlarmTemplate(
            id=self.id,
            owner_id=self.owner_id,
            catalogue_key=self.catalogue_key,
            severity=self.severity,
            thresholds=self.thresholds,
        )

    def watch(self, tree: Tree) -> Watch:
        return watch_of(
            self.owner_id,
            self.assignment,
            self.name_include,
            self.name_exclude,
            self.created_at,
            tree,
        )


SPEC_FIELDS = tuple(Spec.__dataclass_fields__)


@dataclass
class Item:
    spec: Spec
    watch: Watch
    conditions: list[Condition]


@dataclass
class Changes:
    """What one apply (or resolution) changed. `changed` lists the alarms told about and
    published: raised, severity changed, resolved."""

    changed: list[tuple[Alarm, AlarmChange]] = field(default_factory=list)
    owners: dict[int, int] = field(default_factory=dict)  # template id → owner id
    pending: int = 0  # new PENDING rows and PENDING seen again
    repeated: int = 0  # ACTIVE / ACKNOWLEDGED seen again
    suppressed: int = 0  # not raised because of suppress_after
    discarded: int = 0  # PENDING alarms whose condition cleared (deleted)

    def of(self, change: AlarmChange) -> list[Alarm]:
        return [a for a, c in self.changed if c is change]

    def merge(self, other: Changes) -> None:
        self.changed += other.changed
        self.owners.update(other.owners)
        self.pending += other.pending
        self.repeated += other.repeated
        self.suppressed += other.suppressed
        self.discarded += other.discarded

    def counts(self) -> dict[str, int]:
        out = {c.value.lower(): 0 for c in AlarmChange if c is not AlarmChange.ACKNOWLEDGED}
        for _, change in self.changed:
            out[change.value.lower()] += 1
        out.update(
            pending=self.pending,
            repeated=self.repeated,
            suppressed=self.suppressed,
            discarded=self.discarded,
        )
        out.pop("resolved", None)
        return out


async def publish(changes: Changes) -> None:
    """Wake-ups on the hub after commit: `alarm:<organization>` for the object's organization,
    its ancestors and the template owner's. Never fails the caller (already committed)."""
    if not changes.changed:
        return
    # Every ancestor's channel too (company → reseller → provider): a subscriber listens on
    # its own organization's channel only, whatever the size of its tree.
    ancestors: dict[int, set[int]] = {}
    try:
        orgs = {alarm.organization_id for alarm, _ in changes.changed}
        for row in await Organization.filter(id__in=sorted(orgs)).values(
            "id", "parent_id", "parent__parent_id"
        ):
            ancestors[row["id"]] = {
                i for i in (row["parent_id"], row["parent__parent_id"]) if i is not None
            }
    except Exception as exc:
        log.warning("could not read the ancestors of alarmed organizations: %s", exc)
    for alarm, change in changes.changed:
        template_id: int = alarm.template_id  # type: ignore[attr-defined]
        payload = {
            "alarm": alarm.id,
            "change": change.value,
            "status": AlarmStatus(alarm.status).value,
            "severity": AlarmSeverity(alarm.severity).value,
            "template": template_id,
            "organization": alarm.organization_id,
        }
        channels = {
            alarm.organization_id,
            changes.owners.get(template_id, alarm.organization_id),
            *ancestors.get(alarm.organization_id, ()),
        }
        for org in sorted(channels):
            try:
                await events.publish(alarm_channel(org), payload)
            except Exception as exc:
                log.warning("could not publish alarm %s: %s", alarm.id, exc)


# --- templates --------------------------------------------------------------------------------


async def ensure_templates(org_ids: Iterable[int]) -> int:
    """Give every organization a configurable row of each catalogue template it lacks (bulk,
    idempotent: a concurrent creator's rows are skipped by the unique (owner, name)). Returns
    the rows created. Organizations that have them all cost one grouped count."""
    ids = sorted({int(i) for i in org_ids})
    keys = sorted(CATALOGUE)
    created = 0
    for chunk in _chunks(ids):
        counts = dict(
            await AlarmTemplate.filter(
                owner_id__in=list(chunk), custom=False, catalogue_key__in=keys
            )
            .annotate(n=Count("id"))
            .group_by("owner_id")
            .values_list("owner_id", "n")
        )
        lacking = [o for o in chunk if counts.get(o, 0) < len(keys)]
        if not lacking:
            continue
        have = set(
            await AlarmTemplate.filter(owner_id__in=lacking, custom=False).values_list(
                "owner_id", "catalogue_key"
            )
        )
        rows = [
            AlarmTemplate(
                owner_id=owner,
                catalogue_key=key,
                name=d.name,
                description=d.description,
                kind=d.kind,
                severity=d.default_severity,
                thresholds=dict(d.default_thresholds),
            )
            for owner in lacking
            for key, d in CATALOGUE.items()
            if (owner, key) not in have
        ]
        await AlarmTemplate.bulk_create(rows, batch_size=CHUNK, ignore_conflicts=True)
        created += len(rows)
    return created


# --- apply ------------------------------------------------------------------------------------


async def apply(
    template: AlarmTemplate,
    conditions: list[Condition],
    scope: EvalScope,
    now: datetime | None = None,
    tree: Tree | None = None,
) -> Changes:
    """One template's conditions (as its evaluator returned them for `scope`) → alarms."""
    spec = Spec.of(template)
    tree = tree or await load_tree(assignment_locations(spec.assignment))
    item = Item(spec, spec.watch(tree), conditions)
    return await apply_batch([item], scope.organization_ids, now or scope.now)


async def apply_batch(
    items: list[Item], scope_orgs: list[int] | None, now: datetime, after: After | None = None
) -> Changes:
    """Several templates' conditions in one transaction (then `after()` in it too: a cursor
    moved with the alarms it produced); alarms outside `scope_orgs` (None: all) are neither
    resolved nor read. Retried on a unique-key race with a concurrent evaluation."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with in_transaction(connection_name()):
                changes = await _apply(items, scope_orgs, now)
                await notifications.notify_many(changes.changed, now)
                if after is not None:
                    await after()
            break
        except IntegrityError:
            if attempt == ATTEMPTS:
                raise
            log.info("alarm apply raced another evaluation; reading again (attempt %d)", attempt)
    await publish(changes)
    return changes


@dataclass
class _Writes:
    new: list[Alarm] = field(default_factory=list)
    new_changes: dict[str, AlarmChange | None] = field(default_factory=dict)
    repeats: list[int] = field(default_factory=list)
    updated: list[Alarm] = field(default_factory=list)
    resolved: list[Alarm] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    history: list[tuple[Alarm, AlarmChange]] = field(default_factory=list)


async def _apply(items: list[Item], scope_orgs: list[int] | None, now: datetime) -> Changes:
    changes = Changes(owners={i.spec.id: i.spec.owner_id for i in items})
    if not items:
        return changes
    ids = sorted(changes.owners)
    suppressing = sorted(i.spec.id for i in items if i.spec.suppress_after > 0)
    for template_id in suppressing:
        await serialize(f"alarms:template:{template_id}")
    query = Alarm.filter(template_id__in=ids, active_key__isnull=False)
    if scope_orgs is not None:
        query = query.filter(organization_id__in=list(scope_orgs))
    open_by_template: dict[int, dict[str, Alarm]] = {t: {} for t in ids}
    for alarm in await query:
        open_by_template[alarm.template_id][alarm.active_key or ""] = alarm  # type: ignore[attr-defined]
    raised: dict[int, int] = {}
    if suppressing:
        raised = dict(
            await Alarm.filter(template_id__in=suppressing, status__in=RAISED)
            .annotate(n=Count("id"))
            .group_by("template_id")
            .values_list("template_id", "n")
        )
    settled = await _settled_by_hand(items, now)
    w = _Writes()
    for item in items:
        _plan(
            item,
            open_by_template[item.spec.id],
            raised.get(item.spec.id, 0),
            now,
            w,
            changes,
            settled.get(item.spec.id, set()),
        )
    await _write(w, now)
    changes.changed = w.history
    return changes


def _event_window(spec: Spec) -> timedelta | None:
    """How long an EVENT template keeps reporting one occurrence (its "hours" / "minutes"
    threshold); None when the object is the occurrence itself (a failed failover session)."""
    if "minutes" in spec.thresholds:
        return timedelta(minutes=int(spec.thresholds["minutes"]))
    if "hours" in spec.thresholds:
        return timedelta(hours=int(spec.thresholds["hours"]))
    return None


async def _settled_by_hand(items: list[Item], now: datetime) -> dict[int, set[tuple[str, int]]]:
    """Per EVENT template, the objects whose alarm a user resolved while the event is still in
    the template's window (for ever when the object is the event itself): an event resolved by
    hand is not raised again by the same occurrence; a new occurrence after the window is."""
    kinds = {key: d.kind for key, d in CATALOGUE.items()}
    occurrences = [i.spec for i in items if kinds.get(i.spec.catalogue_key) is RuleKind.EVENT]
    out: dict[int, set[tuple[str, int]]] = {spec.id: set() for spec in occurrences}
    if not occurrences:
        return out
    # One statement for all of them: each template with its own window.
    which = Q(id__in=[])
    for spec in occurrences:
        window = _event_window(spec)
        part = Q(template_id=spec.id)
        if window is not None:
            part &= Q(resolved_at__gte=now - window)
        which |= part
    # Ordered by the selected columns: PostgreSQL refuses DISTINCT with the model's default
    # ORDER BY id.
    rows = (
        await Alarm.filter(which, status=AlarmStatus.RESOLVED, history__change=AlarmChange.RESOLVED)
        .order_by("template_id", "object_type", "object_id")
        .distinct()
        .values_list("template_id", "object_type", "object_id")
    )
    for template_id, object_type, object_id in rows:
        out[int(template_id)].add((str(object_type), int(object_id)))
    return out


def _plan(
    item: Item,
    open_alarms: dict[str, Alarm],
    raised: int,
    now: datetime,
    w: _Writes,
    ch: Changes,
    settled: set[tuple[str, int]] | None = None,
) -> None:
    spec = item.spec
    limit = spec.suppress_after
    seen: set[str] = set()
    for c in item.conditions:
        if not item.watch.admits(c):
            continue
        key = active_key(spec.id, c.object_type, c.object_id)
        if key in seen:
            continue
        seen.add(key)
        severity = AlarmSeverity(c.severity)
        alarm = open_alarms.get(key)
        if alarm is None and settled and (c.object_type, c.object_id) in settled:
            continue  # resolved by hand: this occurrence is settled
        if alarm is None:
            trigger = spec.trigger_after <= 1
            if limit and raised >= limit:
                ch.suppressed += 1
                continue
            alarm = Alarm(
                template_id=spec.id,
                organization_id=c.organization_id,
                location_id=c.location_id,
                subtenant_id=c.subtenant_id,
                object_type=c.object_type,
                object_id=c.object_id,
                object_name=c.object_name[:300],
                status=AlarmStatus.ACTIVE if trigger else AlarmStatus.PENDING,
                severity=severity,
                message=c.message[:1000],
                active_key=key,
                occurrences=1,
                first_seen_at=now,
                last_seen_at=now,
                raised_at=now if trigger else None,
            )
            w.new.append(alarm)
            w.new_changes[key] = AlarmChange.TRIGGERED if trigger else None
            if trigger:
                raised += 1
            else:
                ch.pending += 1
            continue
        status = AlarmStatus(alarm.status)
        alarm.occurrences += 1
        alarm.last_seen_at = now
        change: AlarmChange | None = None
        if status is AlarmStatus.PENDING:
            ch.pending += 1
            if alarm.occurrences >= spec.trigger_after:
                if limit and raised >= limit:
                    ch.suppressed += 1
                else:
                    alarm.status, alarm.raised_at, change = (
                        AlarmStatus.ACTIVE,
                        now,
                        AlarmChange.TRIGGERED,
                    )
                    raised += 1
        else:
            ch.repeated += 1
            if severity != AlarmSeverity(alarm.severity):
                change = AlarmChange.SEVERITY_CHANGED
        facts = (severity, c.message[:1000], c.object_name[:300], c.location_id, c.subtenant_id)
        same = facts == (
            AlarmSeverity(alarm.severity),
            alarm.message,
            alarm.object_name,
            alarm.location_id,
            alarm.subtenant_id,
        )
        if same and change is None and status is AlarmStatus(alarm.status):
            w.repeats.append(alarm.id)
            continue
        alarm.severity, alarm.message, alarm.object_name = facts[0], facts[1], facts[2]
        alarm.location_id, alarm.subtenant_id = facts[3], facts[4]
        w.updated.append(alarm)
        if change is not None:
            w.history.append((alarm, change))
    for key, alarm in open_alarms.items():
        if key in seen:
            continue
        if AlarmStatus(alarm.status) is AlarmStatus.PENDING:
            w.discarded.append(alarm.id)
            ch.discarded += 1
            continue
        alarm.status, alarm.active_key, alarm.resolved_at = AlarmStatus.RESOLVED, None, now
        w.resolved.append(alarm)
        w.history.append((alarm, AlarmChange.AUTO_RESOLVED))


async def _write(w: _Writes, now: datetime, comment: str = "") -> None:
    if w.new:
        await Alarm.bulk_create(w.new, batch_size=CHUNK)
        keys = [a.active_key for a in w.new]
        stored: dict[str, Alarm] = {}
        for chunk in _chunks(keys):
            for row in await Alarm.filter(active_key__in=list(chunk)):
                stored[row.active_key or ""] = row
        for key in keys:
            change = w.new_changes.get(key or "")
            if change is not None:
                w.history.append((stored[key or ""], change))
    for chunk in _chunks(w.repeats):
        await Alarm.filter(id__in=list(chunk)).update(
            occurrences=F("occurrences") + 1, last_seen_at=now
        )
    if w.updated:
        await Alarm.bulk_update(
            w.updated,
            fields=[
                "occurrences",
                "last_seen_at",
                "status",
                "raised_at",
                "severity",
                "message",
                "object_name",
                "location_id",
                "subtenant_id",
            ],
            batch_size=CHUNK,
        )
    for chunk in _chunks([a.id for a in w.resolved]):
        await Alarm.filter(id__in=list(chunk), active_key__isnull=False).update(
            status=AlarmStatus.RESOLVED, active_key=None, resolved_at=now
        )
    for chunk in _chunks(w.discarded):
        await Alarm.filter(id__in=list(chunk), status=AlarmStatus.PENDING).delete()
    if w.history:
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
                for alarm, change in w.history
            ],
            batch_size=CHUNK,
        )


# --- resolution without evaluation -------------------------------------------------------------


async def _resolve(query: Any, comment: str, now: datetime | None) -> Changes:
    """Resolve the open alarms `query` selects (one transaction, nested in the caller's when
    there is one). The caller publishes the Changes once its transaction has committed."""
    now = now or utcnow()
    async with in_transaction(connection_name()):
        w = _Writes()
        rows = await query.filter(active_key__isnull=False)
        changes = Changes()
        for alarm in rows:
            if AlarmStatus(alarm.status) is AlarmStatus.PENDING:
                w.discarded.append(alarm.id)
                changes.discarded += 1
                continue
            alarm.status, alarm.active_key, alarm.resolved_at = AlarmStatus.RESOLVED, None, now
            w.resolved.append(alarm)
            w.history.append((alarm, AlarmChange.AUTO_RESOLVED))
        await _write(w, now, comment)
        changes.changed = w.history
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
