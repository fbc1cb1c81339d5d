"""Veeam ONE records: read-only, newest first, filters, counts by severity in SQL; row scope
(companies in the tree, a Location User's own locations); roles without the row FORBIDDEN."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.models import AgentStatus, BackupServer, ServerKind
from app.models.licensing import Severity, VeeamOneRecord
from tests.querycount import count_queries
from tests.test_allocations import code, gid

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ADMIN = ("Provider", "Service Provider Global Administrator")

LIST = """query($first: Int, $after: String, $filter: VeeamOneRecordFilter) {
  veeamOneRecords(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id uid companyId locationId serverId objectName metric value severity message
      recordedAt } } }"""
SUMMARY = """query($companyId: ID) { veeamOneSummary(companyId: $companyId) {
  info warning error total } }"""


async def server(world, key: str) -> BackupServer:
    return await BackupServer.create(
        company=world.orgs[key],
        location=world.locations[f"{key}-Default"],
        uid=f"{key}-vone",
        kind=ServerKind.VEEAM_ONE,
        name=f"{key} Veeam ONE",
        status=AgentStatus.HEALTHY,
    )


async def record(
    srv: BackupServer,
    uid: str,
    minutes: int,
    severity: Severity = Severity.INFO,
    location_id: int | None = None,
) -> VeeamOneRecord:
    return await VeeamOneRecord.create(
        company_id=srv.company_id,  # type: ignore[attr-defined]
        location_id=location_id or srv.location_id,  # type: ignore[attr-defined]
        server=srv,
        uid=uid,
        object_name=f"vm-{uid}",
        metric="cpu_usage",
        value=42.5,
        severity=severity,
        message=f"{uid} says hello",
        recorded_at=T0 + timedelta(minutes=minutes),
    )


async def build(world) -> dict[str, BackupServer]:
    servers = {key: await server(world, key) for key in ("A1", "A2", "B1", "P1")}
    east = world.locations["A1-East"].id
    # Inserted out of time order: the list goes by recordedAt, not by id.
    await record(servers["A1"], "a1-old", 1, Severity.ERROR)
    await record(servers["A1"], "a1-new", 30, Severity.WARNING)
    await record(servers["A1"], "a1-east", 20, Severity.ERROR, location_id=east)
    await record(servers["A1"], "a1-mid", 10)
    await record(servers["A1"], "a1-tie", 10)  # same time as a1-mid: the id breaks the tie
    await record(servers["A2"], "a2", 5, Severity.WARNING)
    await record(servers["B1"], "b1", 6, Severity.ERROR)
    await record(servers["P1"], "p1", 7)
    return servers


async def uids(gql, token, **variables) -> list[str]:
    body = await gql(LIST, {"first": 50, **variables}, token=token)
    return [n["uid"] for n in body["data"]["veeamOneRecords"]["nodes"]]


async def test_records_newest_first_paged_and_filtered(world, gql) -> None:
    servers = await build(world)
    token = world.token(*ADMIN)
    assert await uids(gql, token) == [
        "a1-new",
        "a1-east",
        "a1-tie",
        "a1-mid",
        "p1",
        "b1",
        "a2",
        "a1-old",
    ]
    seen: list[str] = []
    after = None
    while True:
        body = await gql(LIST, {"first": 3, "after": after}, token=token)
        page = body["data"]["veeamOneRecords"]
        assert page["totalCount"] == 8
        seen += [n["uid"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == await uids(gql, token)
    a1 = gid("Company", world.orgs["A1"].id)
    body = await gql(LIST, {"first": 1, "filter": {"companyId": a1}}, token=token)
    node = body["data"]["veeamOneRecords"]["nodes"][0]
    assert node == {
        "id": node["id"],
        "uid": "a1-new",
        "companyId": a1,
        "locationId": gid("Location", world.locations["A1-Default"].id),
        "serverId": gid("BackupServer", servers["A1"].id),
        "objectName": "vm-a1-new",
        "metric": "cpu_usage",
        "value": 42.5,
        "severity": "WARNING",
        "message": "a1-new says hello",
        "recordedAt": "2026-11-20T12:30:00+00:00",
    }
    assert await uids(gql, token, filter={"severity": "ERROR"}) == ["a1-east", "b1", "a1-old"]
    assert await uids(gql, token, filter={"serverId": gid("BackupServer", servers["B1"].id)}) == [
        "b1"
    ]
    window = {"from": "2026-11-20T12:06:00+00:00", "to": "2026-11-20T12:20:00+00:00"}
    assert await uids(gql, token, filter=window) == ["a1-tie", "a1-mid", "p1", "b1"]
    body = await gql(LIST, {"after": "bm9wZQ=="}, token=token)
    assert code(body) == "BAD_USER_INPUT"
    body = await gql(
        "query($id: ID!) { node(id: $id) { ... on VeeamOneRecord { uid } } }",
        {"id": node["id"]},
        token=token,
    )
    assert body["data"]["node"] == {"uid": "a1-new"}


async def test_summary_counts_by_severity(world, gql) -> None:
    await build(world)
    body = await gql(SUMMARY, {}, token=world.token(*ADMIN))
    assert body["data"]["veeamOneSummary"] == {"info": 3, "warning": 2, "error": 3, "total": 8}
    a1 = gid("Company", world.orgs["A1"].id)
    body = await gql(SUMMARY, {"companyId": a1}, token=world.token(*ADMIN))
    assert body["data"]["veeamOneSummary"] == {"info": 2, "warning": 1, "error": 2, "total": 5}
    body = await gql(SUMMARY, {}, token=world.token("R1", "Service Provider Administrator"))
    assert body["data"]["veeamOneSummary"] == {"info": 2, "warning": 2, "error": 2, "total": 6}
    body = await gql(SUMMARY, {}, token=world.token("A1", "Location User"))
    assert body["data"]["veeamOneSummary"] == {"info": 0, "warning": 0, "error": 1, "total": 1}
    body = await gql(SUMMARY, {"companyId": a1}, token=world.token("B1", "Company Owner"))
    assert code(body) == "NOT_FOUND"
    with count_queries() as queries:
        await gql(SUMMARY, {}, token=world.token(*ADMIN))
    assert len(queries.matching("veeam_one_records")) == 1


async def test_scope_follows_the_tree_and_locations(world, gql) -> None:
    await build(world)
    a1_all = ["a1-new", "a1-east", "a1-tie", "a1-mid", "a1-old"]
    expected = {
        ("R1", "Service Provider Global Administrator"): [*a1_all[:4], "a2", "a1-old"],
        ("R2", "Service Provider Operator"): ["b1"],
        ("Provider", "Service Provider User:P1"): ["p1"],
        ("A1", "Company Owner"): a1_all,
        ("A1", "Location Administrator"): ["a1-east"],
        ("A1", "Location User"): ["a1-east"],
        ("A2", "Location User"): ["a2"],  # not limited to locations in A2
        ("B1", "Company Administrator"): ["b1"],
    }
    for (org, role), want in expected.items():
        token = world.tokens[f"{org}:{role}"]
        assert await uids(gql, token) == want, (org, role)
    old = await VeeamOneRecord.get(uid="a1-old")
    for org, role in (
        ("A1", "Location User"),
        ("B1", "Company Owner"),
        ("R2", "Service Provider Global Administrator"),
    ):
        token = world.token(org, role)
        for document in (
            "query($id: ID!) { veeamOneRecord(id: $id) { uid } }",
            "query($id: ID!) { node(id: $id) { id } }",
        ):
            body = await gql(document, {"id": gid("VeeamOneRecord", old.id)}, token=token)
            assert code(body) == "NOT_FOUND", (org, role, document)


async def test_roles_without_the_row_are_forbidden(world, gql) -> None:
    await build(world)
    for org, role in (
        ("A1", "Subtenant"),
        ("A1", "Company Invoice Auditor"),
        ("Provider", "Service Provider Invoice Auditor"),
        ("R1", "Service Provider Invoice Auditor"),
    ):
        token = world.token(org, role)
        for document in (LIST, SUMMARY):
            body = await gql(document, {}, token=token)
            assert code(body) == "FORBIDDEN", (org, role, document)


async def test_department_portal_is_forbidden(use_settings, db, gql) -> None:
    from tests.factories import build_world

    use_settings(edition="enterprise")
    world = await build_world()
    await build(world)
    for role in ("Department Owner", "Department Administrator", "Department User"):
        body = await gql(LIST, {}, token=world.token("A1", role))
        assert code(body) == "FORBIDDEN", role


async def test_the_api_has_no_way_to_write_records(world, gql) -> None:
    body = await gql(
        '{ __type(name: "Mutation") { fields { name } } }', {}, token=world.token(*ADMIN)
    )
    names = [f["name"] for f in body["data"]["__type"]["fields"]]
    assert names and not [n for n in names if "veeamone" in n.lower()]


async def test_the_page_costs_the_same_for_1_and_25_records(world, gql) -> None:
    srv = await server(world, "A1")
    token = world.token("A1", "Company Owner")
    counts = []
    for n in (1, 25):
        await VeeamOneRecord.all().delete()
        for i in range(n):
            await record(srv, f"r{i}", i)
        with count_queries() as queries:
            assert len(await uids(gql, token)) == n
        counts.append(queries.count)
    assert counts[0] == counts[1], counts
