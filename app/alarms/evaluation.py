"""Running the evaluators: full sweeps, incremental sweeps and one organization's evaluation.

Templates that share a catalogue key, thresholds and severity share one evaluator call (its
scope: the union of the organizations they watch); the conditions are then handed to each
template by organization (app.alarms.watch decides which), and applied in batches of
templates, one transaction each (app.alarms.engine).

* `evaluate_all(now)`: every enabled template of every organization over everything it
  watches (open alarms anywhere that are no longer reported resolve: disabled organizations,
  exclusions, cleared conditions). Also creates missing templates and moves every cursor.
* `evaluate_changed(now)`: per source with a cursor, only the organizations with changes since
  it — "sessions" (BackupJobSession id > cursor → companies), "events" (DomainEvent id >
  cursor), "logins" (failed `login` AuditEntry id > cursor) — each source's cursor moved in the
  transaction of the last alarms it produced. EVENT-like sources ("events", "logins") also
  re-evaluate the organizations holding open alarms of their templates, so an event that leaves
  its window resolves within a minute. The sources without a change log ("heartbeats",
  "usage", "tenants", "inventory", "billing") are evaluated whole on each run. The clock's
  templates ("time": RPO, jobs running too long, unpaid invoices — thresholds of hours and
  days) are evaluated whole every `CLOCK_MINUTES` (and on every full sweep), and in between
  with the "sessions" source over the organizations whose sessions changed, which is what ends
  an RPO breach or a long run: a clock-driven raise comes at most `CLOCK_MINUTES` late, a
  session's effect within the minute (and at once through `evaluate_organizations`).
* `evaluate_organizations(ids)`: every template watching these organizations, over them only
  (the `alarms.evaluate` job an ingested batch, a failed login or an ended failover session
  requests through `request_evaluation`); cursors are left alone, the sweep catches up anyway.
* `sweep(now)`: the scheduled `alarms.sweep` job (the scheduler's single leader enqueues one per
  tick): incremental, and a full sweep when `alarms_full_sweep_minutes` have passed since the
  last one.

A session updated in place (RUNNING → FAILED) keeps its id: the ingestion trigger covers it,
and `request_evaluation` queues a follow-up for the next minute when this minute's job has
already started, so a change is never left to the hourly sweep.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from app.alarms.catalogue import CATALOGUE, Condition, Definition, EvalScope
from app.alarms.changes import Changes
from app.alarms.engine import After, apply_batch
from app.alarms.resolution import resolve_disabled_templates
from app.alarms.rows import utcnow
from app.alarms.templates import SPEC_FIELDS, Item, Spec, ensure_templates
from app.alarms.watch import Tree, assignment_locations, load_tree
from app.db import column, connection_name
from app.models import AuditEntry, BackupJobSession, Job, JobState, Organization
from app.models.alarms import Alarm, AlarmTemplate, EvaluationCursor
from app.models.failover import DomainEvent
from app.settings import get_settings

log = logging.getLogger(__name__)

EVALUATE_KIND = "alarms.evaluate"
SWEEP_KIND = "alarms.sweep"
BATCH = 500  # templates per transaction
CURSOR_SOURCES = ("sessions", "events", "logins")
WINDOWED_SOURCES = frozenset({"events", "logins"})
FULL_SWEEP_CURSOR = "sweep:full"
CLOCK_SOURCE = "time"
CLOCK_CURSOR = "sweep:clock"  # when the clock's templates were last evaluated whole (epoch s)
CLOCK_MINUTES = 5


@dataclass
class Report:
    """What an evaluation did: evaluator calls, templates applied, organizations evaluated per
    source (None: all) and the alarm changes."""

    evaluator_calls: int = 0
    templates: int = 0
    organizations: dict[str, list[int] | None] = field(default_factory=dict)
    changes: Changes = field(default_factory=Changes)
    full: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "full": self.full,
            "evaluatorCalls": self.evaluator_calls,
            "templates": self.templates,
            "organizations": {
                k: (None if v is None else len(v)) for k, v in self.organizations.items()
            },
            **self.changes.counts(),
        }


def _group_key(spec: Spec) -> tuple[str, str, str]:
    return (spec.catalogue_key, json.dumps(spec.thresholds or {}, sort_keys=True), spec.severity)


async def _specs(keys: Iterable[str], owners: set[int] | None) -> list[Spec]:
    query = AlarmTemplate.filter(enabled=True, catalogue_key__in=sorted(set(keys)))
    if owners is not None:
        query = query.filter(owner_id__in=sorted(owners))
    return [Spec.of(row) for row in await query.order_by("id").values(*SPEC_FIELDS)]


async def _run(
    keys: Iterable[str],
    orgs: list[int] | None,
    now: datetime,
    report: Report,
    after: After | None = None,
) -> None:
    """Evaluate the templates of `keys` over `orgs` (None: everything) and apply them."""
    keys = [k for k in keys if k in CATALOGUE]
    tree_orgs: set[int] | None = None if orgs is None else set(orgs)
    specs: list[Spec] = []
    tree: Tree | None = None
    if keys and (tree_orgs is None or tree_orgs):
        tree = await load_tree()
        owners = None if tree_orgs is None else tree.watchers(tree_orgs)
        specs = await _specs(keys, owners)
        wanted = set().union(*(assignment_locations(s.assignment) for s in specs))
        if wanted:
            tree = await load_tree(wanted)
    # A template with nothing reported and no open alarm in scope has nothing to apply.
    holding: set[int] = set()
    if specs:
        query = Alarm.filter(active_key__isnull=False)
        if orgs is not None:
            query = query.filter(organization_id__in=orgs)
        holding = set(await column(query.order_by("template_id").distinct(), "template_id"))
    groups: dict[tuple[str, str, str], list[Spec]] = defaultdict(list)
    for spec in specs:
        groups[_group_key(spec)].append(spec)
    batches: list[list[Item]] = []
    for group in groups.values():
        assert tree is not None
        definition: Definition = CATALOGUE[group[0].catalogue_key]
        watches = {s.id: s.watch(tree) for s in group}
        union: set[int] = set().union(*(w.organizations() for w in watches.values()))
        if tree_orgs is not None:
            union &= tree_orgs
        conditions: list[Condition] = []
        if union:
            everything = tree_orgs is None and union >= tree.enabled
            scope = EvalScope(now, None if everything else sorted(union))
            conditions = await definition.evaluate(group[0].model(), scope)
            report.evaluator_calls += 1
        by_org: dict[int, list[Condition]] = defaultdict(list)
        for c in conditions:
            by_org[c.organization_id].append(c)
        order = {org: n for n, org in enumerate(by_org)}
        items = []
        for spec in group:
            watch = watches[spec.id]
            # The smaller side drives: a company's template watches one organization.
            mine_orgs = sorted(watch.organizations() & by_org.keys(), key=order.__getitem__)
            mine = [c for org in mine_orgs for c in by_org[org]]
            if mine or spec.id in holding:
                items.append(Item(spec, watch, mine))
        for start in range(0, len(items), BATCH):
            batches.append(items[start : start + BATCH])
    report.templates += len(specs)
    if not batches:
        if after is not None:
            async with in_transaction(connection_name()):
                await after()
        return
    for n, batch in enumerate(batches):
        last = n == len(batches) - 1
        changes = await apply_batch(batch, orgs, now, after if last else None)
        report.changes.merge(changes)


# --- cursors ----------------------------------------------------------------------------------


def _newest(model: Any) -> Any:
    return model.all().order_by("-id").limit(1).values_list("id", flat=True)


async def _high_water(source: str) -> int:
    model = {"sessions": BackupJobSession, "events": DomainEvent, "logins": AuditEntry}[source]
    rows = await _newest(model)
    return int(rows[0]) if rows else 0


async def _changed_orgs(source: str, after_id: int, upto: int) -> set[int]:
    if upto <= after_id:
        return set()
    query: Any
    if source == "sessions":
        query = BackupJobSession.filter(id__gt=after_id, id__lte=upto)
        org_field = "company_id"
    elif source == "events":
        query = DomainEvent.filter(id__gt=after_id, id__lte=upto, organization_id__isnull=False)
        org_field = "organization_id"
    else:
        query = AuditEntry.filter(
            id__gt=after_id,
            id__lte=upto,
            action="login",
            outcome="FAILURE",
            organization_id__isnull=False,
        )
        org_field = "organization_id"
    return {int(i) for i in await column(query.order_by(org_field).distinct(), org_field)}


async def _cursor(name: str) -> int:
    row, _ = await EvaluationCursor.get_or_create(name=name)
    return int(row.last_id)


def _move(name: str, to: int) -> After:
    async def move() -> None:
        await EvaluationCursor.filter(name=name, last_id__lt=to).update(last_id=to)

    return move


def _cursor_name(source: str) -> str:
    return f"source:{source}"


def _by_source() -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for key, d in CATALOGUE.items():
        out[d.source].append(key)
    return out


# --- the evaluations ----------------------------------------------------------------------------


async def evaluate_all(now: datetime | None = None) -> Report:
    now = now or utcnow()
    report = Report(full=True, organizations={"all": None})
    await ensure_templates(await column(Organization.all(), "id"))
    marks = {s: await _high_water(s) for s in CURSOR_SOURCES}
    for s in CURSOR_SOURCES:
        await _cursor(_cursor_name(s))
    await _cursor(FULL_SWEEP_CURSOR)
    await _cursor(CLOCK_CURSOR)

    async def move_all() -> None:
        for source, mark in marks.items():
            await _move(_cursor_name(source), mark)()
        await _move(FULL_SWEEP_CURSOR, int(now.timestamp()))()
        await _move(CLOCK_CURSOR, int(now.timestamp()))()

    await _run(list(CATALOGUE), None, now, report, after=move_all)
    report.changes.merge(await resolve_disabled_templates(now))
    return report


async def _open_alarm_orgs(keys: list[str]) -> set[int]:
    query = Alarm.filter(active_key__isnull=False, template__catalogue_key__in=keys)
    return set(await column(query.order_by("organization_id").distinct(), "organization_id"))


async def evaluate_changed(now: datetime | None = None) -> Report:
    now = now or utcnow()
    report = Report()
    whole: list[str] = []
    after_whole: After | None = None
    sources = _by_source()
    clock = sources.pop(CLOCK_SOURCE, [])
    if clock and now.timestamp() - await _cursor(CLOCK_CURSOR) >= CLOCK_MINUTES * 60:
        whole += clock
        after_whole = _move(CLOCK_CURSOR, int(now.timestamp()))
        report.organizations[CLOCK_SOURCE] = None
    elif clock:  # with the sessions: over the organizations whose sessions changed
        sources["sessions"] = [*sources.get("sessions", []), *clock]
    for source, keys in sorted(sources.items()):
        if source not in CURSOR_SOURCES:
            whole += keys
            continue
        name = _cursor_name(source)
        last = await _cursor(name)
        mark = await _high_water(source)
        changed = await _changed_orgs(source, last, mark)
        if source in WINDOWED_SOURCES:
            changed |= await _open_alarm_orgs(keys)
        report.organizations[source] = sorted(changed)
        if not changed and mark <= last:
            continue
        await _run(keys, sorted(changed), now, report, after=_move(name, mark))
    if whole:
        report.organizations["whole"] = None
        await _run(whole, None, now, report, after=after_whole)
    return report


async def evaluate_organizations(org_ids: Iterable[int], now: datetime | None = None) -> Report:
    now = now or utcnow()
    ids = sorted({int(i) for i in org_ids})
    report = Report(organizations={"requested": ids})
    if ids:
        # The organizations' own templates and those of the ones above them.
        await ensure_templates((await load_tree()).watchers(ids))
        await _run(list(CATALOGUE), ids, now, report)
    return report


async def sweep(now: datetime | None = None) -> Report:
    """The scheduled sweep: full when due (alarms_full_sweep_minutes), incremental otherwise."""
    now = now or utcnow()
    minutes = get_settings().alarms_full_sweep_minutes
    last = await _cursor(FULL_SWEEP_CURSOR)
    if minutes > 0 and now.timestamp() - last >= minutes * 60:
        return await evaluate_all(now)
    return await evaluate_changed(now)


# --- event triggers -----------------------------------------------------------------------------


def _minute(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M")


async def request_evaluation(org_id: int | None, now: datetime | None = None) -> Job | None:
    """After a change committed (an ingested batch, a failed login, an ended failover session):
    an `alarms.evaluate` job for the organization, one per organization and minute (dedup key
    "alarms:<org>:<minute>"), so a storm of batches costs one evaluation per company per minute.
    When this minute's job has already started (it may have read the state before this change),
    a follow-up is queued for the next minute. Never fails the caller: the sweep catches up.
    Off unless `alarms_evaluate_on_events` (on from load_settings, off in code-built settings)."""
    if org_id is None or not get_settings().alarms_evaluate_on_events:
        return None
    from app.services import jobs

    now = now or utcnow()
    try:
        organization = Organization(id=org_id)
        organization._saved_in_db = True
        job, created = await jobs.create(
            None, EVALUATE_KIND, organization, dedup_key=f"alarms:{org_id}:{_minute(now)}"
        )
        if created or job.state is JobState.QUEUED:
            return job
        following = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        job, created = await jobs.create(
            None,
            EVALUATE_KIND,
            organization,
            dedup_key=f"alarms:{org_id}:{_minute(following)}",
            send=False,
        )
        if created:
            delay = int((following - now).total_seconds() * 1000)
            await jobs.dispatch(job.id, max(delay, 0))
        return job
    except Exception as exc:  # the change is committed; the sweep will evaluate it
        log.warning("could not request the alarm evaluation of organization %s: %s", org_id, exc)
        return None
