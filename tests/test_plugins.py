"""The plugin library: the provider's entries, switched on and off per organization with
inheritance down the tree; the matrix for every principal; cross-tenant NOT_FOUND."""

from __future__ import annotations

import asyncio

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import PLUGIN_ENTRIES, PLUGINS
from app.authz.matrix import Action
from app.authz.principal import Target
from app.models import AuditEntry
from app.models.licensing import Plugin, PluginActivation
from app.services import plugins
from app.services.actor import Actor
from tests.conftest import ON_POSTGRES
from tests.permission_cases import Subject, org_gid
from tests.querycount import count_queries
from tests.test_allocations import ALL_SUBJECTS, code, gid, home_company

ADMIN = ("Provider", "Service Provider Global Administrator")
R1_ADMIN = ("R1", "Service Provider Global Administrator")
R2_ADMIN = ("R2", "Service Provider Global Administrator")
A1_OWNER = ("A1", "Company Owner")

CREATE = """mutation($input: PluginCreateInput!) { pluginCreate(input: $input) {
  id name version description vendor viewerCanUpdate viewerCanDelete } }"""
UPDATE = (
    """mutation($input: PluginUpdateInput!) { pluginUpdate(input: $input) { id name version } }"""
)
DELETE = """mutation($id: ID!) { pluginDelete(id: $id) { deletedId } }"""
SET = """mutation($input: PluginSetEnabledInput!) { pluginSetEnabled(input: $input) {
  organizationId organizationName enabled effective locked } }"""
LIST = """query($org: ID) { plugins(first: 50, organizationId: $org) { nodes {
  name enabledForMe enabledForOrganization
  activations { organizationName enabled effective locked } } } }"""


async def make_plugin(name: str = "Billing sync", version: str = "1.0") -> Plugin:
    return await Plugin.create(name=name, version=version, vendor="Acme")


async def switch(gql, world, who, plugin: Plugin, org_key: str, enabled: bool) -> dict:
    return await gql(
        SET,
        {
            "input": {
                "pluginId": gid("Plugin", plugin.id),
                "organizationId": org_gid(world.orgs[org_key]),
                "enabled": enabled,
            }
        },
        token=world.token(*who),
    )


async def enabled_for(gql, world, who) -> dict[str, bool]:
    body = await gql(LIST, {}, token=world.token(*who))
    return {n["name"]: n["enabledForMe"] for n in body["data"]["plugins"]["nodes"]}


async def test_the_provider_creates_edits_and_removes_library_entries(world, gql) -> None:
    token = world.token(*ADMIN)
    variables = {
        "input": {
            "name": " Billing sync ",
            "version": "12.3.0.310",
            "description": "Sends usage to billing",
            "vendor": "Acme",
        }
    }
    body = await gql(CREATE, variables, token=token)
    created = body["data"]["pluginCreate"]
    assert created["name"] == "Billing sync"
    assert (created["version"], created["vendor"]) == ("12.3.0.310", "Acme")
    assert created["viewerCanUpdate"] and created["viewerCanDelete"]
    body = await gql(CREATE, variables, token=token)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["extensions"]["field"] == "input.name"
    for bad in ("v1", "1.2.3.4.5", "1..2", "", "1.2-beta", "1."):
        body = await gql(CREATE, {"input": {"name": f"p{bad}", "version": bad}}, token=token)
        assert code(body) == "BAD_USER_INPUT", bad
        assert body["errors"][0]["extensions"]["field"] == "input.version"
    body = await gql(CREATE, {"input": {"name": "  ", "version": "1"}}, token=token)
    assert body["errors"][0]["extensions"]["field"] == "input.name"
    other = await make_plugin("Other")
    body = await gql(UPDATE, {"input": {"id": created["id"], "name": "Other"}}, token=token)
    assert code(body) == "CONFLICT"
    body = await gql(UPDATE, {"input": {"id": created["id"], "version": "12.4"}}, token=token)
    assert body["data"]["pluginUpdate"] == {
        "id": created["id"],
        "name": "Billing sync",
        "version": "12.4",
    }
    await PluginActivation.create(plugin=other, organization=world.orgs["R1"])
    body = await gql(DELETE, {"id": gid("Plugin", other.id)}, token=token)
    assert body["data"]["pluginDelete"]["deletedId"] == gid("Plugin", other.id)
    assert await Plugin.filter(id=other.id).count() == 0
    assert await PluginActivation.all().count() == 0
    body = await gql(DELETE, {"id": gid("Plugin", other.id)}, token=token)
    assert code(body) == "NOT_FOUND"
    audit = (
        await AuditEntry.filter(object_type="Plugin")
        .order_by("id")
        .values_list("action", "outcome")
    )
    assert audit == [
        ("pluginCreate", "SUCCESS"),
        ("pluginCreate", "FAILURE"),
        ("pluginUpdate", "FAILURE"),
        ("pluginUpdate", "SUCCESS"),
        ("pluginDelete", "SUCCESS"),
    ]


async def test_resellers_and_companies_may_not_write_the_library(world, gql) -> None:
    plugin = await make_plugin()
    for who in (R1_ADMIN, ("R1", "Service Provider Administrator"), A1_OWNER):
        token = world.token(*who)
        body = await gql(CREATE, {"input": {"name": "Mine", "version": "1"}}, token=token)
        assert code(body) == "FORBIDDEN", who
        body = await gql(
            UPDATE, {"input": {"id": gid("Plugin", plugin.id), "version": "2"}}, token=token
        )
        assert code(body) == "FORBIDDEN", who
        body = await gql(DELETE, {"id": gid("Plugin", plugin.id)}, token=token)
        assert code(body) == "FORBIDDEN", who
        body = await gql(LIST, {}, token=token)
        assert [n["name"] for n in body["data"]["plugins"]["nodes"]] == ["Billing sync"]
    assert (await Plugin.get(id=plugin.id)).version == "1.0"
    assert await Plugin.all().count() == 1


async def test_enabling_inherits_down_and_a_parents_decision_sticks(world, gql) -> None:
    plugin = await make_plugin()
    everyone = (
        ADMIN,
        R1_ADMIN,
        R2_ADMIN,
        A1_OWNER,
        ("A2", "Company Owner"),
        ("P1", "Company Owner"),
    )

    async def state() -> dict[str, bool]:
        return {who[0]: (await enabled_for(gql, world, who))["Billing sync"] for who in everyone}

    # Opt-in: nobody has it until someone switches it on.
    assert set((await state()).values()) == {False}
    body = await switch(gql, world, R1_ADMIN, plugin, "R1", True)
    assert body["data"]["pluginSetEnabled"] == {
        "organizationId": gid("Reseller", world.orgs["R1"].id),
        "organizationName": "R1",
        "enabled": True,
        "effective": True,
        "locked": False,
    }
    assert await state() == {
        "Provider": False,
        "R1": True,
        "R2": False,
        "A1": True,
        "A2": True,
        "P1": False,
    }
    # A company switches it off for itself only.
    body = await switch(gql, world, A1_OWNER, plugin, "A1", False)
    assert body["data"]["pluginSetEnabled"]["effective"] is False
    assert (await state())["A1"] is False and (await state())["A2"] is True
    # The provider switches it off for R1: R1 cannot switch it back on, nor for its companies.
    body = await switch(gql, world, ADMIN, plugin, "R1", False)
    assert body["data"]["pluginSetEnabled"]["locked"] is False  # not above the provider
    assert await state() == {
        "Provider": False,
        "R1": False,
        "R2": False,
        "A1": False,
        "A2": False,
        "P1": False,
    }
    body = await switch(gql, world, R1_ADMIN, plugin, "R1", True)
    assert code(body) == "CONFLICT"
    body = await switch(gql, world, R1_ADMIN, plugin, "A2", True)
    assert code(body) == "CONFLICT"
    # Switching it off again keeps the provider's decision.
    body = await switch(gql, world, R1_ADMIN, plugin, "R1", False)
    assert body["data"]["pluginSetEnabled"]["locked"] is True
    assert code(await switch(gql, world, R1_ADMIN, plugin, "R1", True)) == "CONFLICT"
    body = await gql(LIST, {}, token=world.token(*R1_ADMIN))
    rows = body["data"]["plugins"]["nodes"][0]["activations"]
    assert rows == [
        {"organizationName": "R1", "enabled": False, "effective": False, "locked": True},
        {"organizationName": "A1", "enabled": False, "effective": False, "locked": False},
    ]
    # The provider lifts it; A1's own choice still holds until A1 (or R1) changes it.
    await switch(gql, world, ADMIN, plugin, "R1", True)
    assert (await state())["R1"] is True and (await state())["A1"] is False
    body = await switch(gql, world, R1_ADMIN, plugin, "A1", True)
    assert body["data"]["pluginSetEnabled"]["effective"] is True
    # The provider's own row switches it for the whole tree.
    await switch(gql, world, ADMIN, plugin, "Provider", True)
    assert set((await state()).values()) == {True}
    await switch(gql, world, ADMIN, plugin, "Provider", False)
    assert set((await state()).values()) == {False}
    assert code(await switch(gql, world, R2_ADMIN, plugin, "R2", True)) == "CONFLICT"
    audit = await AuditEntry.filter(action="pluginSetEnabled").values_list("outcome", flat=True)
    assert sorted(set(audit)) == ["FAILURE", "SUCCESS"]


async def test_company_portal_toggles_for_its_own_company_only(world, gql) -> None:
    plugin = await make_plugin()
    for role in ("Company Owner", "Company Administrator"):
        body = await switch(gql, world, ("A1", role), plugin, "A1", role == "Company Owner")
        assert body["data"]["pluginSetEnabled"]["organizationName"] == "A1", role
        for outside in ("A2", "R1", "B1", "Provider"):
            body = await switch(gql, world, ("A1", role), plugin, outside, True)
            assert code(body) == "NOT_FOUND", (role, outside)
    row = await PluginActivation.get(plugin=plugin)
    assert (row.organization_id, row.enabled) == (world.orgs["A1"].id, False)  # type: ignore[attr-defined]
    for role in ("Location Administrator", "Location User", "Subtenant", "Company Invoice Auditor"):
        body = await switch(gql, world, ("A1", role), plugin, "A1", True)
        assert code(body) == "FORBIDDEN", role
    for role in ("Location User", "Subtenant", "Company Invoice Auditor"):
        body = await gql(LIST, {}, token=world.token("A1", role))
        assert code(body) == "FORBIDDEN", role


async def test_department_portal_has_no_plugin_library(use_settings, db, gql) -> None:
    from tests.factories import build_world

    use_settings(edition="enterprise")
    world = await build_world()
    plugin = await make_plugin()
    for role in ("Department Owner", "Department Administrator"):
        body = await gql(LIST, {}, token=world.token("A1", role))
        assert code(body) == "FORBIDDEN"
        body = await switch(gql, world, ("A1", role), plugin, "A1", True)
        assert code(body) == "FORBIDDEN"
    assert await PluginActivation.all().count() == 0


async def test_cross_tenant_switches_are_not_found(world, gql) -> None:
    plugin = await make_plugin()
    await switch(gql, world, R1_ADMIN, plugin, "A1", True)
    for who, target in ((R2_ADMIN, "A1"), (R2_ADMIN, "R1"), (("B1", "Company Owner"), "A1")):
        body = await switch(gql, world, who, plugin, target, False)
        assert code(body) == "NOT_FOUND", (who, target)
        body = await gql(LIST, {"org": org_gid(world.orgs[target])}, token=world.token(*who))
        assert code(body) == "NOT_FOUND"
        body = await gql(LIST, {}, token=world.token(*who))
        assert body["data"]["plugins"]["nodes"][0]["activations"] == []
    body = await gql(
        SET,
        {
            "input": {
                "pluginId": gid("Plugin", plugin.id + 99),
                "organizationId": org_gid(world.orgs["R1"]),
                "enabled": True,
            }
        },
        token=world.token(*R1_ADMIN),
    )
    assert code(body) == "NOT_FOUND"
    row = await PluginActivation.get(plugin=plugin)
    assert row.enabled is True


async def test_state_for_one_organization(world, gql) -> None:
    plugin = await make_plugin()
    await make_plugin("Unused")
    await switch(gql, world, R1_ADMIN, plugin, "R1", True)
    await switch(gql, world, R1_ADMIN, plugin, "A2", False)
    token = world.token(*ADMIN)
    for org, expected in (("A1", True), ("A2", False), ("B1", False)):
        body = await gql(LIST, {"org": org_gid(world.orgs[org])}, token=token)
        nodes = {n["name"]: n for n in body["data"]["plugins"]["nodes"]}
        assert nodes["Billing sync"]["enabledForOrganization"] is expected, org
        assert nodes["Unused"]["enabledForOrganization"] is False
        assert [a["organizationName"] for a in nodes["Billing sync"]["activations"]] == (
            ["A2"] if org == "A2" else []
        )
    body = await gql(LIST, {}, token=token)
    node = body["data"]["plugins"]["nodes"][0]
    assert node["enabledForOrganization"] is None
    assert [a["organizationName"] for a in node["activations"]] == ["R1", "A2"]


async def test_the_library_page_costs_the_same_for_1_and_20_plugins(world, gql) -> None:
    token = world.token(*R1_ADMIN)
    counts = []
    for n in (1, 20):
        await Plugin.all().delete()
        for i in range(n):
            p = await make_plugin(f"p{i}")
            await PluginActivation.create(
                plugin=p, organization=world.orgs["A1"], set_by_id=world.orgs["R1"].id
            )
            await PluginActivation.create(plugin=p, organization=world.orgs["Provider"])
        with count_queries() as queries:
            body = await gql(LIST, {"org": org_gid(world.orgs["A1"])}, token=token)
        nodes = body["data"]["plugins"]["nodes"]
        assert len(nodes) == n and all(x["enabledForMe"] for x in nodes)
        assert all(x["activations"][0]["effective"] for x in nodes)
        counts.append(queries.count)
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_plugin_operations_follow_the_matrix(subject: Subject, use_settings, db, gql) -> None:
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    plugin = await make_plugin()
    body = await gql(LIST, {}, token=token)
    want_read = None if engine.allows(p, PLUGINS, Action.READ) else "FORBIDDEN"
    assert code(body) == want_read, body
    body = await gql(CREATE, {"input": {"name": "New", "version": "1.0"}}, token=token)
    assert code(body) == (None if engine.allows(p, PLUGIN_ENTRIES, Action.CREATE) else "FORBIDDEN")
    org = world.orgs[home_company(world, subject)]
    body = await gql(
        SET,
        {
            "input": {
                "pluginId": gid("Plugin", plugin.id),
                "organizationId": org_gid(org),
                "enabled": True,
            }
        },
        token=token,
    )
    target = Target(kind=PLUGINS.kind, organization_id=org.id, organization_kind=org.kind)
    allowed = engine.allows(p, PLUGINS, Action.UPDATE) and engine.can(
        p, PLUGINS, Action.UPDATE, target
    )
    assert code(body) == (None if allowed else "FORBIDDEN"), body


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_concurrent_switches_of_rows_not_yet_written(world) -> None:
    plugin = await make_plugin()
    r1 = Actor(await principal_for_bearer(world.token(*R1_ADMIN)))
    provider = Actor(await principal_for_bearer(world.token(*ADMIN)))

    async def run(actor: Actor, org: str, enabled: bool) -> str:
        try:
            await plugins.set_enabled(actor, plugin.id, world.orgs[org].id, enabled)
            return "ok"
        except Exception as exc:
            return type(exc).__name__

    results = await asyncio.gather(*[run(r1, org, True) for org in ("R1", "A1", "A2") * 6])
    assert results == ["ok"] * 18
    assert await PluginActivation.filter(plugin=plugin).count() == 3
    # The provider's "off" and R1's "on" race: whatever the order, the provider's decision
    # is the last word on R1's row, and it stays locked for R1.
    results = await asyncio.gather(
        run(provider, "R1", False), *[run(r1, "R1", True) for _ in range(8)]
    )
    assert results[0] == "ok" and set(results[1:]) <= {"ok", "Conflict"}
    row = await PluginActivation.get(plugin=plugin, organization=world.orgs["R1"])
    if row.enabled:  # an enable ran after the provider's disable: impossible
        pytest.fail("R1 enabled what the provider disabled")
    assert row.set_by_id == world.orgs["Provider"].id  # type: ignore[attr-defined]
