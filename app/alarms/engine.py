"""The alarm engine: what an evaluator sees now (conditions) → alarm rows, their history, the
notifications (app.alarms.notify, in the same transaction) and the hub's wake-ups (after it).

One alarm per template and object: while open (PENDING, ACTIVE, ACKNOWLEDGED) an alarm holds
`active_key` = "<template id>:<object type>:<object id>", unique in the table, so two
evaluations racing on one object cannot both insert; the loser's transaction is rolled back
and `apply` runs again on what the winner committed.

An object watched by several organizations' templates (the company's own, its reseller's and
the provider's) gets one alarm per template: each portal has its own alarms, configured,
acknowledged and resolved independently (as in VSPC).

`apply(template, conditions, scope, now)`, in one transaction per batch of templates
(app.alarms.plan decides, app.alarms.rows writes):
* conditions are filtered by the template's assignment and masks (app.alarms.watch);
* new object → PENDING (occurrences 1), or ACTIVE at once when trigger_after ≤ 1 (TRIGGERED);
* PENDING seen again → occurrences + 1 and last_seen_at on every evaluation that sees it
  (trigger_after counts evaluations in a row), ACTIVE (TRIGGERED) when it reaches trigger_after;
* ACTIVE / ACKNOWLEDGED seen again is written only when something changed. `occurrences`
  (the API's "repeats") counts distinct occurrences, not evaluations: + 1 when the condition
  comes back with another severity or another message. Evaluators word messages so that they
  name the occurrence and nothing that moves with the clock alone: for EVENT-like rules the
  newest event (a new failed session's time, the latest failed login, the newest Veeam ONE
  record), for STATE / THRESHOLD rules the state and its moment or measure ("no heartbeat
  since 12:03", "85% used") — so a new failed session, a new latest failed login or a new
  usage level is a repeat, and the same condition seen every minute is not. A condition that
  clears resolves the alarm; its return is a new alarm (occurrences 1).
  Another object name, location or Subtenant is written without counting a repeat;
* another severity → SEVERITY_CHANGED history row (a PENDING alarm just takes it);
* `last_seen_at` is exact whenever the alarm is written; an alarm seen again unchanged gets it
  refreshed coarsely, by one UPDATE per 1,000 ids, once it is older than
  `rows.LAST_SEEN_REFRESH` + a spread by id (less than 30 minutes behind the last evaluation
  that saw the condition);
* open alarms of the template in the evaluated scope whose object is not among the admitted
  conditions → RESOLVED with an AUTO_RESOLVED row; a PENDING one, never raised nor told, is
  deleted instead. EVENT rules clear the same way: their evaluators report an object while its
  event is inside the template's window (a failed failover session until a later one succeeds,
  failed logins within the last N minutes), so the alarm resolves once the window has passed.
  An EVENT alarm resolved by hand is not raised again by the same occurrence (while it is in the
  window, or for ever when the object is the event itself);
* suppress_after N: while N or more of the template's alarms are ACTIVE / ACKNOWLEDGED, no new
  alarm is raised (no new row, no PENDING → ACTIVE). The count is read in the apply's
  transaction under an advisory lock per template (PostgreSQL), so concurrent applies of one
  template cannot overshoot; on SQLite writers are serialized anyway.

Resolution without evaluation (templates or organizations disabled): app.alarms.resolution.
What changed and its publication: app.alarms.changes.

Cost: per batch of templates, one SELECT of the open alarms (plain values, not models: most
are seen again unchanged; the changed ones are read whole after, one SELECT per 1,000), one
of the raised counts when a template suppresses, one of the EVENT objects resolved by hand,
one INSERT (+ one SELECT for the new ids), one UPDATE per 1,000 PENDING counted and per 1,000
`last_seen_at` due, a bulk UPDATE for changed rows, one for resolutions, one INSERT of history
and the notifications' constant reads, whatever the number of objects. An unchanged alarm
costs no write.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from app.alarms import notify as notifications
from app.alarms.catalogue import CATALOGUE, Condition, EvalScope
from app.alarms.changes import Changes, publish
from app.alarms.plan import plan
from app.alarms.rows import OPEN_FIELDS, RAISED, OpenAlarm, Writes, write
from app.alarms.templates import Item, Spec
from app.alarms.watch import Tree, assignment_locations, load_tree
from app.db import connection_name, serialize
from app.models.alarms import Alarm, AlarmChange, AlarmStatus, AlarmTemplate, RuleKind

log = logging.getLogger(__name__)

ATTEMPTS = 3
After = Callable[[], Awaitable[Any]]


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
    open_by_template: dict[int, dict[str, OpenAlarm]] = {t: {} for t in ids}
    for row in await query.values_list(*OPEN_FIELDS):
        alarm = OpenAlarm.of(row)
        open_by_template[alarm.template_id][alarm.active_key or ""] = alarm
    raised: dict[int, int] = {}
    if suppressing:
        raised = dict(
            await Alarm.filter(template_id__in=suppressing, status__in=RAISED)
            .annotate(n=Count("id"))
            .group_by("template_id")
            .values_list("template_id", "n")
        )
    settled = await _settled_by_hand(items, now)
    w = Writes()
    for item in items:
        plan(
            item,
            open_by_template[item.spec.id],
            raised.get(item.spec.id, 0),
            now,
            w,
            changes,
            settled.get(item.spec.id, set()),
        )
    changes.changed = await write(w, now)
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
