"""Protected data: per computer its newest restore point, RPO status (TENANTRY_RPO_HOURS) and
protecting jobs (the enabled ones the caller may read), for every scope; the RPO filter in SQL;
one statement per page (+ COUNT)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import capabilities as caps
from app.authz import engine
from app.authz.matrix import Action
from app.graphql.ids import to_global_id
from app.models import BackupJob, ManagedComputer
from app.models.backups import BackupJobKind, TargetKind
from tests.factories import build_world
from tests.querycount import count_queries
from tests.workload_fleet import build_fleet

PAGE = """query($filter: ProtectedComputerFilter, $first: Int, $after: String) {
  protectedComputers(first: $first, after: $after, filter: $filter) {
    pageInfo { hasNextPage endCursor }
    nodes { hostname companyName locationName restorePointCount rpoStatus protectedJobCount
            lastRestorePointAt computerId companyId locationId } } }"""
COUNTED = """query($first: Int) { protectedComputers(first: $first) {
  totalCount nodes { hostname rpoStatus protectedJobCount companyName locationName } } }"""
GA = ("Provider", "Service Provider Global Administrator")


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


def short(node: dict[str, Any]) -> str:
    return str(node["hostname"]).split(".")[0]


def rows(body: dict[str, Any]) -> list[tuple[str, str]]:
    nodes = body["data"]["protectedComputers"]["nodes"]
    return sorted((short(n), n["rpoStatus"]) for n in nodes)


async def _set(computer: ManagedComputer, hours_ago: float | None, count: int) -> None:
    computer.last_restore_point_at = (
        None if hours_ago is None else datetime.now(UTC) - timedelta(hours=hours_ago)
    )
    computer.restore_point_count = count
    await computer.save()


@pytest.fixture
async def fleet(world):
    fleet = await build_fleet(world)
    # A1: one computer within the RPO, one 30 hours old, the Subtenant's never protected.
    await _set(fleet.computer("A1-Default"), 1, 12)
    await _set(fleet.computer("A1-East"), 30, 7)
    await _set(fleet.subtenant_computers["A1:own"], None, 0)
    for key in ("A2-Default", "B1-Default", "P1-Default"):
        await _set(fleet.computer(key), 2, 3)
    for key in ("A2:own", "B1:own", "P1:own"):
        await _set(fleet.subtenant_computers[key], 50, 1)
    return fleet


async def test_company_page_with_statuses_and_jobs(world, fleet, gql) -> None:
    body = await gql(PAGE, {}, token=world.token("A1", "Company Owner"))
    nodes = {short(n): n for n in body["data"]["protectedComputers"]["nodes"]}
    assert sorted(nodes) == ["A1-Default-location", "A1-East", "A1-own"]
    default = nodes["A1-Default-location"]
    assert default["rpoStatus"] == "OK"
    assert default["restorePointCount"] == 12
    # Its agent job and the job the provider assigned to it.
    assert default["protectedJobCount"] == 2
    assert default["companyName"] == "A1" and default["locationName"] == "Default location"
    assert default["companyId"] == gid("Company", world.orgs["A1"].id)
    assert default["locationId"] == gid("Location", world.locations["A1-Default"].id)
    assert default["computerId"] == gid("ManagedComputer", fleet.computer("A1-Default").id)
    east = nodes["A1-East"]
    assert (east["rpoStatus"], east["restorePointCount"], east["protectedJobCount"]) == (
        "BREACHED",
        7,
        1,
    )
    assert east["locationName"] == "East"
    own = nodes["A1-own"]
    assert (own["rpoStatus"], own["lastRestorePointAt"], own["protectedJobCount"]) == (
        "NEVER_PROTECTED",
        None,
        1,
    )


async def test_rpo_filter_in_sql_and_the_rpo_setting(world, fleet, gql, use_settings) -> None:
    token = world.token("A1", "Company Owner")
    expected = {
        "OK": [("A1-Default-location", "OK")],
        "BREACHED": [("A1-East", "BREACHED")],
        "NEVER_PROTECTED": [("A1-own", "NEVER_PROTECTED")],
    }
    for status, want in expected.items():
        body = await gql(PAGE, {"filter": {"rpoStatus": status}}, token=token)
        assert rows(body) == want, status
    use_settings(rpo_hours=48)
    body = await gql(PAGE, {"filter": {"rpoStatus": "OK"}}, token=token)
    assert rows(body) == [("A1-Default-location", "OK"), ("A1-East", "OK")]
    body = await gql(PAGE, {"filter": {"rpoStatus": "BREACHED"}}, token=world.token(*GA))
    assert rows(body) == [("A2-own", "BREACHED"), ("B1-own", "BREACHED"), ("P1-own", "BREACHED")]


async def test_scopes(world, fleet, gql) -> None:
    cases = {
        GA: 9,
        ("R1", "Service Provider User"): 5,
        ("R2", "Service Provider Operator"): 2,
        ("Provider", "Service Provider Operator:P1"): 2,
        ("A1", "Company Administrator"): 3,
        ("A2", "Company Owner"): 2,
    }
    for (org, role), n in cases.items():
        body = await gql(PAGE, {"first": 50}, token=world.tokens[f"{org}:{role}"])
        assert len(body["data"]["protectedComputers"]["nodes"]) == n, (org, role, body)
    body = await gql(PAGE, {}, token=world.token("R1", "Service Provider User"))
    assert {n["companyName"] for n in body["data"]["protectedComputers"]["nodes"]} == {"A1", "A2"}
    body = await gql(PAGE, {}, token=world.token("A1", "Location User"))
    assert rows(body) == [("A1-East", "BREACHED")]
    # Read*: the Subtenant sees its own computer only.
    body = await gql(PAGE, {}, token=world.token("A1", "Subtenant"))
    assert rows(body) == [("A1-own", "NEVER_PROTECTED")]
    for org, role in (
        ("A1", "Company Invoice Auditor"),
        ("Provider", "Service Provider Invoice Auditor"),
    ):
        body = await gql(PAGE, {}, token=world.token(org, role))
        assert code(body) == "FORBIDDEN"
        assert body["data"]["protectedComputers"] is None
    # Another tenant's company or location as a filter: nothing, not their rows.
    b1 = {"companyId": gid("Company", world.orgs["B1"].id)}
    body = await gql(PAGE, {"filter": b1}, token=world.token("R1", "Service Provider User"))
    assert body["data"]["protectedComputers"]["nodes"] == []
    east = {"locationId": gid("Location", world.locations["A1-East"].id)}
    body = await gql(PAGE, {"filter": east}, token=world.token(*GA))
    assert rows(body) == [("A1-East", "BREACHED")]


async def test_department_portal(db, gql, use_settings) -> None:
    use_settings(edition="enterprise")
    world = await build_world()
    await build_fleet(world)
    body = await gql(PAGE, {}, token=world.token("A1", "Department User"))
    assert [short(n) for n in body["data"]["protectedComputers"]["nodes"]] == ["A1-East"]
    body = await gql(PAGE, {}, token=world.token("A1", "Subtenant"))
    assert [short(n) for n in body["data"]["protectedComputers"]["nodes"]] == ["A1-own"]
    body = await gql(PAGE, {}, token=world.token("A1", "Chargeback Auditor"))
    assert code(body) == "FORBIDDEN"


async def test_keyset_pages(world, fleet, gql) -> None:
    token = world.token(*GA)
    seen: list[str] = []
    after = None
    while True:
        body = await gql(PAGE, {"first": 4, "after": after}, token=token)
        page = body["data"]["protectedComputers"]
        seen += [short(n) for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    ids = await ManagedComputer.all().order_by("id").values_list("hostname", flat=True)
    assert seen == [h.split(".")[0] for h in ids]
    assert len(seen) == 9


async def test_one_statement_per_page_plus_count(world, fleet, gql) -> None:
    token = world.token(*GA)
    await gql(COUNTED, {"first": 1}, token=token)
    for first in (1, 4, 9):
        with count_queries() as queries:
            body = await gql(COUNTED, {"first": first}, token=token)
        assert body["data"]["protectedComputers"]["totalCount"] == 9
        assert len(body["data"]["protectedComputers"]["nodes"]) == first
        # The session token, the page (computers, companies, locations and job counts in one
        # statement), the COUNT.
        assert queries.count == 3, str(queries)
        assert len(queries.matching("managed_computers")) == 2
    with count_queries() as queries:
        body = await gql(PAGE, {"first": 9}, token=token)
    assert len(body["data"]["protectedComputers"]["nodes"]) == 9
    assert queries.count == 2, str(queries)


async def test_job_count_is_the_enabled_jobs_the_caller_may_read(world, fleet, gql) -> None:
    """The Client Portal's Subtenant reads its Backup Agents jobs but not the jobs assigned by
    the service provider; a disabled job counts for nobody."""
    own = fleet.subtenant_computers["A1:own"]
    subtenant = fleet.subtenants["A1"]
    common = dict(
        company_id=own.company_id,  # type: ignore[attr-defined]
        location_id=own.location_id,  # type: ignore[attr-defined]
        kind=BackupJobKind.AGENT,
        functionality=caps.JOB_FUNCTIONALITY["AGENT"].value,
        computer=own,
        target_kind=TargetKind.CLOUD,
        target_subtenant=subtenant,
    )
    await BackupJob.create(uid="own-assigned", name="assigned", assigned_by_provider=True, **common)
    await BackupJob.create(uid="own-off", name="off", enabled=False, **common)
    default = fleet.jobs[("A1", BackupJobKind.AGENT, True)]
    default.enabled = False
    await default.save()

    subtenant_p = await principal_for_bearer(world.token("A1", "Subtenant"))
    assert engine.allows(subtenant_p, caps.backup_job("AGENT", False), Action.READ)
    assert not engine.allows(subtenant_p, caps.backup_job("AGENT", True), Action.READ)

    def counts(body: dict[str, Any]) -> dict[str, int]:
        nodes = body["data"]["protectedComputers"]["nodes"]
        return {short(n): n["protectedJobCount"] for n in nodes}

    owner = await gql(PAGE, {}, token=world.token("A1", "Company Owner"))
    # Own computer: its agent job and the provider's; the disabled one is not counted. The
    # default location's computer: its own agent job, the provider's being disabled now.
    assert counts(owner) == {"A1-Default-location": 1, "A1-East": 1, "A1-own": 2}
    with count_queries() as queries:
        mine_page = await gql(PAGE, {}, token=world.token("A1", "Subtenant"))
    # Only its own agent job: the provider's job is another product row, N/A to a Subtenant.
    assert counts(mine_page) == {"A1-own": 1}
    assert queries.count == 2, str(queries)
    assert len(queries.matching("backup_jobs")) == 1
