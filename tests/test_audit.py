"""The audit log: every mutation leaves one entry (SUCCESS or FAILURE); `auditLog` reads them,
newest first, scoped to the caller's organizations and guarded by the "Logs" row."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.graphql.ids import to_global_id
from app.models import AuditEntry, Organization, User
from tests.factories import PASSWORD

GA = "Service Provider Global Administrator"

ENTRY_FIELDS = """
    id at actorEmail actorId action objectType objectId organizationId
    clientAddress requestId outcome details
"""

AUDIT_LOG = (
    "query($first: Int, $after: String, $filter: AuditLogFilter) {"
    " auditLog(first: $first, after: $after, filter: $filter) {"
    " totalCount pageInfo { hasNextPage endCursor } nodes {" + ENTRY_FIELDS + "} } }"
)

COMPANY_CREATE = """
mutation($input: CompanyCreateInput!) { companyCreate(input: $input) { id name } }
"""

LOCATION_CREATE = """
mutation($input: LocationCreateInput!) { locationCreate(input: $input) { id name } }
"""


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def company_input(name: str, reseller_id: str | None = None, owner: str | None = None) -> dict:
    return {
        "name": name,
        "email": f"{name.lower()}@example.test",
        "resellerId": reseller_id,
        "owner": {
            "email": owner or f"owner.{name.lower()}@example.test",
            "name": f"Owner {name}",
            "password": PASSWORD,
        },
    }


async def audit_log(
    gql, token: str, filter: dict | None = None, first: int | None = None, after=None
):
    body = await gql(AUDIT_LOG, {"first": first, "after": after, "filter": filter}, token=token)
    assert "errors" not in body, body
    return body["data"]["auditLog"]


async def test_successful_mutation_writes_one_success_entry(world, gql):
    token = world.token("Provider", GA)
    actor = world.user("Provider", GA)
    before = await AuditEntry.all().count()

    body = await gql(COMPANY_CREATE, {"input": company_input("Zeta")}, token=token)
    assert "errors" not in body, body
    company_id = body["data"]["companyCreate"]["id"]

    assert await AuditEntry.all().count() == before + 1
    log = await audit_log(gql, token)
    entry = log["nodes"][0]
    assert entry["action"] == "companyCreate"
    assert entry["outcome"] == "SUCCESS"
    assert entry["actorEmail"] == actor.email
    assert entry["actorId"] == gid("User", actor.id)
    assert entry["objectType"] == "Company"
    assert entry["objectId"] == company_id
    assert entry["organizationId"] == company_id
    assert entry["clientAddress"] == "10.0.0.1"
    assert entry["details"]["name"] == "Zeta"
    assert entry["details"]["owner"] == "owner.zeta@example.test"
    assert isinstance(entry["requestId"], str) and len(entry["requestId"]) >= 16
    row = await AuditEntry.all().order_by("-id").first()
    assert row is not None
    assert row.request_id == entry["requestId"]
    assert entry["id"] == gid("AuditEntry", row.id)

    # Each request has its own id.
    body = await gql(COMPANY_CREATE, {"input": company_input("Eta")}, token=token)
    assert "errors" not in body, body
    newest = (await audit_log(gql, token, first=1))["nodes"][0]
    assert newest["action"] == "companyCreate" and newest["details"]["name"] == "Eta"
    assert newest["requestId"] and newest["requestId"] != entry["requestId"]


async def _duplicate_company_create(world, gql) -> dict:
    """companyCreate of a name that already exists under R1 ("A1"): CONFLICT."""
    token = world.token("Provider", GA)
    r1 = gid("Reseller", world.orgs["R1"].id)
    body = await gql(
        COMPANY_CREATE,
        {"input": company_input("A1", reseller_id=r1, owner="dup.owner@example.test")},
        token=token,
    )
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert body["data"] is None
    return body


async def test_failed_mutation_writes_failure_entry_and_rolls_back(world, gql):
    before_entries = await AuditEntry.all().count()
    await _duplicate_company_create(world, gql)

    assert await Organization.filter(name="A1").count() == 1
    assert await User.filter(email="dup.owner@example.test").count() == 0
    assert await AuditEntry.all().count() == before_entries + 1
    row = await AuditEntry.all().order_by("-id").first()
    assert row is not None
    assert (row.action, row.outcome, row.object_type) == ("companyCreate", "FAILURE", "Company")
    assert row.actor_id == world.user("Provider", GA).id
    assert row.client_address == "10.0.0.1"
    assert row.request_id
    assert row.details["error"] == "CONFLICT"


async def test_failure_inside_block_rolls_back_rows_created_before_the_error(world, gql):
    """The owner's email is checked after the company row is inserted: the row must vanish."""
    token = world.token("Provider", GA)
    taken = world.user("A1", "Company Owner").email
    body = await gql(COMPANY_CREATE, {"input": company_input("Theta", owner=taken)}, token=token)
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT", body
    assert await Organization.filter(name="Theta").count() == 0
    row = await AuditEntry.all().order_by("-id").first()
    assert row is not None
    assert (row.action, row.outcome) == ("companyCreate", "FAILURE")


async def test_failure_entry_of_a_create_is_visible_in_the_parents_log(world, gql):
    await _duplicate_company_create(world, gql)
    for org in ("Provider", "R1"):
        nodes = (await audit_log(gql, world.token(org, GA), first=1))["nodes"]
        assert [(n["action"], n["outcome"]) for n in nodes] == [("companyCreate", "FAILURE")]
        assert nodes[0]["organizationId"] == gid("Reseller", world.orgs["R1"].id)
        assert nodes[0]["details"]["error"] == "CONFLICT"
        assert nodes[0]["objectId"] is None


async def test_entries_are_scoped_to_the_callers_organizations(world, gql):
    r1_admin = world.token("R1", GA)
    r2_admin = world.token("R2", GA)
    a1 = gid("Company", world.orgs["A1"].id)

    body = await gql(LOCATION_CREATE, {"input": {"companyId": a1, "name": "West"}}, token=r1_admin)
    assert "errors" not in body, body
    location_id = body["data"]["locationCreate"]["id"]

    r1_nodes = (await audit_log(gql, r1_admin))["nodes"]
    assert [(n["action"], n["objectId"], n["organizationId"]) for n in r1_nodes] == [
        ("locationCreate", location_id, a1)
    ]
    provider_nodes = (await audit_log(gql, world.token("Provider", GA)))["nodes"]
    assert [n["objectId"] for n in provider_nodes] == [location_id]

    r2 = await audit_log(gql, r2_admin)
    assert r2["nodes"] == [] and r2["totalCount"] == 0

    # node(id:) follows the same scope: NOT_FOUND for R2, found for R1.
    entry_id = r1_nodes[0]["id"]
    query = "query($id: ID!) { node(id: $id) { id ... on AuditEntry { action } } }"
    body = await gql(query, {"id": entry_id}, token=r2_admin)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = await gql(query, {"id": entry_id}, token=r1_admin)
    assert body["data"]["node"] == {"id": entry_id, "action": "locationCreate"}


async def test_reseller_entries_carry_reseller_and_provider_org_ids(world, gql):
    token = world.token("Provider", GA)
    r1 = gid("Reseller", world.orgs["R1"].id)
    body = await gql(
        "mutation($id: ID!) { resellerDisable(id: $id) { id } }", {"id": r1}, token=token
    )
    assert "errors" not in body, body
    body = await gql(
        "mutation($id: ID!) { resellerDelete(id: $id) { deletedId } }",
        {"id": gid("Reseller", world.orgs["R2"].id)},
        token=token,
    )
    assert "errors" not in body, body
    nodes = (await audit_log(gql, token))["nodes"]
    assert [(n["action"], n["organizationId"]) for n in nodes] == [
        ("resellerDelete", gid("ServiceProvider", world.orgs["Provider"].id)),
        ("resellerDisable", r1),
    ]


@pytest.mark.parametrize(
    ("org", "role"),
    [
        ("Provider", "Service Provider User"),
        ("Provider", "Service Provider Invoice Auditor"),
        ("R1", "Service Provider User"),
        ("A1", "Company Owner"),
        ("A1", "Company Administrator"),
    ],
)
async def test_roles_without_logs_are_forbidden(world, gql, org, role):
    body = await gql(AUDIT_LOG, token=world.token(org, role))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["data"] == {"auditLog": None}


@pytest.mark.parametrize(
    "role",
    [
        "Service Provider Global Administrator",
        "Service Provider Administrator",
        "Service Provider Operator",
    ],
)
async def test_roles_with_logs_may_read(world, gql, role):
    log = await audit_log(gql, world.token("Provider", role))
    assert log["nodes"] == []


async def test_unauthenticated_is_refused(world, gql):
    body = await gql(AUDIT_LOG)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def _three_changes(world, gql) -> dict[str, str]:
    """Three mutations by two actors, at known times: returns the ids involved."""
    ga = world.token("Provider", GA)
    r1 = world.token("R1", GA)
    a1 = gid("Company", world.orgs["A1"].id)
    b1 = gid("Company", world.orgs["B1"].id)
    first = await gql(LOCATION_CREATE, {"input": {"companyId": a1, "name": "North"}}, token=r1)
    second = await gql(LOCATION_CREATE, {"input": {"companyId": b1, "name": "South"}}, token=ga)
    third = await gql(
        "mutation($input: OrganizationUpdateInput!) { companyUpdate(input: $input) { id } }",
        {"input": {"id": a1, "email": "it@a1.example"}},
        token=ga,
    )
    for body in (first, second, third):
        assert "errors" not in body, body
    rows = await AuditEntry.all().order_by("id")
    assert len(rows) == 3
    for row, day in zip(rows, (1, 2, 3), strict=True):
        await AuditEntry.filter(id=row.id).update(at=datetime(2026, 1, day, 12, tzinfo=UTC))
    return {
        "north": first["data"]["locationCreate"]["id"],
        "south": second["data"]["locationCreate"]["id"],
        "a1": a1,
    }


async def test_order_is_newest_first_and_pages_follow(world, gql):
    ids = await _three_changes(world, gql)
    token = world.token("Provider", GA)
    page1 = await audit_log(gql, token, first=2)
    assert [n["action"] for n in page1["nodes"]] == ["companyUpdate", "locationCreate"]
    assert page1["nodes"][1]["objectId"] == ids["south"]
    assert page1["pageInfo"]["hasNextPage"] is True
    assert page1["totalCount"] == 3
    page2 = await audit_log(gql, token, first=2, after=page1["pageInfo"]["endCursor"])
    assert [n["objectId"] for n in page2["nodes"]] == [ids["north"]]
    assert page2["pageInfo"]["hasNextPage"] is False


async def test_filters(world, gql):
    ids = await _three_changes(world, gql)
    token = world.token("Provider", GA)

    async def objects(filter: dict) -> list[str | None]:
        return [n["objectId"] for n in (await audit_log(gql, token, filter=filter))["nodes"]]

    # Time range, both ends inclusive.
    assert await objects({"from": "2026-01-02T00:00:00Z"}) == [ids["a1"], ids["south"]]
    assert await objects({"to": "2026-01-02T12:00:00Z"}) == [ids["south"], ids["north"]]
    assert await objects({"from": "2026-01-01T13:00:00Z", "to": "2026-01-02T13:00:00Z"}) == [
        ids["south"]
    ]
    assert await objects({"from": "2026-02-01T00:00:00Z"}) == []
    # Actor.
    r1_admin = gid("User", world.user("R1", GA).id)
    assert await objects({"actorId": r1_admin}) == [ids["north"]]
    ga = gid("User", world.user("Provider", GA).id)
    assert await objects({"actorId": ga}) == [ids["a1"], ids["south"]]
    # Object, by global id and by type.
    assert await objects({"objectId": ids["south"]}) == [ids["south"]]
    assert await objects({"objectId": ids["a1"]}) == [ids["a1"]]
    assert await objects({"objectType": "Location"}) == [ids["south"], ids["north"]]
    # Action and outcome, combined with the others.
    assert await objects({"action": "companyUpdate"}) == [ids["a1"]]
    assert await objects({"action": "locationCreate", "actorId": ga}) == [ids["south"]]
    assert await objects({"outcome": "FAILURE"}) == []
    assert await objects({"outcome": "SUCCESS", "objectType": "Company"}) == [ids["a1"]]


async def test_filter_with_wrong_kind_of_id_is_bad_input(world, gql):
    token = world.token("Provider", GA)
    body = await gql(
        AUDIT_LOG,
        {"filter": {"actorId": gid("Company", world.orgs["A1"].id)}},
        token=token,
    )
    assert body["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "filter.actorId",
    }
    body = await gql(AUDIT_LOG, {"filter": {"objectId": "not-an-id"}}, token=token)
    assert body["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "filter.objectId",
    }
