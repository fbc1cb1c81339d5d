"""Triggered alarms through the API: the list's filters and order, acknowledge and resolve
with their history and comments, the illegal moves (CONFLICT), the Active alarms row for
every principal of both editions (expected from the engine and the tree, never from role
names), a Subtenant's own computers, a Location User's locations, cross-tenant NOT_FOUND,
the `alarmRaised` subscription's scope, and constant queries for a page with history.

Alarm rows are written directly with the models: the evaluation is not under test here."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.alarms import changes as alarm_changes
from app.alarms.catalogue import CATALOGUE
from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import ALARMS
from app.authz.matrix import Action, RoleScope
from app.authz.principal import Principal, Target
from app.graphql.ids import to_global_id
from app.models import AuditEntry, Organization, OrgKind, User
from app.models.alarms import (
    Alarm,
    AlarmChange,
    AlarmEvent,
    AlarmSeverity,
    AlarmStatus,
    AlarmTemplate,
)
from app.models.cloud import (
    BackupResource,
    CloudRepository,
    Subtenant,
    TenantAccount,
    TenantAccountType,
)
from app.services import alarms, events
from tests.factories import World, build_world
from tests.permission_cases import outcome
from tests.querycount import count_queries
from tests.test_allocations import ALL_SUBJECTS

OWNER = "Company Owner"
LOCATION_USER = "Location User"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
_serial = itertools.count(1)

FIELDS = """id status severity templateKey templateName objectType objectName objectId
  organizationId companyId locationId message occurrences viewerCanAcknowledge
  viewerCanResolve"""
LIST = f"""query($filter: AlarmFilter, $first: Int, $after: String) {{
  alarms(first: $first, after: $after, filter: $filter) {{
    totalCount pageInfo {{ hasNextPage endCursor }} nodes {{ {FIELDS} }} }} }}"""
READ = f"""query($id: ID!) {{ alarm(id: $id) {{ {FIELDS}
  history {{ change status severity actorName comment at }} }} }}"""
ACK = """mutation($input: AlarmAcknowledgeInput!) { alarmAcknowledge(input: $input) {
  id status history { change status actorName comment } } }"""
RESOLVE = """mutation($input: AlarmResolveInput!) { alarmResolve(input: $input) {
  id status resolvedAt viewerCanResolve history { change status actorName comment } } }"""


def gid(alarm: Alarm) -> str:
    return to_global_id("Alarm", alarm.id)


async def template(org: Organization, key: str = "backup_agent_offline") -> AlarmTemplate:
    found = await AlarmTemplate.filter(owner_id=org.id, catalogue_key=key, custom=False).first()
    if found is not None:
        return found
    d = CATALOGUE[key]
    return await AlarmTemplate.create(
        owner=org,
        catalogue_key=key,
        name=d.name,
        kind=d.kind,
        severity=d.default_severity,
        thresholds=dict(d.default_thresholds),
    )


async def raise_alarm(
    tpl: AlarmTemplate,
    org: Organization,
    *,
    location_id: int | None = None,
    subtenant_id: int | None = None,
    status: AlarmStatus = AlarmStatus.ACTIVE,
    severity: AlarmSeverity = AlarmSeverity.ERROR,
    name: str | None = None,
    seen: datetime = T0,
) -> Alarm:
    n = next(_serial)
    open_ = status is not AlarmStatus.RESOLVED
    alarm = await Alarm.create(
        template=tpl,
        organization_id=org.id,
        location_id=location_id,
        subtenant_id=subtenant_id,
        object_type="BackupAgent",
        object_id=n,
        object_name=name or f"agent-{n}",
        status=status,
        severity=severity,
        message=f"agent-{n} is offline",
        active_key=f"{tpl.id}:BackupAgent:{n}" if open_ else None,
        first_seen_at=seen,
        last_seen_at=seen,
        raised_at=None if status is AlarmStatus.PENDING else seen,
    )
    await AlarmEvent.create(
        alarm=alarm, change=AlarmChange.TRIGGERED, status=status, severity=severity
    )
    return alarm


async def subtenant_of(world: World, org: str, user: User | None = None) -> Subtenant:
    company = world.orgs[org]
    account = await TenantAccount.create(
        company=company,
        name=f"{org}-tenant-{next(_serial)}",
        type=TenantAccountType.STANDALONE,
        password_hash="x",
    )
    repo = await CloudRepository.create(name=f"repo-{next(_serial)}", capacity_gb=1000)
    resource = await BackupResource.create(tenant_account=account, repository=repo, quota_gb=10)
    if user is None:
        user = await User.create(
            email=f"sub{next(_serial)}@example.test",
            name="another subtenant",
            role="Subtenant",
            organization=company,
            password_hash="x",
        )
    return await Subtenant.create(user=user, resource=resource)


def ids(body: dict[str, Any]) -> list[str]:
    return [n["id"] for n in body["data"]["alarms"]["nodes"]]


# --- the list ------------------------------------------------------------------------------------


async def test_the_list_filters_and_orders_newest_first(world: World, gql) -> None:
    a1, a2 = world.orgs["A1"], world.orgs["A2"]
    east = world.locations["A1-East"].id
    offline = await template(a1)
    quota = await template(a1, "cloud_storage_quota")
    old = await raise_alarm(offline, a1, location_id=east, seen=T0 - timedelta(days=3))
    warn = await raise_alarm(quota, a1, severity=AlarmSeverity.WARNING)
    acked = await raise_alarm(offline, a1, status=AlarmStatus.ACKNOWLEDGED)
    done = await raise_alarm(offline, a1, status=AlarmStatus.RESOLVED)
    await raise_alarm(offline, a1, status=AlarmStatus.PENDING)  # never shown
    await raise_alarm(await template(a2), a2)  # another company's
    token = world.token("A1", OWNER)

    body = await gql(LIST, {"first": 50}, token=token)
    assert ids(body) == [gid(a) for a in (done, acked, warn, old)]
    assert body["data"]["alarms"]["totalCount"] == 4
    node = body["data"]["alarms"]["nodes"][-1]
    assert node["templateKey"] == "backup_agent_offline"
    assert node["templateName"] == CATALOGUE["backup_agent_offline"].name
    assert node["companyId"] == node["organizationId"] == to_global_id("Company", a1.id)
    assert node["locationId"] == to_global_id("Location", east)
    assert node["viewerCanAcknowledge"] is True and node["viewerCanResolve"] is True

    async def matching(filter: dict[str, Any]) -> list[str]:
        return ids(await gql(LIST, {"first": 50, "filter": filter}, token=token))

    assert await matching({"status": ["ACTIVE"]}) == [gid(warn), gid(old)]
    assert await matching({"status": ["ACKNOWLEDGED", "RESOLVED"]}) == [gid(done), gid(acked)]
    assert await matching({"status": ["PENDING"]}) == []
    assert await matching({"severity": ["WARNING"]}) == [gid(warn)]
    assert await matching({"templateKey": "cloud_storage_quota"}) == [gid(warn)]
    assert await matching({"locationId": to_global_id("Location", east)}) == [gid(old)]
    assert await matching({"companyId": to_global_id("Company", a2.id)}) == []
    assert await matching({"from": (T0 - timedelta(days=1)).isoformat()}) == [
        gid(done),
        gid(acked),
        gid(warn),
    ]
    assert await matching({"to": (T0 - timedelta(days=1)).isoformat()}) == [gid(old)]
    body = await gql(LIST, {"filter": {"companyId": to_global_id("Location", 1)}}, token=token)
    assert body["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "filter.companyId",
    }

    first = await gql(LIST, {"first": 3}, token=token)
    assert first["data"]["alarms"]["pageInfo"]["hasNextPage"] is True
    cursor = first["data"]["alarms"]["pageInfo"]["endCursor"]
    rest = await gql(LIST, {"first": 3, "after": cursor}, token=token)
    assert ids(rest) == [gid(old)]


# --- acknowledge and resolve ---------------------------------------------------------------------


async def test_acknowledge_then_resolve_keep_history_and_audit(world: World, gql) -> None:
    a1 = world.orgs["A1"]
    alarm = await raise_alarm(await template(a1), a1)
    owner = world.user("A1", OWNER)
    token = world.token("A1", OWNER)

    body = await gql(ACK, {"input": {"id": gid(alarm), "comment": "  looking  "}}, token=token)
    got = body["data"]["alarmAcknowledge"]
    assert got["status"] == "ACKNOWLEDGED"
    assert got["history"] == [
        {"change": "TRIGGERED", "status": "ACTIVE", "actorName": None, "comment": ""},
        {"change": "ACKNOWLEDGED", "status": "ACKNOWLEDGED", "actorName": owner.name,
         "comment": "looking"},
    ]  # fmt: skip
    body = await gql(
        RESOLVE, {"input": {"id": gid(alarm), "comment": "replaced the disk"}}, token=token
    )
    got = body["data"]["alarmResolve"]
    assert got["status"] == "RESOLVED" and got["resolvedAt"] is not None
    assert got["viewerCanResolve"] is False
    assert got["history"][-1] == {
        "change": "RESOLVED",
        "status": "RESOLVED",
        "actorName": owner.name,
        "comment": "replaced the disk",
    }
    row = await Alarm.get(id=alarm.id)
    assert row.status is AlarmStatus.RESOLVED and row.active_key is None
    events_ = await AlarmEvent.filter(alarm_id=alarm.id).order_by("id")
    assert [e.actor_id for e in events_] == [None, owner.id, owner.id]  # type: ignore[attr-defined]
    audit = await AuditEntry.filter(object_type="Alarm", object_id=str(alarm.id)).order_by("id")
    assert [(a.action, a.outcome) for a in audit] == [
        ("alarmAcknowledge", "SUCCESS"),
        ("alarmResolve", "SUCCESS"),
    ]
    assert audit[1].details["comment"] == "replaced the disk"
    assert audit[1].organization_id == a1.id


async def test_resolve_straight_from_active(world: World, gql) -> None:
    a1 = world.orgs["A1"]
    alarm = await raise_alarm(await template(a1), a1)
    body = await gql(RESOLVE, {"input": {"id": gid(alarm)}}, token=world.token("A1", OWNER))
    assert body["data"]["alarmResolve"]["status"] == "RESOLVED"
    assert body["data"]["alarmResolve"]["history"][-1]["comment"] == ""


@pytest.mark.parametrize(
    ("status", "mutation", "field"),
    [
        (AlarmStatus.ACKNOWLEDGED, ACK, "alarmAcknowledge"),
        (AlarmStatus.RESOLVED, ACK, "alarmAcknowledge"),
        (AlarmStatus.RESOLVED, RESOLVE, "alarmResolve"),
    ],
)
async def test_illegal_moves_are_conflicts(
    world: World, gql, status: AlarmStatus, mutation: str, field: str
) -> None:
    a1 = world.orgs["A1"]
    alarm = await raise_alarm(await template(a1), a1, status=status)
    body = await gql(mutation, {"input": {"id": gid(alarm)}}, token=world.token("A1", OWNER))
    assert outcome(body, field) == "CONFLICT"
    row = await Alarm.get(id=alarm.id)
    assert row.status is status
    assert await AlarmEvent.filter(alarm_id=alarm.id).count() == 1
    entry = await AuditEntry.get(object_type="Alarm", object_id=str(alarm.id))
    assert entry.outcome == "FAILURE" and entry.details["error"] == "CONFLICT"


async def test_a_pending_alarm_is_not_found(world: World, gql) -> None:
    a1 = world.orgs["A1"]
    alarm = await raise_alarm(await template(a1), a1, status=AlarmStatus.PENDING)
    token = world.token("A1", OWNER)
    assert outcome(await gql(READ, {"id": gid(alarm)}, token=token), "alarm") == "NOT_FOUND"
    body = await gql(ACK, {"input": {"id": gid(alarm)}}, token=token)
    assert outcome(body, "alarmAcknowledge") == "NOT_FOUND"


async def test_a_long_comment_is_refused_with_its_field(world: World, gql) -> None:
    a1 = world.orgs["A1"]
    alarm = await raise_alarm(await template(a1), a1)
    body = await gql(
        RESOLVE,
        {"input": {"id": gid(alarm), "comment": "x" * 1001}},
        token=world.token("A1", OWNER),
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.comment"}
    assert (await Alarm.get(id=alarm.id)).status is AlarmStatus.ACTIVE


async def test_the_evaluation_winning_the_race_makes_the_user_conflict(world: World) -> None:
    """The move is a conditional UPDATE: an alarm resolved between the read and the write (by
    the evaluation) is not resolved twice."""
    from app.errors import Conflict
    from app.services.actor import Actor

    a1 = world.orgs["A1"]
    alarm = await raise_alarm(await template(a1), a1)
    p = await principal_for_bearer(world.token("A1", OWNER))
    original = alarms.alarm_in_scope

    async def stale_read(principal: Principal, pk: int) -> Alarm:
        row = await original(principal, pk)
        await Alarm.filter(id=pk).update(status=AlarmStatus.RESOLVED, active_key=None)
        return row

    alarms.alarm_in_scope = stale_read  # type: ignore[assignment]
    try:
        with pytest.raises(Conflict):
            await alarms.resolve(Actor(p), alarm.id, "late")
    finally:
        alarms.alarm_in_scope = original  # type: ignore[assignment]
    assert await AlarmEvent.filter(alarm_id=alarm.id, change=AlarmChange.RESOLVED).count() == 0


# --- the Active alarms row for every principal ---------------------------------------------------


class Tree:
    """The alarms of the permission scene: some of each organization's templates, about
    organizations, locations and Subtenants of the whole tree."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rows: list[Alarm] = []
        self.owner_of: dict[int, int] = {}
        self.subtenant_user: dict[int, int] = {}

    async def build(self) -> None:
        w, o = self.world, self.world.orgs
        mine = await subtenant_of(w, "A1", w.users.get("A1:Subtenant"))
        other = await subtenant_of(w, "A1")
        self.subtenant_user = {mine.id: mine.user_id, other.id: other.user_id}  # type: ignore[attr-defined]
        east, default = w.locations["A1-East"].id, w.locations["A1-Default"].id
        plan: list[tuple[str, str, dict[str, Any]]] = [
            ("Provider", "Provider", {}),
            ("Provider", "A1", {"location_id": east}),
            ("Provider", "P1", {}),
            ("Provider", "B1", {}),
            ("R1", "R1", {}),
            ("R1", "A1", {"location_id": default}),
            ("R1", "A2", {}),
            ("R2", "B1", {}),
            ("A1", "A1", {}),
            ("A1", "A1", {"location_id": east, "subtenant_id": mine.id}),
            ("A1", "A1", {"location_id": east, "subtenant_id": other.id}),
            ("A1", "A1", {"location_id": default}),
            ("A1", "A1", {"location_id": east, "status": AlarmStatus.PENDING}),
            ("A1", "A1", {"location_id": east, "status": AlarmStatus.RESOLVED}),
            ("P1", "P1", {}),
        ]
        for owner, about, extra in plan:
            row = await raise_alarm(await template(o[owner]), o[about], **extra)
            self.rows.append(row)
            self.owner_of[row.id] = o[owner].id

    def org(self, pk: int) -> Organization:
        return next(x for x in self.world.orgs.values() if x.id == pk)

    def in_tree(self, p: Principal, org: Organization) -> bool:
        if p.company_ids is not None:
            return org.id in p.company_ids
        if p.organization_kind is OrgKind.PROVIDER:
            return True
        if p.organization_kind is OrgKind.RESELLER:
            return p.organization_id in (org.id, org.parent_id)  # type: ignore[attr-defined]
        return org.id == p.organization_id

    def visible(self, p: Principal, row: Alarm) -> bool:
        owner = self.org(self.owner_of[row.id])
        if not engine.allows(p, ALARMS, Action.READ) or row.status is AlarmStatus.PENDING:
            return False
        if not self.in_tree(p, self.org(row.organization_id)):
            return False
        if owner.id != p.organization_id and not self.in_tree(p, owner):
            return False
        if p.location_ids is not None and row.location_id not in p.location_ids:
            return False
        if p.scope_kind is RoleScope.OWN_COMPUTERS:
            return self.subtenant_user.get(row.subtenant_id or 0) == p.user_id
        return True

    def expected(self, p: Principal, row: Alarm, action: Action) -> str | None:
        if not engine.allows(p, ALARMS, action):
            return "FORBIDDEN"
        if not self.visible(p, row):
            return "NOT_FOUND"
        target = Target(
            kind=ALARMS.kind,
            organization_id=row.organization_id,
            subtenant_user_id=self.subtenant_user.get(row.subtenant_id or 0),
        )
        if not engine.can(p, ALARMS, action, target):
            return "FORBIDDEN"
        if action is Action.UPDATE and row.status is not AlarmStatus.ACTIVE:
            return "CONFLICT"
        return None


def _batch(template_: str, field: str, rows: list[Alarm]) -> str:
    return " ".join(
        template_.format(alias=f"a{i}", id=gid(r), field=field) for i, r in enumerate(rows)
    )


@pytest.mark.parametrize("edition", ["service_provider", "enterprise"])
async def test_the_active_alarms_row_for_every_principal(
    edition: str, use_settings, db, gql
) -> None:
    use_settings(edition=edition)
    world = await build_world()
    tree = Tree(world)
    await tree.build()
    subjects = [s for s in ALL_SUBJECTS if s.edition == edition]
    reads = "{ " + _batch('{alias}: alarm(id: "{id}") {{ id }}', "", tree.rows) + " }"
    saw_something = {True: 0, False: 0}
    for subject in subjects:
        token = world.tokens[subject.key]
        p = await principal_for_bearer(token)
        want = sorted(gid(r) for r in tree.rows if tree.visible(p, r))
        body = await gql(LIST, {"first": 100}, token=token)
        if engine.allows(p, ALARMS, Action.READ):
            assert sorted(ids(body)) == want, subject.id
            saw_something[bool(want)] += 1
        else:
            assert outcome(body, "alarms") == "FORBIDDEN", subject.id
        body = await gql(reads, token=token)
        got = _per_alias(body, len(tree.rows))
        assert got == [tree.expected(p, r, Action.READ) for r in tree.rows], subject.id
        # Mutations one by one (a refused non-null mutation would null its neighbours); a
        # field-level refusal once.
        rows = tree.rows if engine.allows(p, ALARMS, Action.UPDATE) else tree.rows[:1]
        for row in rows:
            body = await gql(ACK, {"input": {"id": gid(row), "comment": "seen"}}, token=token)
            want_code = tree.expected(p, row, Action.UPDATE)
            assert outcome(body, "alarmAcknowledge") == want_code, (subject.id, row.id)
        # Back to ACTIVE for the next principal.
        await Alarm.filter(status=AlarmStatus.ACKNOWLEDGED).update(status=AlarmStatus.ACTIVE)
    # The scene really separates: principals who see alarms and principals who see none.
    assert saw_something[True] > 0 and saw_something[False] > 0


def _per_alias(body: dict[str, Any], n: int) -> list[str | None]:
    """Each alias's outcome: None when it answered, else its error code; a field-level
    refusal fails every alias alike."""
    errors = {e["path"][0]: e["extensions"]["code"] for e in body.get("errors") or []}
    data = body.get("data") or {}
    out: list[str | None] = []
    for i in range(n):
        alias = f"a{i}"
        if alias in errors:
            out.append(errors[alias])
        else:
            assert data.get(alias) is not None, body
            out.append(None)
    return out


async def test_a_subtenant_sees_only_alarms_of_its_own_computers(world: World, gql) -> None:
    a1 = world.orgs["A1"]
    east = world.locations["A1-East"].id
    mine = await subtenant_of(world, "A1", world.user("A1", "Subtenant"))
    theirs = await subtenant_of(world, "A1")
    tpl = await template(a1)
    own = await raise_alarm(tpl, a1, location_id=east, subtenant_id=mine.id)
    other = await raise_alarm(tpl, a1, location_id=east, subtenant_id=theirs.id)
    untied = await raise_alarm(tpl, a1, location_id=east)
    token = world.token("A1", "Subtenant")
    assert ids(await gql(LIST, {}, token=token)) == [gid(own)]
    for row in (other, untied):
        assert outcome(await gql(READ, {"id": gid(row)}, token=token), "alarm") == "NOT_FOUND"
    body = await gql(READ, {"id": gid(own)}, token=token)
    assert body["data"]["alarm"]["viewerCanAcknowledge"] is False
    body = await gql(ACK, {"input": {"id": gid(own)}}, token=token)
    assert outcome(body, "alarmAcknowledge") == "FORBIDDEN"


async def test_a_location_user_sees_only_its_locations(world: World, gql) -> None:
    a1 = world.orgs["A1"]
    tpl = await template(a1)
    east = await raise_alarm(tpl, a1, location_id=world.locations["A1-East"].id)
    default = await raise_alarm(tpl, a1, location_id=world.locations["A1-Default"].id)
    company_wide = await raise_alarm(tpl, a1)
    token = world.token("A1", LOCATION_USER)
    assert ids(await gql(LIST, {}, token=token)) == [gid(east)]
    for row in (default, company_wide):
        assert outcome(await gql(READ, {"id": gid(row)}, token=token), "alarm") == "NOT_FOUND"
    owner = ids(await gql(LIST, {}, token=world.token("A1", OWNER)))
    assert owner == [gid(company_wide), gid(default), gid(east)]


@pytest.mark.parametrize(
    ("org", "role"),
    [
        ("R2", "Service Provider Global Administrator"),
        ("B1", OWNER),
        ("A2", "Company Administrator"),
        ("Provider", "Service Provider Operator:P1"),
    ],
)
async def test_cross_tenant_alarms_are_not_found(world: World, gql, org: str, role: str) -> None:
    a1 = world.orgs["A1"]
    alarm = await raise_alarm(await template(a1), a1)
    r1_alarm = await raise_alarm(await template(world.orgs["R1"]), a1)
    token = world.tokens[f"{org}:{role}"]
    for row in (alarm, r1_alarm):
        assert outcome(await gql(READ, {"id": gid(row)}, token=token), "alarm") == "NOT_FOUND"
        body = await gql(RESOLVE, {"input": {"id": gid(row)}}, token=token)
        assert outcome(body, "alarmResolve") == "NOT_FOUND"
        body = await gql("query($id: ID!) { node(id: $id) { id } }", {"id": gid(row)}, token=token)
        assert outcome(body, "node") == "NOT_FOUND"
        assert (await Alarm.get(id=row.id)).status is AlarmStatus.ACTIVE
    assert ids(await gql(LIST, {}, token=token)) == []


async def test_a_company_does_not_see_its_resellers_template_alarms(world: World, gql) -> None:
    a1 = world.orgs["A1"]
    ours = await raise_alarm(await template(a1), a1)
    resellers = await raise_alarm(await template(world.orgs["R1"]), a1)
    assert ids(await gql(LIST, {}, token=world.token("A1", OWNER))) == [gid(ours)]
    staff = ids(await gql(LIST, {}, token=world.token("R1", "Service Provider Administrator")))
    assert staff == [gid(resellers), gid(ours)]


# --- constant queries ----------------------------------------------------------------------------


async def test_a_page_with_history_costs_constant_queries(world: World, gql) -> None:
    a1, a2 = world.orgs["A1"], world.orgs["A2"]
    token = world.token("R1", "Service Provider Administrator")
    query = """query { alarms(first: 100) { totalCount nodes { id templateName organizationId
      companyId organizationName locationName objectId objectNodeId viewerCanResolve
      history { change actorName comment } } } }"""

    async def add(n: int) -> None:
        for i in range(n):
            org = a1 if i % 2 else a2
            row = await raise_alarm(
                await template(org), org, location_id=world.locations[f"{org.name}-Default"].id
            )
            await AlarmEvent.create(
                alarm=row,
                change=AlarmChange.ACKNOWLEDGED,
                status=AlarmStatus.ACKNOWLEDGED,
                severity=row.severity,
                actor=world.user("A1", OWNER),
                comment="seen",
            )

    await add(2)
    with count_queries() as small:
        body = await gql(query, token=token)
    assert len(body["data"]["alarms"]["nodes"]) == 2
    await add(20)
    with count_queries() as large:
        body = await gql(query, token=token)
    nodes = body["data"]["alarms"]["nodes"]
    assert len(nodes) == 22
    assert nodes[0]["history"][-1] == {
        "change": "ACKNOWLEDGED",
        "actorName": world.user("A1", OWNER).name,
        "comment": "seen",
    }
    assert nodes[0]["locationName"] == "Default location"
    assert nodes[0]["objectNodeId"] == to_global_id("BackupAgent", int(nodes[0]["objectId"]))
    assert large.count == small.count, f"{small}\n{large}"
    assert large.count <= 8, str(large)


# --- the subscription ----------------------------------------------------------------------------


@pytest.fixture
async def hub() -> AsyncIterator[events.LocalHub]:
    local = events.LocalHub()
    events.install(hub=local)
    yield local
    await events.shutdown()


SUBSCRIBE = "subscription { alarmRaised { id status companyId } }"


async def _subscribe(world: World, key: str) -> Any:
    from app.graphql.context import Context
    from app.graphql.loaders import Loaders
    from app.graphql.schema import schema

    p = await principal_for_bearer(world.tokens[key])
    ctx = Context(request=None, response=None, principal=p, loaders=Loaders(p))
    return await schema.subscribe(SUBSCRIBE, context_value=ctx)


async def _next(stream: Any, within: float) -> Any:
    return await asyncio.wait_for(stream.__anext__(), within)


async def publish(*rows: Alarm) -> None:
    """What the engine does after committing a change of these alarms."""
    owners = dict(
        await AlarmTemplate.filter(id__in=[r.template_id for r in rows]).values_list(  # type: ignore[attr-defined]
            "id", "owner_id"
        )
    )
    changed = [(r, AlarmChange.TRIGGERED) for r in rows]
    await alarm_changes.publish(alarm_changes.Changes(changed=changed, owners=owners))  # type: ignore[arg-type]


async def _listening(hub: events.LocalHub, org: Organization) -> None:
    channel = alarm_changes.alarm_channel(org.id)
    for _ in range(200):
        if hub.subscriber_count(channel):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nobody listens on {channel}")


async def test_the_subscription_delivers_alarms_in_scope_only(
    world: World, hub: events.LocalHub
) -> None:
    a1, a2 = world.orgs["A1"], world.orgs["A2"]
    stream = await _subscribe(world, "A1:Company Owner")
    first = asyncio.ensure_future(_next(stream, 5))
    await _listening(hub, a1)
    assert hub.subscriber_count(alarm_changes.alarm_channel(a2.id)) == 0
    # Out of scope first: another company's, and the reseller's template about A1 (published
    # on A1's channel too: dropped by the scope when read again).
    foreign = await raise_alarm(await template(a2), a2)
    resellers = await raise_alarm(await template(world.orgs["R1"]), a1)
    await publish(foreign, resellers)
    ours = await raise_alarm(await template(a1), a1)
    await publish(ours)
    result = await first
    assert result.errors is None
    assert result.data["alarmRaised"]["id"] == gid(ours)
    # Nothing else arrives.
    await publish(resellers, foreign)
    with pytest.raises(TimeoutError):
        await _next(stream, 0.3)
    await stream.aclose()
    assert hub.subscriber_count() == 0


async def test_a_limited_operator_hears_only_its_companies(
    world: World, hub: events.LocalHub
) -> None:
    """The provider's channel carries every provider template's alarm: a provider operator
    limited to P1 hears B1's on it, and the scope drops it."""
    provider, b1, p1 = world.orgs["Provider"], world.orgs["B1"], world.orgs["P1"]
    stream = await _subscribe(world, "Provider:Service Provider Operator:P1")
    first = asyncio.ensure_future(_next(stream, 5))
    await _listening(hub, p1)
    assert hub.subscriber_count(alarm_changes.alarm_channel(b1.id)) == 0
    tpl = await template(provider)
    await publish(await raise_alarm(tpl, b1))
    ours = await raise_alarm(tpl, p1)
    await publish(ours)
    assert (await first).data["alarmRaised"]["id"] == gid(ours)
    await stream.aclose()


async def test_the_reseller_hears_its_companies_and_changes(
    world: World, hub: events.LocalHub, gql
) -> None:
    """R1's staff listen on R1's channel alone (a change is published on its organization's
    ancestors too) and hear A1's own alarms, including an acknowledgement made through the
    API."""
    a1 = world.orgs["A1"]
    stream = await _subscribe(world, "R1:Service Provider Administrator")
    first = asyncio.ensure_future(_next(stream, 5))
    await _listening(hub, world.orgs["R1"])
    assert hub.subscriber_count(alarm_changes.alarm_channel(a1.id)) == 0
    alarm = await raise_alarm(await template(a1), a1)
    body = await gql(ACK, {"input": {"id": gid(alarm)}}, token=world.token("A1", OWNER))
    assert body["data"]["alarmAcknowledge"]["status"] == "ACKNOWLEDGED"
    result = await first
    assert result.data["alarmRaised"] == {
        "id": gid(alarm),
        "status": "ACKNOWLEDGED",
        "companyId": to_global_id("Company", a1.id),
    }
    await stream.aclose()


async def test_the_subscription_is_refused_without_the_row(world: World, hub) -> None:
    stream = await _subscribe(world, "A1:Company Invoice Auditor")
    result = await _next(stream, 5)  # the refusal, before any subscription to the hub
    assert result.errors[0].extensions["code"] == "FORBIDDEN"
    assert hub.subscriber_count() == 0
    await stream.aclose()
