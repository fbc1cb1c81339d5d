"""The alarm engine: conditions → alarms (dedup per template and object, repeats, trigger-after,
suppress-after, severity changes, auto-resolve with history), which templates watch which
objects (assignment, exclusions, locations, all-new, masks), resolution when a template or an
organization is disabled, constant statements and a concurrent race on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.alarms import engine, resolution, rows
from app.alarms import templates as alarm_templates
from app.alarms.catalogue import CATALOGUE, Condition, EvalScope
from app.auth.authenticate import principal_for_bearer
from app.models import Organization, OrgKind
from app.models.alarms import (
    Alarm,
    AlarmChange,
    AlarmEvent,
    AlarmSeverity,
    AlarmStatus,
    AlarmTemplate,
)
from app.services import events
from app.services.actor import Actor
from tests.conftest import ON_POSTGRES
from tests.factories import World
from tests.querycount import count_queries

KEY = "job_session_failed"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ERROR, WARNING = AlarmSeverity.ERROR, AlarmSeverity.WARNING


@pytest.fixture
async def templates(world: World) -> World:
    await alarm_templates.ensure_templates(o.id for o in world.orgs.values())
    return world


async def template(world: World, org: str, **changes: object) -> AlarmTemplate:
    row = await AlarmTemplate.get(owner_id=world.orgs[org].id, catalogue_key=KEY)
    if changes:
        await AlarmTemplate.filter(id=row.id).update(**changes)
        row = await AlarmTemplate.get(id=row.id)
    return row


def cond(
    world: World,
    org: str,
    object_id: int,
    name: str = "",
    severity: AlarmSeverity = ERROR,
    location: str | None = None,
) -> Condition:
    return Condition(
        "BackupJob",
        object_id,
        name or f"job-{object_id}",
        world.orgs[org].id,
        world.locations[location].id if location else None,
        None,
        severity,
        f"job {object_id} failed",
    )


def scope(at: datetime = T0, orgs: list[int] | None = None) -> EvalScope:
    return EvalScope(at, orgs)


async def open_alarms(t: AlarmTemplate) -> list[Alarm]:
    return await Alarm.filter(template_id=t.id, active_key__isnull=False).order_by("object_id")


async def history(alarm: Alarm) -> list[tuple[str, str, str]]:
    return [
        (e.change.value, e.status.value, e.severity.value)
        for e in await AlarmEvent.filter(alarm_id=alarm.id).order_by("id")
    ]


async def test_every_organization_gets_the_catalogue_once(world: World):
    org_ids = [o.id for o in world.orgs.values()]
    assert await alarm_templates.ensure_templates(org_ids) == len(org_ids) * len(CATALOGUE)
    with count_queries() as queries:
        assert await alarm_templates.ensure_templates(org_ids) == 0
    assert queries.count == 1, queries.statements
    assert await AlarmTemplate.all().count() == len(org_ids) * len(CATALOGUE)
    row = await AlarmTemplate.get(owner_id=world.orgs["A1"].id, catalogue_key=KEY)
    d = CATALOGUE[KEY]
    assert (row.name, row.kind, row.severity, row.custom) == (
        d.name,
        d.kind,
        d.default_severity,
        False,
    )
    # A missing one (deleted) comes back alone.
    await AlarmTemplate.filter(id=row.id).delete()
    assert await alarm_templates.ensure_templates(org_ids) == 1


async def test_one_alarm_per_template_and_object_with_repeats(templates: World):
    """A repeat is a new occurrence (another message or severity), not another evaluation: an
    unchanged condition is not rewritten, its last_seen_at only refreshed once it is due."""
    w = templates
    t = await template(w, "A1")
    changes = await engine.apply(t, [cond(w, "A1", 1), cond(w, "A1", 1)], scope())
    assert len(changes.of(AlarmChange.TRIGGERED)) == 1
    [alarm] = await open_alarms(t)
    updated_at = alarm.updated_at
    # Seen again unchanged before its last_seen_at is due: nothing written.
    early = T0 + rows.LAST_SEEN_REFRESH - timedelta(minutes=1)
    with count_queries() as queries:
        changes = await engine.apply(t, [cond(w, "A1", 1)], scope(early))
    assert (changes.repeated, changes.unchanged, changes.refreshed, changes.changed) == (
        0,
        1,
        0,
        [],
    )
    assert not [q for q in queries.statements if q.lstrip().upper().startswith("UPDATE")]
    alarm = await Alarm.get(id=alarm.id)
    assert (alarm.occurrences, alarm.last_seen_at, alarm.updated_at) == (1, T0, updated_at)
    # Once due (at the latest REFRESH + SPREAD later), last_seen_at alone moves.
    due = T0 + rows.LAST_SEEN_REFRESH + timedelta(minutes=rows.LAST_SEEN_SPREAD)
    assert rows.last_seen_due(alarm.id, T0, due)
    changes = await engine.apply(t, [cond(w, "A1", 1)], scope(due))
    assert (changes.repeated, changes.unchanged, changes.refreshed) == (0, 1, 1)
    alarm = await Alarm.get(id=alarm.id)
    assert (alarm.status, alarm.occurrences, alarm.first_seen_at, alarm.last_seen_at) == (
        AlarmStatus.ACTIVE,
        1,
        T0,
        due,
    )
    # A new occurrence (the job failed again: another message) is a repeat.
    later = due + timedelta(minutes=1)
    again = cond(w, "A1", 1)
    again.message = "job 1 failed again"
    changes = await engine.apply(t, [again], scope(later))
    assert (changes.repeated, changes.unchanged, changes.changed) == (1, 0, [])
    alarm = await Alarm.get(id=alarm.id)
    assert (alarm.occurrences, alarm.message, alarm.last_seen_at) == (2, again.message, later)
    assert alarm.active_key == f"{t.id}:BackupJob:1"
    assert alarm.raised_at == T0
    assert await history(alarm) == [("TRIGGERED", "ACTIVE", "ERROR")]
    # Acknowledged alarms keep counting new occurrences, and only those.
    await Alarm.filter(id=alarm.id).update(status=AlarmStatus.ACKNOWLEDGED)
    await engine.apply(t, [again], scope(later))
    assert (await Alarm.get(id=alarm.id)).occurrences == 2
    await engine.apply(t, [cond(w, "A1", 1)], scope(later))
    alarm = await Alarm.get(id=alarm.id)
    assert (alarm.status, alarm.occurrences) == (AlarmStatus.ACKNOWLEDGED, 3)
    # Another name is written but is no new occurrence.
    await engine.apply(t, [cond(w, "A1", 1, name="renamed")], scope(later))
    alarm = await Alarm.get(id=alarm.id)
    assert (alarm.object_name, alarm.occurrences) == ("renamed", 3)


async def test_trigger_after_keeps_alarms_pending_until_seen_enough(templates: World):
    w = templates
    t = await template(w, "A1", trigger_after=3)
    for n in (1, 2):
        changes = await engine.apply(t, [cond(w, "A1", 1), cond(w, "A1", 2)], scope())
        assert changes.changed == [] and changes.pending == 2
        assert [(a.status, a.occurrences) for a in await open_alarms(t)] == [
            (AlarmStatus.PENDING, n),
            (AlarmStatus.PENDING, n),
        ]
    # Object 2 clears while pending: discarded, never told; object 1 reaches 3.
    changes = await engine.apply(t, [cond(w, "A1", 1)], scope(T0 + timedelta(minutes=2)))
    assert changes.discarded == 1
    [alarm] = changes.of(AlarmChange.TRIGGERED)
    assert (alarm.object_id, alarm.status, alarm.occurrences) == (1, AlarmStatus.ACTIVE, 3)
    assert alarm.raised_at == T0 + timedelta(minutes=2)
    assert await Alarm.filter(object_id=2).count() == 0
    assert await history(alarm) == [("TRIGGERED", "ACTIVE", "ERROR")]


async def test_severity_changes_are_recorded(templates: World):
    w = templates
    t = await template(w, "A1")
    await engine.apply(t, [cond(w, "A1", 1, severity=WARNING)], scope())
    changes = await engine.apply(t, [cond(w, "A1", 1, severity=ERROR)], scope())
    [alarm] = changes.of(AlarmChange.SEVERITY_CHANGED)
    assert (alarm.severity, alarm.occurrences) == (ERROR, 2)
    await engine.apply(t, [cond(w, "A1", 1, severity=ERROR)], scope())  # unchanged: no row
    assert await history(alarm) == [
        ("TRIGGERED", "ACTIVE", "WARNING"),
        ("SEVERITY_CHANGED", "ACTIVE", "ERROR"),
    ]
    assert (await Alarm.get(id=alarm.id)).severity is ERROR


async def test_cleared_conditions_resolve_in_the_evaluated_scope_only(templates: World):
    w = templates
    t = await template(w, "R1")
    await engine.apply(t, [cond(w, "A1", 1), cond(w, "A2", 2)], scope())
    # Evaluating A1 alone: A2's alarm is outside the scope and stays.
    a1 = w.orgs["A1"].id
    changes = await engine.apply(t, [], scope(T0 + timedelta(hours=1), [a1]))
    [resolved] = changes.of(AlarmChange.AUTO_RESOLVED)
    assert (resolved.object_id, resolved.status, resolved.active_key) == (
        1,
        AlarmStatus.RESOLVED,
        None,
    )
    stored = await Alarm.get(id=resolved.id)
    assert (stored.status, stored.active_key, stored.resolved_at) == (
        AlarmStatus.RESOLVED,
        None,
        T0 + timedelta(hours=1),
    )
    assert await history(stored) == [
        ("TRIGGERED", "ACTIVE", "ERROR"),
        ("AUTO_RESOLVED", "RESOLVED", "ERROR"),
    ]
    assert [a.object_id for a in await open_alarms(t)] == [2]
    # Failing again later is a new alarm (the resolved one is history).
    await engine.apply(t, [cond(w, "A1", 1), cond(w, "A2", 2)], scope())
    assert await Alarm.filter(template_id=t.id, object_id=1).count() == 2


async def test_suppress_after_stops_new_alarms_until_some_are_resolved(templates: World):
    w = templates
    t = await template(w, "A1", suppress_after=2)
    conditions = [cond(w, "A1", n) for n in (1, 2, 3)]
    changes = await engine.apply(t, conditions, scope())
    assert (len(changes.of(AlarmChange.TRIGGERED)), changes.suppressed) == (2, 1)
    assert [a.object_id for a in await open_alarms(t)] == [1, 2]
    changes = await engine.apply(t, conditions, scope())
    assert (changes.changed, changes.suppressed, changes.repeated, changes.unchanged) == (
        [],
        1,
        0,
        2,
    )
    # A user resolves one by hand: the third may fire.
    await Alarm.filter(template_id=t.id, object_id=1).update(
        status=AlarmStatus.RESOLVED, active_key=None
    )
    changes = await engine.apply(t, conditions[1:], scope())
    assert [a.object_id for a in changes.of(AlarmChange.TRIGGERED)] == [3]
    # Object 1 failing again: suppressed while 2 and 3 are open.
    changes = await engine.apply(t, conditions, scope())
    assert changes.suppressed == 1 and [a.object_id for a in await open_alarms(t)] == [2, 3]


async def test_each_watching_template_has_its_own_alarm(templates: World):
    w = templates
    owners = ["A1", "R1", "Provider", "R2", "A2"]
    raised = {}
    for owner in owners:
        t = await template(w, owner)
        changes = await engine.apply(t, [cond(w, "A1", 1)], scope())
        raised[owner] = len(changes.of(AlarmChange.TRIGGERED))
    # The company, its reseller and the provider watch A1; R2 and A2 do not.
    assert raised == {"A1": 1, "R1": 1, "Provider": 1, "R2": 0, "A2": 0}
    assert await Alarm.filter(object_id=1, active_key__isnull=False).count() == 3


async def raised_for(w: World, t: AlarmTemplate, conditions: list[Condition]) -> list[int]:
    await engine.apply(t, conditions, scope())
    return [a.object_id for a in await open_alarms(t)]


async def test_assignment_selects_and_excludes(templates: World):
    w = templates
    everywhere = [
        cond(w, "A1", 1, location="A1-Default"),
        cond(w, "A1", 2, location="A1-East"),
        cond(w, "A2", 3),
        cond(w, "B1", 4),
        cond(w, "P1", 5),
        cond(w, "Provider", 6),
        cond(w, "R1", 7),
    ]
    east = w.locations["A1-East"].id
    ids = lambda *keys: [w.orgs[k].id for k in keys]  # noqa: E731
    cases = {
        # Selected companies: the owner's own objects stay watched.
        "companies": ({"all": False, "companies": ids("A1", "P1")}, [1, 2, 5, 6]),
        "reseller": ({"all": False, "resellers": ids("R1")}, [1, 2, 3, 6, 7]),
        "exclusions": (
            {"all": True, "excludeResellers": ids("R2"), "excludeCompanies": ids("A2")},
            [1, 2, 5, 6, 7],
        ),
        "location": ({"all": False, "locations": [east]}, [2, 6]),
        "excluded location": ({"all": True, "excludeLocations": [east]}, [1, 3, 4, 5, 6, 7]),
        "nothing": ({"all": False}, [6]),
    }
    for name, (assignment, expected) in cases.items():
        await Alarm.all().delete()
        t = await template(w, "Provider", assignment=assignment)
        assert await raised_for(w, t, everywhere) == expected, name
    # A company template narrowed to one of its locations.
    await Alarm.all().delete()
    t = await template(w, "A1", assignment={"all": False, "locations": [east]})
    assert await raised_for(w, t, everywhere) == [2]
    # A reseller's template never sees another reseller's or the provider's objects.
    await Alarm.all().delete()
    t = await template(w, "R1")
    assert await raised_for(w, t, everywhere) == [1, 2, 3, 7]


async def test_all_new_includes_organizations_created_after_the_assignment(templates: World):
    w = templates
    since = datetime.now(UTC)
    newcomer = await Organization.create(kind=OrgKind.COMPANY, name="Newcomer", parent=w.orgs["R1"])
    w.orgs["N"] = newcomer
    assignment = {"all": False, "allNew": True, "since": since.isoformat()}
    t = await template(w, "R1", assignment=assignment)
    got = await raised_for(w, t, [cond(w, "A1", 1), cond(w, "N", 2), cond(w, "B1", 3)])
    assert got == [2]
    # Without allNew the newcomer is not watched (and its alarm resolves).
    t = await template(w, "R1", assignment={"all": False, "allNew": False})
    assert await raised_for(w, t, [cond(w, "A1", 1), cond(w, "N", 2)]) == []


async def test_name_masks_are_case_insensitive(templates: World):
    w = templates
    t = await template(w, "A1", name_include=["sql*", "exch*"], name_exclude=["*-TEST"])
    names = ["SQL-prod", "sql-test", "Exchange", "web-1"]
    conditions = [cond(w, "A1", n, name=name) for n, name in enumerate(names, 1)]
    assert await raised_for(w, t, conditions) == [1, 3]
    t = await template(w, "A1", name_include=[], name_exclude=["web*"])
    assert await raised_for(w, t, conditions) == [1, 2, 3]


async def test_disabled_template_resolves_its_alarms(templates: World):
    w = templates
    t = await template(w, "A1")
    other = await template(w, "R1")
    for row in (t, other):
        await engine.apply(row, [cond(w, "A1", 1)], scope())
    changes = await resolution.resolve_for_template(t)
    [alarm] = changes.of(AlarmChange.AUTO_RESOLVED)
    assert await open_alarms(t) == [] and len(await open_alarms(other)) == 1
    event = await AlarmEvent.filter(alarm_id=alarm.id).order_by("-id").first()
    assert event is not None and (event.change, event.comment) == (
        AlarmChange.AUTO_RESOLVED,
        "template disabled",
    )


async def test_disabling_a_company_resolves_its_alarms_for_every_template(templates: World):
    from app.services import tenancy

    w = templates
    for owner in ("A1", "R1", "Provider"):
        await engine.apply(await template(w, owner), [cond(w, "A1", 1)], scope())
    await engine.apply(await template(w, "A2"), [cond(w, "A2", 2)], scope())
    actor = Actor(
        await principal_for_bearer(w.token("Provider", "Service Provider Global Administrator"))
    )
    await tenancy.set_organization_enabled(actor, w.orgs["A1"].id, OrgKind.COMPANY, False)
    assert (
        await Alarm.filter(organization_id=w.orgs["A1"].id, active_key__isnull=False).count() == 0
    )
    resolved = await AlarmEvent.filter(change=AlarmChange.AUTO_RESOLVED).values_list(
        "comment", flat=True
    )
    assert list(resolved) == ["organization disabled"] * 3
    assert await Alarm.filter(active_key__isnull=False).count() == 1  # A2's
    # While disabled, nothing watches it: a new condition raises nothing.
    changes = await engine.apply(await template(w, "Provider"), [cond(w, "A1", 1)], scope())
    assert changes.changed == []


async def test_changes_are_published_after_commit(templates: World):
    w = templates
    hub = events.install(hub=events.LocalHub())
    t = await template(w, "R1")
    try:
        async with (
            events.subscribe(f"alarm:{w.orgs['A1'].id}") as own,
            events.subscribe(f"alarm:{w.orgs['R1'].id}") as owner,
        ):
            changes = await engine.apply(t, [cond(w, "A1", 1)], scope())
            [alarm] = changes.of(AlarmChange.TRIGGERED)
            for sub in (own, owner):
                got = await sub.next(within=1)
                assert got == {
                    "alarm": alarm.id,
                    "change": "TRIGGERED",
                    "status": "ACTIVE",
                    "severity": "ERROR",
                    "template": t.id,
                    "organization": w.orgs["A1"].id,
                }
    finally:
        await hub.close()
        await events.shutdown()


async def test_statements_do_not_grow_with_the_number_of_objects(templates: World):
    w = templates
    t = await template(w, "Provider")
    seen = []
    for n in (5, 300):
        await Alarm.all().delete()
        conditions = [cond(w, "A1", i) for i in range(n)]
        with count_queries() as raised:
            await engine.apply(t, conditions, scope())
        with count_queries() as repeated:
            await engine.apply(t, conditions, scope())
        half = [
            c if i % 2 else cond(w, "A1", i, severity=WARNING) for i, c in enumerate(conditions)
        ]
        with count_queries() as changed:
            await engine.apply(t, half[: n // 2], scope())
        seen.append((raised.count, repeated.count, changed.count))
        assert await Alarm.filter(active_key__isnull=False).count() == n // 2
    assert seen[0] == seen[1], seen


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_concurrent_applies_raise_one_alarm_per_object(templates: World):
    w = templates
    t = await template(w, "A1")
    limited = await template(w, "Provider", suppress_after=3)
    conditions = [cond(w, "A1", n) for n in range(20)]
    results = await asyncio.gather(
        *[engine.apply(row, conditions, scope()) for row in (t, t, t, t, limited, limited)]
    )
    assert sum(len(r.of(AlarmChange.TRIGGERED)) for r in results[:4]) == 20
    rows = await open_alarms(t)
    assert [a.object_id for a in rows] == list(range(20))
    # The same condition seen by four applies is one occurrence, not four repeats.
    assert [a.occurrences for a in rows] == [1] * 20
    # Suppression holds under the race: exactly 3 raised by the two concurrent applies.
    assert await Alarm.filter(template_id=limited.id, status=AlarmStatus.ACTIVE).count() == 3
    assert await AlarmEvent.filter(change=AlarmChange.TRIGGERED).count() == 23


async def test_an_event_resolved_by_hand_is_not_raised_again_by_the_same_occurrence(
    templates: World,
) -> None:
    """A failed failover session (the object is the occurrence itself) resolved by a user stays
    resolved while the evaluator keeps reporting it; a failed-login burst (a windowed event)
    comes back only once the window has passed."""
    from app.services import alarms as alarm_service

    world = templates
    owner = world.users["A1:Company Owner"]
    actor = Actor(await principal_for_bearer(world.token("A1", "Company Owner")))
    failover = await AlarmTemplate.get(
        owner_id=world.orgs["A1"].id, catalogue_key="failover_session_failed"
    )
    session = Condition(
        "FailoverSession", 77, "HQ plan", world.orgs["A1"].id, None, None, ERROR, "failed"
    )
    await engine.apply(failover, [session], scope())
    [alarm] = await open_alarms(failover)
    await alarm_service.resolve(actor, alarm.id, "restarted by hand")
    for minutes in (1, 60 * 24 * 30):
        await engine.apply(failover, [session], scope(T0 + timedelta(minutes=minutes)))
        assert await open_alarms(failover) == []

    logins = await AlarmTemplate.get(
        owner_id=world.orgs["A1"].id, catalogue_key="suspicious_logins_account"
    )
    window = int(
        logins.thresholds.get(
            "minutes", CATALOGUE[logins.catalogue_key].default_thresholds["minutes"]
        )
    )
    burst = Condition("User", owner.id, owner.email, world.orgs["A1"].id, None, None, WARNING, "5")
    await engine.apply(logins, [burst], scope())
    [alarm] = await open_alarms(logins)
    await alarm_service.resolve(actor, alarm.id, "it was me")
    resolved_at = (await Alarm.get(id=alarm.id)).resolved_at
    assert resolved_at is not None
    await engine.apply(logins, [burst], scope(resolved_at + timedelta(minutes=1)))
    assert await open_alarms(logins) == []
    await engine.apply(logins, [burst], scope(resolved_at + timedelta(minutes=window + 1)))
    assert len(await open_alarms(logins)) == 1
