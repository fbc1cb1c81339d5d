"""Reading managed workloads through GraphQL: computers, agents, servers, jobs, sessions and
restore points, for every scope of the world (provider, reseller, company, location, Subtenant,
auditor, Department Portal); cross-tenant ids NOT_FOUND; loaders keep query counts flat."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz.capabilities import JOB_FUNCTIONALITY
from app.graphql.ids import to_global_id
from app.models import (
    BackupJob,
    BackupJobKind,
    BackupJobSession,
    Location,
    ManagedComputer,
    RestorePoint,
    SessionResult,
)
from app.services import workloads
from tests.factories import build_world
from tests.permission_cases import EDITIONS, subjects
from tests.querycount import count_queries
from tests.workload_fleet import NOW, build_fleet
from tests.workload_fleet import _subtenant_role as subtenant_role

COMPUTERS = """query($filter: ManagedComputerFilter, $first: Int) {
  managedComputers(first: $first, filter: $filter) { totalCount nodes { hostname } } }"""
AGENTS = "{ backupAgents(first: 100) { nodes { computerId status } } }"
SERVERS = """query($filter: BackupServerFilter) {
  backupServers(first: 100, filter: $filter) { nodes { name kind } } }"""
JOBS = """query($filter: BackupJobFilter) {
  backupJobs(first: 100, filter: $filter) { nodes { name kind assignedByProvider
    viewerCanOperate viewerCanConfigure } } }"""
SESSIONS = """query($filter: BackupJobSessionFilter, $descending: Boolean! = true) {
  backupJobSessions(first: 100, filter: $filter, descending: $descending) {
    nodes { uid result processedBytes } } }"""
NODE = """query($id: ID!) { node(id: $id) { id
  ... on ManagedComputer { hostname }
  ... on BackupJob { name }
  ... on BackupServer { name }
  ... on BackupAgent { version }
  ... on BackupJobSession { uid }
  ... on RestorePoint { uid } } }"""

OWNER = "Company Owner"


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


def hostnames(body: dict[str, Any]) -> list[str]:
    return sorted(n["hostname"].split(".")[0] for n in body["data"]["managedComputers"]["nodes"])


@pytest.fixture
async def fleet(world):
    return await build_fleet(world)


async def test_computers_in_every_scope(world, fleet, gql) -> None:
    everyone = [
        "A1-Default-location",
        "A1-East",
        "A1-own",
        "A2-Default-location",
        "A2-own",
        "B1-Default-location",
        "B1-own",
        "P1-Default-location",
        "P1-own",
    ]
    cases = {
        ("Provider", "Service Provider Global Administrator"): everyone,
        ("Provider", "Service Provider User:P1"): ["P1-Default-location", "P1-own"],
        ("R1", "Service Provider Administrator"): everyone[:5],
        ("R2", "Service Provider User"): ["B1-Default-location", "B1-own"],
        ("A1", OWNER): ["A1-Default-location", "A1-East", "A1-own"],
        ("A1", "Location User"): ["A1-East"],
        ("B1", "Location Administrator"): ["B1-Default-location", "B1-own"],
    }
    for (org, role), expected in cases.items():
        body = await gql(COMPUTERS, {"first": 50}, token=world.tokens[f"{org}:{role}"])
        assert hostnames(body) == expected, (org, role, body)
        assert body["data"]["managedComputers"]["totalCount"] == len(expected)
    for org, role in (
        ("A1", "Subtenant"),  # Managed computers: N/A (only their agents, Read*)
        ("A1", "Company Invoice Auditor"),
        ("Provider", "Service Provider Invoice Auditor"),
    ):
        body = await gql(COMPUTERS, {}, token=world.token(org, role))
        assert code(body) == "FORBIDDEN", (org, role)
        assert body["data"]["managedComputers"] is None


async def test_computer_filters(world, fleet, gql) -> None:
    token = world.token("Provider", "Service Provider Global Administrator")
    a1 = gid("Company", world.orgs["A1"].id)
    body = await gql(COMPUTERS, {"filter": {"companyId": a1}}, token=token)
    assert hostnames(body) == ["A1-Default-location", "A1-East", "A1-own"]
    east = gid("Location", world.locations["A1-East"].id)
    body = await gql(COMPUTERS, {"filter": {"locationId": east}}, token=token)
    assert hostnames(body) == ["A1-East"]
    east_pc = fleet.computer("A1-East")
    east_pc.agent_status = "ERROR"
    await east_pc.save()
    body = await gql(COMPUTERS, {"filter": {"agentStatus": "ERROR"}}, token=token)
    assert hostnames(body) == ["A1-East"]
    body = await gql(COMPUTERS, {"filter": {"search": "-OWN"}}, token=token)
    assert hostnames(body) == ["A1-own", "A2-own", "B1-own", "P1-own"]
    body = await gql(COMPUTERS, {"filter": {"companyId": east}}, token=token)
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "filter.companyId"


async def test_agents_servers_jobs_by_scope(world, fleet, gql) -> None:
    # A Subtenant reads the agents of its own computers only (Read*).
    body = await gql(AGENTS, token=world.token("A1", "Subtenant"))
    own = fleet.subtenant_computers["A1:own"]
    assert body["data"]["backupAgents"]["nodes"] == [
        {"computerId": gid("ManagedComputer", own.id), "status": "HEALTHY"}
    ]
    body = await gql(AGENTS, token=world.token("A1", "Location User"))
    assert [n["computerId"] for n in body["data"]["backupAgents"]["nodes"]] == [
        gid("ManagedComputer", fleet.computer("A1-East").id)
    ]
    # Servers: a Location User reads no Public Clouds appliance (N/A), the rest of the kinds;
    # their locations hold no server of A1 (all in the default location).
    body = await gql(SERVERS, token=world.token("A1", "Location User"))
    assert body["data"]["backupServers"]["nodes"] == []
    body = await gql(SERVERS, token=world.token("A1", OWNER))
    assert sorted(n["kind"] for n in body["data"]["backupServers"]["nodes"]) == [
        "BACKUP_AND_REPLICATION",
        "MICROSOFT_365",
        "PUBLIC_CLOUDS",
        "VEEAM_ONE",
    ]
    body = await gql(
        SERVERS,
        {"filter": {"kind": "VEEAM_ONE"}},
        token=world.token("R1", "Service Provider Administrator"),
    )
    assert sorted(n["name"] for n in body["data"]["backupServers"]["nodes"]) == [
        "A1 VEEAM_ONE",
        "A2 VEEAM_ONE",
    ]
    body = await gql(SERVERS, token=world.token("A1", "Subtenant"))
    assert code(body) == "FORBIDDEN"
    assert "no capability in this family allows READ" in body["errors"][0]["message"]
    # Jobs: the Subtenant reads its own agent job; the company owner all nine of A1.
    body = await gql(JOBS, token=world.token("A1", "Subtenant"))
    assert [n["name"] for n in body["data"]["backupJobs"]["nodes"]] == ["A1-own-agent"]
    body = await gql(JOBS, token=world.token("A1", OWNER))
    nodes = body["data"]["backupJobs"]["nodes"]
    assert len(nodes) == 9
    assigned = [n for n in nodes if n["assignedByProvider"]]
    # Jobs assigned by the provider: the company operates them, does not configure them.
    assert assigned == [
        {
            "name": "A1-assigned",
            "kind": "AGENT",
            "assignedByProvider": True,
            "viewerCanOperate": True,
            "viewerCanConfigure": False,
        }
    ]
    own = [n for n in nodes if not n["assignedByProvider"]]
    assert all(n["viewerCanOperate"] and n["viewerCanConfigure"] for n in own)
    body = await gql(JOBS, token=world.token("A1", "Location User"))
    assert [(n["name"], n["viewerCanOperate"]) for n in body["data"]["backupJobs"]["nodes"]] == [
        ("A1-East-agent", False)
    ]
    body = await gql(
        JOBS,
        {"filter": {"assignedByProvider": True}},
        token=world.token("Provider", "Service Provider User"),
    )
    assert sorted(n["name"] for n in body["data"]["backupJobs"]["nodes"]) == [
        "A1-assigned",
        "A2-assigned",
        "B1-assigned",
        "P1-assigned",
    ]
    body = await gql(
        JOBS,
        {"filter": {"kind": "MICROSOFT_365", "companyId": gid("Company", world.orgs["B1"].id)}},
        token=world.token("Provider", "Service Provider User"),
    )
    assert [n["name"] for n in body["data"]["backupJobs"]["nodes"]] == ["B1-MICROSOFT_365"]
    for org, role in (
        ("A1", "Company Invoice Auditor"),
        ("R1", "Service Provider Invoice Auditor"),
    ):
        body = await gql(JOBS, token=world.token(org, role))
        assert code(body) == "FORBIDDEN"
        body = await gql(SESSIONS, token=world.token(org, role))
        assert code(body) == "FORBIDDEN"


async def test_sessions_filters_and_order(world, fleet, gql) -> None:
    job = fleet.jobs[("A1", BackupJobKind.VBR_BACKUP, False)]
    for i, result in enumerate([SessionResult.FAILED, SessionResult.WARNING]):
        await BackupJobSession.create(
            job=job,
            uid=f"extra-{i}",
            company_id=job.company_id,  # type: ignore[attr-defined]
            location_id=job.location_id,  # type: ignore[attr-defined]
            functionality=job.functionality,
            result=result,
            started_at=NOW - timedelta(days=3 - i),
            processed_bytes=5 * 2**40,  # beyond 32 bits
        )
    token = world.token("A1", OWNER)
    body = await gql(SESSIONS, {"filter": {"jobId": gid("BackupJob", job.id)}}, token=token)
    assert [n["uid"] for n in body["data"]["backupJobSessions"]["nodes"]] == [
        "extra-1",
        "extra-0",
        "A1-VBR_BACKUP-s1",
    ]
    assert body["data"]["backupJobSessions"]["nodes"][0]["processedBytes"] == 5 * 2**40
    body = await gql(
        SESSIONS,
        {"filter": {"jobId": gid("BackupJob", job.id)}, "descending": False},
        token=token,
    )
    assert body["data"]["backupJobSessions"]["nodes"][0]["uid"] == "A1-VBR_BACKUP-s1"
    body = await gql(SESSIONS, {"filter": {"result": "FAILED"}}, token=token)
    assert [n["uid"] for n in body["data"]["backupJobSessions"]["nodes"]] == ["extra-0"]
    window = {
        "from": (NOW - timedelta(days=2, hours=1)).isoformat(),
        "to": (NOW - timedelta(days=1)).isoformat(),
    }
    body = await gql(SESSIONS, {"filter": window}, token=token)
    assert [n["uid"] for n in body["data"]["backupJobSessions"]["nodes"]] == ["extra-1"]
    # Another company's sessions are out of scope for A1's owner.
    b1_job = fleet.jobs[("B1", BackupJobKind.VBR_BACKUP, False)]
    body = await gql(SESSIONS, {"filter": {"jobId": gid("BackupJob", b1_job.id)}}, token=token)
    assert body["data"]["backupJobSessions"]["nodes"] == []
    body = await gql(SESSIONS, token=world.token("A1", "Location User"))
    assert [n["uid"] for n in body["data"]["backupJobSessions"]["nodes"]] == ["A1-East-agent-s1"]


async def _assigned_session_for_subtenant(world, fleet) -> BackupJobSession:
    """An assigned agent job backing up to A1's Subtenant account: the Subtenant's cell for
    agents is Read*, but provider-assigned jobs are N/A for it, though both jobs carry the same
    functionality. Only (kind, assigned) tells them apart."""
    sub = fleet.subtenants["A1"]
    own = fleet.subtenant_computers["A1:own"]
    job = await BackupJob.create(
        company=world.orgs["A1"],
        location_id=own.location_id,  # type: ignore[attr-defined]
        uid="A1-own-assigned",
        name="A1-own-assigned",
        kind=BackupJobKind.AGENT,
        functionality=JOB_FUNCTIONALITY["AGENT"].value,
        computer=own,
        assigned_by_provider=True,
        target_subtenant=sub,
    )
    return await BackupJobSession.create(
        job=job,
        uid="assigned-s1",
        company_id=job.company_id,  # type: ignore[attr-defined]
        location_id=job.location_id,  # type: ignore[attr-defined]
        computer_id=own.id,
        subtenant_id=sub.id,
        functionality=job.functionality,
        result=SessionResult.SUCCESS,
        started_at=NOW,
    )


@pytest.mark.parametrize("edition", EDITIONS)
async def test_session_filter_matches_the_job_filter_for_every_principal(
    db, use_settings, edition: str
) -> None:
    use_settings(edition=edition)
    world = await build_world()
    fleet = await build_fleet(world)
    assigned = await _assigned_session_for_subtenant(world, fleet)
    for subject in subjects(edition):
        p = await principal_for_bearer(world.tokens[subject.key])
        seen = await BackupJobSession.filter(workloads.session_q(p)).values_list("id", flat=True)
        jobs = await BackupJob.filter(workloads.job_q(p)).values_list("id", flat=True)
        expected = await BackupJobSession.filter(
            workloads.flat_workload_q(p), job_id__in=list(jobs)
        ).values_list("id", flat=True)
        assert sorted(seen) == sorted(expected), subject.id
    p = await principal_for_bearer(world.tokens[f"A1:{subtenant_role()}"])
    uids = await BackupJobSession.filter(workloads.session_q(p)).values_list("uid", flat=True)
    if edition == "service_provider":
        # Client Portal: assigned jobs fall under "Jobs assigned by service provider", N/A.
        assert uids == ["A1-own-agent-s1"]
    else:
        # The Department Portal has no such row: agent jobs are agent jobs (Read*).
        assert sorted(uids) == ["A1-own-agent-s1", assigned.uid]


async def test_node_and_single_fetchers_are_not_found_across_tenants(world, fleet, gql) -> None:
    b1 = {
        "ManagedComputer": fleet.computer("B1-Default").id,
        "BackupJob": fleet.jobs[("B1", BackupJobKind.VBR_BACKUP, False)].id,
        "BackupServer": next(s.id for (o, _), s in fleet.servers.items() if o == "B1"),
        "BackupAgent": (await fleet.computer("B1-Default").agent).id,  # type: ignore[attr-defined]
        "BackupJobSession": fleet.sessions["B1"].id,
        "RestorePoint": fleet.restore_points["B1-Default"].id,
    }
    r1 = world.token("R1", "Service Provider Administrator")
    r2 = world.token("R2", "Service Provider Administrator")
    for type_name, pk in b1.items():
        body = await gql(NODE, {"id": gid(type_name, pk)}, token=r1)
        assert code(body) == "NOT_FOUND", type_name
        body = await gql(NODE, {"id": gid(type_name, pk)}, token=r2)
        assert body["data"]["node"]["id"] == gid(type_name, pk), (type_name, body)
    singles = {
        "managedComputer": "ManagedComputer",
        "backupJob": "BackupJob",
        "backupServer": "BackupServer",
    }
    for field, type_name in singles.items():
        query = f"query($id: ID!) {{ {field}(id: $id) {{ id }} }}"
        body = await gql(query, {"id": gid(type_name, b1[type_name])}, token=r1)
        assert code(body) == "NOT_FOUND", field
        body = await gql(query, {"id": gid(type_name, b1[type_name])}, token=r2)
        assert body["data"][field] == {"id": gid(type_name, b1[type_name])}
    query = "query($id: ID!) { restorePoints(computerId: $id) { nodes { uid } } }"
    body = await gql(query, {"id": gid("ManagedComputer", b1["ManagedComputer"])}, token=r1)
    assert code(body) == "NOT_FOUND"
    body = await gql(query, {"id": gid("ManagedComputer", b1["ManagedComputer"])}, token=r2)
    assert body["data"]["restorePoints"]["nodes"] == [{"uid": "B1-Default-location-rp1"}]
    # Inside the company, a Location User does not reach another location's computer.
    east_user = world.token("A1", "Location User")
    default_pc = fleet.computer("A1-Default")
    body = await gql(NODE, {"id": gid("ManagedComputer", default_pc.id)}, token=east_user)
    assert code(body) == "NOT_FOUND"
    # A kind the owner may read is found by id (the Department Portal test checks the other way).
    pc_job = fleet.jobs[("A1", BackupJobKind.PUBLIC_CLOUD_POLICY, False)]
    body = await gql(NODE, {"id": gid("BackupJob", pc_job.id)}, token=world.token("A1", OWNER))
    assert body["data"]["node"]["name"] == "A1-PUBLIC_CLOUD_POLICY"
    # Subtenant: its own agent by node, not the company's other agents; no computers at all.
    sub = world.token("A1", "Subtenant")
    own_agent = await fleet.subtenant_computers["A1:own"].agent  # type: ignore[attr-defined]
    other_agent = await fleet.computer("A1-Default").agent  # type: ignore[attr-defined]
    body = await gql(NODE, {"id": gid("BackupAgent", own_agent.id)}, token=sub)
    assert body["data"]["node"]["version"] == "6.3.0"
    body = await gql(NODE, {"id": gid("BackupAgent", other_agent.id)}, token=sub)
    assert code(body) == "NOT_FOUND"
    body = await gql(NODE, {"id": gid("ManagedComputer", own_agent.computer_id)}, token=sub)
    assert code(body) == "FORBIDDEN"


NESTED = """query($first: Int) { managedComputers(first: $first) { nodes {
  hostname agent { version } backupJobs { name sessions(latest: 2) { uid } }
  restorePoints(latest: 3) { uid } } } }"""


async def test_nested_relations_and_constant_query_count(world, fleet, gql) -> None:
    token = world.token("Provider", "Service Provider Global Administrator")
    body = await gql(NESTED, {"first": 2}, token=token)  # warm-up: authentication cached
    counts = {}
    for first in (1, 3, 9):
        with count_queries() as queries:
            body = await gql(NESTED, {"first": first}, token=token)
        assert "errors" not in body, body
        assert len(body["data"]["managedComputers"]["nodes"]) == first
        counts[first] = queries.count
    # The session token, then the page, agents, jobs, latest session ids, sessions, latest
    # restore point ids, restore points.
    assert counts == {1: 8, 3: 8, 9: 8}, (counts, str(queries))
    nodes = {n["hostname"].split(".")[0]: n for n in body["data"]["managedComputers"]["nodes"]}
    assert nodes["A1-Default-location"] == {
        "hostname": "A1-Default-location.example.test",
        "agent": {"version": "6.3.0"},
        "backupJobs": [
            {
                "name": "A1-Default-location-agent",
                "sessions": [{"uid": "A1-Default-location-agent-s1"}],
            },
            {"name": "A1-assigned", "sessions": []},
        ],
        "restorePoints": [{"uid": "A1-Default-location-rp1"}],
    }
    # Latest N per computer, newest first.
    pc = fleet.computer("A1-East")
    for i in range(4):
        await RestorePoint.create(
            computer=pc,
            uid=f"east-{i}",
            company_id=pc.company_id,
            created_at=NOW + timedelta(hours=i),  # type: ignore[attr-defined]
        )
    query = """query($f: ManagedComputerFilter) { managedComputers(filter: $f) { nodes {
      restorePoints(latest: 3) { uid } } } }"""
    body = await gql(query, {"f": {"search": "A1-East"}}, token=token)
    assert body["data"]["managedComputers"]["nodes"] == [
        {"restorePoints": [{"uid": "east-3"}, {"uid": "east-2"}, {"uid": "east-1"}]}
    ]
    body = await gql(
        "{ managedComputers(first: 1) { nodes { restorePoints(latest: 0) { uid } } } }",
        token=token,
    )
    assert code(body) == "BAD_USER_INPUT"


async def test_nested_relations_follow_their_own_capabilities(world, fleet, gql) -> None:
    # A Location User reads agents and jobs (Read); the Public Clouds kind is N/A for them but
    # agent jobs are not. Their computer's nested relations come back.
    body = await gql(NESTED, {"first": 5}, token=world.token("A1", "Location User"))
    node = body["data"]["managedComputers"]["nodes"][0]
    assert node["agent"] == {"version": "6.3.0"}
    assert [j["name"] for j in node["backupJobs"]] == ["A1-East-agent"]


async def test_department_portal_reads_its_rows(db, gql, use_settings) -> None:
    use_settings(edition="enterprise")
    world = await build_world()
    fleet = await build_fleet(world)
    token = world.token("A1", "Department Owner")
    body = await gql(COMPUTERS, {}, token=token)
    assert hostnames(body) == ["A1-Default-location", "A1-East", "A1-own"]
    body = await gql(JOBS, token=token)
    # The Department Portal has no Public Clouds or Microsoft 365 rows: 9 jobs less those two.
    assert sorted(n["kind"] for n in body["data"]["backupJobs"]["nodes"]) == [
        "AGENT",
        "AGENT",
        "AGENT",
        "AGENT",
        "BACKUP_COPY",
        "REPLICATION",
        "VBR_BACKUP",
    ]
    body = await gql(SERVERS, token=token)
    assert [n["kind"] for n in body["data"]["backupServers"]["nodes"]] == ["BACKUP_AND_REPLICATION"]
    pc_job = fleet.jobs[("A1", BackupJobKind.PUBLIC_CLOUD_POLICY, False)]
    body = await gql(NODE, {"id": gid("BackupJob", pc_job.id)}, token=token)
    assert code(body) == "NOT_FOUND"
    body = await gql(COMPUTERS, {}, token=world.token("A1", "Department User"))
    assert hostnames(body) == ["A1-East"]
    body = await gql(COMPUTERS, {}, token=world.token("A1", "Chargeback Auditor"))
    assert code(body) == "FORBIDDEN"


async def test_location_with_workloads_cannot_be_removed(world, fleet, gql) -> None:
    east = world.locations["A1-East"]
    # Users limited to the location are checked first by tenancy; free them.
    user = world.user("A1", "Location User")
    await user.scope_locations.clear()
    for u in (world.user("A1", "Location Administrator"),):
        await u.scope_locations.clear()
    mutation = "mutation($id: ID!) { locationDelete(id: $id) { deletedId } }"
    token = world.token("A1", OWNER)
    body = await gql(mutation, {"id": gid("Location", east.id)}, token=token)
    assert code(body) == "CONFLICT", body
    assert body["errors"][0]["message"] == (
        "the location still holds 1 managed computers, 1 backup jobs: move or remove them first"
    )
    await ManagedComputer.filter(location_id=east.id).delete()
    body = await gql(mutation, {"id": gid("Location", east.id)}, token=token)
    assert body["data"]["locationDelete"]["deletedId"] == gid("Location", east.id), body
    assert not await Location.filter(id=east.id).exists()
