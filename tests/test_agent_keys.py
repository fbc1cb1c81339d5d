"""Agent keys: issued once (`tna_<prefix>_<secret>`, only the SHA-256 kept), listed and revoked
within the caller's scope, audited; `authenticate_agent_key` refusals; the matrix for every
principal of the world."""

from __future__ import annotations

import hashlib

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import AGENT_KEYS
from app.authz.matrix import Action
from app.errors import Forbidden, Unauthenticated
from app.models import AgentKey, AuditEntry
from app.services.agent_keys import authenticate_agent_key
from tests.factories import World
from tests.permission_cases import gid, org_gid
from tests.querycount import count_queries

OWNER = "Company Owner"
CREATE = """mutation($input: AgentKeyCreateInput!) {
  agentKeyCreate(input: $input) {
    secret agentKey { id name prefix companyId locationId active viewerCanRevoke }
  } }"""
LIST = """query($filter: AgentKeyFilter) {
  agentKeys(filter: $filter) { totalCount nodes { id name locationId } } }"""
REVOKE = "mutation($id: ID!) { agentKeyRevoke(id: $id) { id active revokedAt } }"


async def create(gql, world: World, who: str, company: str, location: str | None = None, name="k"):
    data = {"companyId": org_gid(world.orgs[company]), "name": name}
    if location:
        data["locationId"] = gid("Location", world.locations[location].id)
    return await gql(CREATE, {"input": data}, token=world.tokens[who])


async def test_issued_once_and_stored_hashed(gql, world: World):
    body = await create(gql, world, f"A1:{OWNER}", "A1", name="  vbr01  ")
    payload = body["data"]["agentKeyCreate"]
    secret, key = payload["secret"], payload["agentKey"]
    assert secret.startswith(f"tna_{key['prefix']}_") and len(secret) > 40
    assert key["name"] == "vbr01" and key["active"] is True and key["viewerCanRevoke"] is True
    assert key["companyId"] == org_gid(world.orgs["A1"])
    assert key["locationId"] == gid("Location", world.locations["A1-Default"].id)
    row = await AgentKey.get(prefix=key["prefix"])
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(await AgentKey.all().values())
    entry = await AuditEntry.get(action="agentKeyCreate")
    assert entry.outcome == "SUCCESS" and entry.organization_id == world.orgs["A1"].id
    assert entry.details["prefix"] == key["prefix"] and secret not in str(entry.details)
    authenticated = await authenticate_agent_key(secret)
    assert authenticated.id == row.id and authenticated.company_id == world.orgs["A1"].id  # type: ignore[attr-defined]


async def test_scope_company_and_location(gql, world: World):
    # Out of scope: another reseller's company is NOT_FOUND, not FORBIDDEN.
    body = await create(gql, world, f"A1:{OWNER}", "B1")
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = await create(gql, world, "R1:Service Provider Global Administrator", "B1")
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # The provider reaches every company; the reseller its own.
    await create(gql, world, "Provider:Service Provider Global Administrator", "B1", name="p")
    await create(gql, world, "R1:Service Provider Global Administrator", "A1", name="r")
    # A Location Administrator limited to A1-East: the default location is not theirs, so
    # a key without a location lands in theirs.
    admin = "A1:Location Administrator"
    body = await create(gql, world, admin, "A1", "A1-Default")
    assert body["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "input.locationId"}
    body = await create(gql, world, admin, "A1", name="east")
    key = body["data"]["agentKeyCreate"]["agentKey"]
    assert key["locationId"] == gid("Location", world.locations["A1-East"].id)
    listed = await gql(LIST, token=world.tokens[admin])
    assert [n["name"] for n in listed["data"]["agentKeys"]["nodes"]] == ["east"]
    listed = await gql(LIST, token=world.token("A1", OWNER))
    assert [n["name"] for n in listed["data"]["agentKeys"]["nodes"]] == ["east", "r"]
    listed = await gql(
        LIST,
        {"filter": {"locationId": gid("Location", world.locations["A1-Default"].id)}},
        token=world.token("A1", OWNER),
    )
    assert [n["name"] for n in listed["data"]["agentKeys"]["nodes"]] == ["r"]
    listed = await gql(LIST, token=world.token("B1", OWNER))
    assert [n["name"] for n in listed["data"]["agentKeys"]["nodes"]] == ["p"]
    # Somebody else's key by id: NOT_FOUND, through node() and through revoke.
    key_id = listed["data"]["agentKeys"]["nodes"][0]["id"]
    body = await gql(
        "query($id: ID!) { node(id: $id) { id } }", {"id": key_id}, token=world.token("A1", OWNER)
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = await gql(REVOKE, {"id": key_id}, token=world.token("A1", OWNER))
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await AgentKey.filter(revoked_at__isnull=False).count() == 0


async def test_revoke_is_audited_and_refuses_the_key(gql, world: World):
    body = await create(gql, world, f"A1:{OWNER}", "A1")
    secret = body["data"]["agentKeyCreate"]["secret"]
    key_id = body["data"]["agentKeyCreate"]["agentKey"]["id"]
    revoked = await gql(REVOKE, {"id": key_id}, token=world.token("A1", "Company Administrator"))
    assert revoked["data"]["agentKeyRevoke"]["active"] is False
    assert revoked["data"]["agentKeyRevoke"]["revokedAt"] is not None
    again = await gql(REVOKE, {"id": key_id}, token=world.token("A1", OWNER))
    assert (
        again["data"]["agentKeyRevoke"]["revokedAt"]
        == revoked["data"]["agentKeyRevoke"]["revokedAt"]
    )
    assert await AuditEntry.filter(action="agentKeyRevoke", outcome="SUCCESS").count() == 2
    with pytest.raises(Unauthenticated):
        await authenticate_agent_key(secret)
    node = await gql(
        "query($id: ID!) { node(id: $id) { ... on AgentKey { active viewerCanRevoke } } }",
        {"id": key_id},
        token=world.token("A1", OWNER),
    )
    assert node["data"]["node"] == {"active": False, "viewerCanRevoke": False}


async def test_authenticate_refusals_and_cheap_last_used(gql, world: World):
    body = await create(gql, world, f"A1:{OWNER}", "A1")
    secret = body["data"]["agentKeyCreate"]["secret"]
    prefix = body["data"]["agentKeyCreate"]["agentKey"]["prefix"]
    for wrong in (
        "",
        "tna_",
        f"tna_{prefix}",
        f"tna_{prefix}_nope",
        secret + "x",
        "tntk_" + secret[4:],
    ):
        with pytest.raises(Unauthenticated):
            await authenticate_agent_key(wrong)
    with count_queries() as first:
        await authenticate_agent_key(secret)
    used = (await AgentKey.get(prefix=prefix)).last_used_at
    assert used is not None and first.count == 2  # the lookup and the last_used_at write
    with count_queries() as second:
        await authenticate_agent_key(secret)
    assert second.count == 1  # within the minute: no write
    assert (await AgentKey.get(prefix=prefix)).last_used_at == used
    world.orgs["A1"].enabled = False
    await world.orgs["A1"].save()
    with pytest.raises(Forbidden):
        await authenticate_agent_key(secret)


async def test_name_is_required(gql, world: World):
    body = await create(gql, world, f"A1:{OWNER}", "A1", name="   ")
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.name"}


async def test_every_principal_as_the_matrix_says(gql, world: World):
    """Each world user lists keys, and issues one for a company in scope, exactly when the
    engine allows (FORBIDDEN otherwise)."""
    for who, token in world.tokens.items():
        p = await principal_for_bearer(token)
        listed = await gql(LIST, token=token)
        if engine.allows(p, AGENT_KEYS, Action.READ):
            assert "errors" not in listed, (who, listed)
        else:
            assert listed["data"]["agentKeys"] is None, who
            assert listed["errors"][0]["extensions"]["code"] == "FORBIDDEN", who
        org = who.split(":")[0]
        company = (
            org
            if org in ("A1", "A2", "B1", "P1")
            else ("P1" if who.endswith(":P1") else "A1" if org != "R2" else "B1")
        )
        location = "A1-East" if company == "A1" else None
        body = await create(gql, world, who, company, location, name=f"key {who}")
        if engine.allows(p, AGENT_KEYS, Action.CREATE):
            assert "errors" not in body, (who, body)
        else:
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (who, body)
