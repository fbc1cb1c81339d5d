"""Ingestion end to end: `POST /ingest/v1/batch` with a key from `agentKeyCreate`, strict
per-record validation, idempotence, denormalised columns and rollups, Subtenant binding,
commands and acknowledgements, constant query count, and concurrent batches on PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import date
from typing import Any

import httpx
import pytest

from app.authz.capabilities import JOB_FUNCTIONALITY
from app.models import (
    BackupAgent,
    BackupJob,
    BackupJobSession,
    BackupServer,
    ManagedComputer,
    RestorePoint,
    SessionRollup,
)
from app.models.backups import JobRunState, PendingCommand, SessionResult
from app.models.cloud import (
    BackupResource,
    CloudRepository,
    Subtenant,
    TenantAccount,
    TenantAccountType,
)
from app.models.identity import User
from app.models.licensing import VeeamOneRecord
from tests.conftest import ON_POSTGRES
from tests.factories import World
from tests.querycount import count_queries

OWNER = "Company Owner"
AGENTS = JOB_FUNCTIONALITY["AGENT"].value
VBR = JOB_FUNCTIONALITY["VBR_BACKUP"].value
URL = "/ingest/v1/batch"
CREATE = """mutation($input: AgentKeyCreateInput!) {
  agentKeyCreate(input: $input) { secret agentKey { id prefix } } }"""


async def issue_key(gql, world: World, company: str = "A1") -> str:
    from tests.permission_cases import org_gid

    body = await gql(
        CREATE,
        {"input": {"companyId": org_gid(world.orgs[company]), "name": f"{company} server"}},
        token=world.token(company, OWNER),
    )
    assert "errors" not in body, body
    return body["data"]["agentKeyCreate"]["secret"]


async def post(client: httpx.AsyncClient, key: str, batch: Any) -> httpx.Response:
    return await client.post(URL, json=batch, headers={"Authorization": f"Bearer {key}"})


def fleet(sessions: int = 3, day: str = "2026-03-01") -> dict[str, Any]:
    """One B&R server, one Veeam ONE server, two computers with agents, an agent job per
    computer, a server job, `sessions` finished sessions of job-1, restore points, heartbeats."""
    return {
        "reportedAt": f"{day}T12:00:00Z",
        "servers": [
            {"uid": "srv-1", "kind": "BACKUP_AND_REPLICATION", "name": "vbr01", "version": "12.3"},
            {"uid": "one-1", "kind": "VEEAM_ONE", "name": "one01"},
        ],
        "computers": [
            {"uid": "pc-1", "hostname": "pc1", "osFamily": "WINDOWS", "ipAddresses": ["10.0.0.1"]},
            {"uid": "pc-2", "hostname": "pc2", "osFamily": "LINUX"},
        ],
        "agents": [
            {"computer": "pc-1", "platform": "WINDOWS", "edition": "SERVER", "version": "6.1"},
            {"computer": "pc-2", "platform": "LINUX", "edition": "WORKSTATION"},
        ],
        "jobs": [
            {"uid": "job-1", "kind": "AGENT", "name": "pc1 daily", "computer": "pc-1"},
            {"uid": "job-2", "kind": "AGENT", "name": "pc2 daily", "computer": "pc-2"},
            {
                "uid": "job-3",
                "kind": "VBR_BACKUP",
                "name": "VMs",
                "server": "srv-1",
                "schedule": "0 22 * * *",
            },
        ],
        "sessions": [
            {
                "uid": f"s-{n}",
                "job": "job-1",
                "result": "SUCCESS" if n % 3 else "FAILED",
                "startedAt": f"{day}T{n % 24:02d}:00:00Z",
                "endedAt": f"{day}T{n % 24:02d}:30:00Z",
                "processedBytes": 1000,
            }
            for n in range(sessions)
        ],
        "restorePoints": [
            {"uid": "rp-1", "computer": "pc-1", "job": "job-1", "createdAt": f"{day}T01:00:00Z"},
            {"uid": "rp-2", "computer": "pc-1", "job": "job-1", "createdAt": f"{day}T02:00:00Z"},
        ],
        "heartbeats": [
            {"computer": "pc-1", "at": f"{day}T11:59:00Z", "status": "HEALTHY"},
            {"server": "srv-1", "at": f"{day}T11:58:00Z", "status": "WARNING"},
        ],
        "veeamOne": [
            {
                "uid": "v-1",
                "server": "one-1",
                "objectName": "ds01",
                "metric": "free_space",
                "value": 12.5,
                "severity": "WARNING",
                "recordedAt": f"{day}T11:00:00Z",
            },
        ],
    }


async def counts() -> dict[str, int]:
    models = (
        BackupServer, ManagedComputer, BackupAgent, BackupJob, BackupJobSession, RestorePoint,
        VeeamOneRecord, SessionRollup,
    )  # fmt: skip
    return {m.__name__: await m.all().count() for m in models}


async def rollups() -> list[tuple[Any, ...]]:
    return list(
        await SessionRollup.all()
        .order_by("company_id", "location_id", "subtenant_id", "functionality", "day")
        .values_list(
            "company_id",
            "location_id",
            "subtenant_id",
            "functionality",
            "day",
            "success",
            "warning",
            "failed",
            "processed_bytes",
        )
    )


async def test_batch_end_to_end(client, gql, world: World):
    key = await issue_key(gql, world)
    resp = await post(client, key, fleet(sessions=3))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["rejected"] == []
    assert body["commands"] == []
    assert body["accepted"] == {
        "computers": 2, "agents": 2, "servers": 2, "jobs": 3, "sessions": 3,
        "restorePoints": 2, "heartbeats": 2, "veeamOne": 1, "acks": 0,
    }  # fmt: skip
    a1, location = world.orgs["A1"], world.locations["A1-Default"]
    pc1 = await ManagedComputer.get(company_id=a1.id, uid="pc-1")
    assert pc1.location_id == location.id  # type: ignore[attr-defined]
    assert pc1.ip_addresses == ["10.0.0.1"]
    assert pc1.restore_point_count == 2
    assert pc1.last_restore_point_at is not None
    assert pc1.last_restore_point_at.isoformat() == "2026-03-01T02:00:00+00:00"
    assert pc1.last_heartbeat_at is not None and pc1.agent_status.value == "HEALTHY"
    server = await BackupServer.get(uid="srv-1")
    assert server.status.value == "WARNING"
    job1 = await BackupJob.get(uid="job-1")
    assert job1.functionality == AGENTS
    assert job1.computer_id == pc1.id  # type: ignore[attr-defined]
    # The newest session (s-2, 02:00, SUCCESS) is the job's last run.
    assert job1.last_result is SessionResult.SUCCESS and job1.run_state is JobRunState.IDLE
    assert job1.last_run_at is not None and job1.last_run_at.hour == 2
    job3 = await BackupJob.get(uid="job-3")
    assert job3.functionality == VBR and job3.schedule == "0 22 * * *"
    session = await BackupJobSession.get(uid="s-0")
    assert (session.company_id, session.location_id, session.computer_id) == (
        a1.id,
        location.id,
        pc1.id,
    )
    assert session.functionality == AGENTS and session.subtenant_id is None
    assert await rollups() == [(a1.id, location.id, 0, AGENTS, date(2026, 3, 1), 2, 0, 1, 3000)]
    record = await VeeamOneRecord.get(uid="v-1")
    assert record.value == 12.5 and record.location_id == location.id


async def test_same_batch_twice_changes_nothing(client, gql, world: World):
    key = await issue_key(gql, world)
    batch = fleet(sessions=20)
    first = await post(client, key, batch)
    assert first.status_code == 200 and first.json()["rejected"] == []
    before_counts, before_rollups = await counts(), await rollups()
    computers = await ManagedComputer.all().order_by("id").values()
    jobs = await BackupJob.all().order_by("id").values()
    second = await post(client, key, batch)
    assert second.json() == first.json()
    assert await counts() == before_counts
    assert before_counts["BackupJobSession"] == 20 and before_counts["SessionRollup"] == 1
    assert await rollups() == before_rollups
    # Not even updated_at moved: the second batch wrote nothing.
    assert await ManagedComputer.all().order_by("id").values() == computers
    assert await BackupJob.all().order_by("id").values() == jobs


async def test_bad_records_rejected_with_reasons_good_ones_kept(client, gql, world: World):
    key = await issue_key(gql, world)
    batch = fleet(sessions=2)
    batch["computers"].append({"uid": "pc-3"})  # no hostname
    batch["computers"].append({"uid": "pc-1", "hostname": "again"})  # repeats pc-1
    batch["jobs"].append({"uid": "job-4", "kind": "AGENT", "name": "x", "server": "srv-1"})
    batch["jobs"].append({"uid": "job-5", "kind": "AGENT", "name": "x", "computer": "pc-3"})
    batch["jobs"].append({"uid": "job-6", "kind": "MICROSOFT_365", "name": "m", "server": "srv-1"})
    batch["sessions"] += [
        {"uid": "s-x", "job": "job-9", "startedAt": "2026-03-01T00:00:00Z"},
        {"uid": "s-y", "job": "job-1", "startedAt": "2026-03-01T00:00:00"},
        {"uid": "s-z", "job": "job-1", "result": "SUCCESS", "startedAt": "2026-03-01T05:00:00Z",
         "endedAt": "2026-03-01T04:00:00Z"},
        {"uid": "s-w", "job": "job-1", "startedAt": "2026-03-01T00:00:00Z", "colour": "red"},
        {"uid": "s-v", "job": "job-5", "startedAt": "2026-03-01T00:00:00Z"},
        {"uid": "s-u", "job": "job-1", "startedAt": "2026-03-01T00:00:00Z", "warnings": -1},
    ]  # fmt: skip
    batch["restorePoints"].append(
        {"uid": "rp-9", "computer": "pc-9", "createdAt": "2026-03-01T00:00:00Z"}
    )
    batch["veeamOne"].append(
        {
            "uid": "v-2",
            "server": "srv-1",
            "objectName": "o",
            "metric": "m",
            "recordedAt": "2026-03-01T00:00:00Z",
        }
    )
    resp = await post(client, key, batch)
    assert resp.status_code == 200
    body = resp.json()
    rejected = [(r["list"], r["index"], r["uid"], r["reason"]) for r in body["rejected"]]
    assert rejected == [
        ("computers", 2, "pc-3", "'hostname' is required"),
        ("computers", 3, "pc-1", "repeats record 0 of 'computers'"),
        ("jobs", 3, "job-4", "an AGENT job names its 'computer' (and no 'server')"),
        ("jobs", 4, "job-5", "unknown computer 'pc-3'"),
        ("jobs", 5, "job-6", "a MICROSOFT_365 job does not run on a BACKUP_AND_REPLICATION server"),
        ("sessions", 2, "s-x", "unknown job 'job-9'"),
        ("sessions", 3, "s-y", "'startedAt' needs a time zone (e.g. 'Z')"),
        ("sessions", 4, "s-z", "'endedAt' is before 'startedAt'"),
        ("sessions", 5, "s-w", "unknown field 'colour'"),
        ("sessions", 6, "s-v", "unknown job 'job-5'"),
        ("sessions", 7, "s-u", "'warnings' must be between 0 and 2147483647"),
        ("restorePoints", 2, "rp-9", "unknown computer 'pc-9'"),
        ("veeamOne", 1, "v-2", "server 'srv-1' is not a VEEAM_ONE server"),
    ]
    assert body["accepted"]["computers"] == 2 and body["accepted"]["sessions"] == 2
    assert body["accepted"]["jobs"] == 3
    assert await ManagedComputer.all().count() == 2
    assert sorted(await BackupJob.all().values_list("uid", flat=True)) == [
        "job-1",
        "job-2",
        "job-3",
    ]
    assert sorted(await BackupJobSession.all().values_list("uid", flat=True)) == ["s-0", "s-1"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"reportedAt": "2026-03-01T00:00:00Z", "sessions": {}}', "sessions"),
        (b'{"sessions": []}', "reportedAt"),
        (b'{"reportedAt": "yesterday"}', "reportedAt"),
        (b'{"reportedAt": "2026-03-01T00:00:00Z", "alarms": []}', "alarms"),
    ],
)
async def test_wrong_shape_is_bad_input_and_writes_nothing(client, gql, world: World, body, field):
    key = await issue_key(gql, world)
    resp = await client.post(URL, content=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 400
    assert resp.json()["code"] == "BAD_USER_INPUT"
    assert resp.json().get("field") == field


async def test_more_than_the_limit_is_refused_whole(client, gql, world: World):
    key = await issue_key(gql, world)
    batch = {
        "reportedAt": "2026-03-01T00:00:00Z",
        "computers": [{"uid": f"pc-{n}", "hostname": f"h{n}"} for n in range(1001)],
    }
    resp = await post(client, key, batch)
    assert resp.status_code == 400
    assert resp.json() == {
        "code": "BAD_USER_INPUT",
        "message": "'computers' holds more than 1000 records",
        "field": "computers",
    }
    assert await ManagedComputer.all().count() == 0


@pytest.mark.parametrize(
    "header", [None, "Basic abc", "Bearer ", "Bearer tna_nope_nope", "Bearer tnts_x"]
)
async def test_without_a_valid_key_401(client, db, header):
    headers = {"Authorization": header} if header else {}
    resp = await client.post(URL, json=fleet(), headers=headers)
    assert resp.status_code == 401
    assert resp.json()["code"] == "UNAUTHENTICATED"
    assert await ManagedComputer.all().count() == 0


async def test_revoked_key_401_and_disabled_company_403(client, gql, world: World):
    key = await issue_key(gql, world)
    assert (await post(client, key, fleet(sessions=0))).status_code == 200
    world.orgs["R1"].enabled = False  # A1's reseller
    await world.orgs["R1"].save()
    resp = await post(client, key, fleet(sessions=0))
    assert resp.status_code == 403 and resp.json()["code"] == "FORBIDDEN"
    world.orgs["R1"].enabled = True
    await world.orgs["R1"].save()
    listing = await gql("{ agentKeys { nodes { id } } }", token=world.token("A1", OWNER))
    key_id = listing["data"]["agentKeys"]["nodes"][0]["id"]
    revoked = await gql(
        "mutation($id: ID!) { agentKeyRevoke(id: $id) { active } }",
        {"id": key_id},
        token=world.token("A1", OWNER),
    )
    assert revoked["data"]["agentKeyRevoke"]["active"] is False
    resp = await post(client, key, fleet(sessions=0))
    assert resp.status_code == 401 and resp.json()["code"] == "UNAUTHENTICATED"


async def test_a_key_writes_only_into_its_own_company(client, gql, world: World):
    key_a, key_b = await issue_key(gql, world, "A1"), await issue_key(gql, world, "B1")
    assert (await post(client, key_a, fleet(sessions=2))).json()["rejected"] == []
    # B1 reports sessions of "job-1": A1's job of that uid is not B1's.
    resp = await post(
        client,
        key_b,
        {
            "reportedAt": "2026-03-01T12:00:00Z",
            "sessions": [{"uid": "s-9", "job": "job-1", "startedAt": "2026-03-01T00:00:00Z"}],
            "acks": [{"job": "job-1", "command": "START"}],
        },
    )
    assert [r["reason"] for r in resp.json()["rejected"]] == [
        "unknown job 'job-1'",
        "unknown job 'job-1'",
    ]
    # The same uids reported by B1 are B1's own rows, A1's stay untouched.
    assert (await post(client, key_b, fleet(sessions=1))).json()["rejected"] == []
    a1, b1 = world.orgs["A1"], world.orgs["B1"]
    assert await ManagedComputer.filter(uid="pc-1").count() == 2
    assert await BackupJobSession.filter(company_id=a1.id).count() == 2
    assert await BackupJobSession.filter(company_id=b1.id).count() == 1
    b1_job = await BackupJob.get(company_id=b1.id, uid="job-1")
    assert b1_job.location_id == world.locations["B1-Default"].id  # type: ignore[attr-defined]


async def _subtenant_setup(world: World) -> Subtenant:
    a1 = world.orgs["A1"]
    account = await TenantAccount.create(
        company=a1, name="a1-tenant", type=TenantAccountType.STANDALONE, password_hash="x"
    )
    repo = await CloudRepository.create(name="repo-1", capacity_gb=1000)
    resource = await BackupResource.create(tenant_account=account, repository=repo, quota_gb=100)
    user = await User.create(
        email="sub@example.test", name="sub", role="Subtenant", organization=a1, password_hash="x"
    )
    other = world.orgs["B1"]
    await TenantAccount.create(
        company=other, name="b1-tenant", type=TenantAccountType.STANDALONE, password_hash="x"
    )
    return await Subtenant.create(user=user, resource=resource)


async def test_agent_job_to_a_subtenant_binds_the_computer(client, gql, world: World):
    subtenant = await _subtenant_setup(world)
    key = await issue_key(gql, world)
    batch = fleet(sessions=1)
    cloud = {"kind": "CLOUD", "tenantAccount": "a1-tenant", "repository": "repo-1"}
    batch["jobs"][0]["target"] = {**cloud, "subtenant": "SUB@example.test", "name": "cloud"}
    batch["jobs"][1]["target"] = {**cloud, "subtenant": "nobody@example.test"}
    batch["jobs"].append(
        {"uid": "job-7", "kind": "AGENT", "name": "x", "computer": "pc-2",
         "target": {"kind": "CLOUD", "tenantAccount": "b1-tenant"}}
    )  # fmt: skip
    batch["jobs"].append(
        {"uid": "job-8", "kind": "AGENT", "name": "x", "computer": "pc-2",
         "target": {"kind": "CLOUD", "tenantAccount": "a1-tenant", "repository": "repo-2"}}
    )  # fmt: skip
    body = (await post(client, key, batch)).json()
    assert [(r["uid"], r["reason"]) for r in body["rejected"]] == [
        (
            "job-2",
            "no Subtenant 'nobody@example.test' under tenant account 'a1-tenant' on repository 'repo-1'",
        ),
        ("job-7", "tenant account 'b1-tenant' is not one of this company's"),
        ("job-8", "tenant account 'a1-tenant' has no backup resource on repository 'repo-2'"),
    ]
    job = await BackupJob.get(uid="job-1")
    assert job.target_subtenant_id == subtenant.id  # type: ignore[attr-defined]
    assert job.target_resource_id == subtenant.resource_id  # type: ignore[attr-defined]
    assert job.target_kind.value == "CLOUD" and job.target_name == "cloud"
    pc1 = await ManagedComputer.get(uid="pc-1")
    assert pc1.subtenant_id == subtenant.id  # type: ignore[attr-defined]
    assert (await BackupJobSession.get(uid="s-0")).subtenant_id == subtenant.id
    assert (await rollups())[0][2] == subtenant.id
    # The job moves to local storage: the computer is nobody's Subtenant's any more.
    later = fleet(sessions=0, day="2026-03-02")
    later["jobs"] = later["jobs"][:1]
    assert (await post(client, key, later)).json()["rejected"] == []
    assert (await ManagedComputer.get(uid="pc-1")).subtenant_id is None  # type: ignore[attr-defined]


async def test_commands_are_delivered_until_acknowledged(client, gql, world: World):
    key = await issue_key(gql, world)
    await post(client, key, fleet(sessions=0))
    await BackupJob.filter(uid="job-3").update(pending_command=PendingCommand.START)
    await BackupJob.filter(uid="job-1").update(pending_command=PendingCommand.STOP)
    empty = {"reportedAt": "2026-03-01T13:00:00Z"}
    body = (await post(client, key, empty)).json()
    assert body["commands"] == [
        {"job": "job-1", "command": "STOP"},
        {"job": "job-3", "command": "START"},
    ]
    # A stale acknowledgement (not the pending command) clears nothing.
    acks = {
        **empty,
        "acks": [{"job": "job-3", "command": "START"}, {"job": "job-1", "command": "RETRY"}],
    }
    body = (await post(client, key, acks)).json()
    assert body["accepted"]["acks"] == 2
    assert body["commands"] == [{"job": "job-1", "command": "STOP"}]
    assert (await BackupJob.get(uid="job-3")).pending_command is None
    body = (
        await post(client, key, {**empty, "acks": [{"job": "job-1", "command": "STOP"}]})
    ).json()
    assert body["commands"] == []


async def test_session_lifecycle_counts_once_in_the_rollup(client, gql, world: World):
    key = await issue_key(gql, world)
    await post(client, key, fleet(sessions=0))
    a1, loc = world.orgs["A1"], world.locations["A1-Default"].id

    async def report(at: str, **session: Any) -> None:
        s = {"uid": "run-1", "job": "job-3", "startedAt": "2026-03-01T22:00:00Z", **session}
        resp = await post(client, key, {"reportedAt": at, "sessions": [s]})
        assert resp.json()["rejected"] == [], resp.json()

    await report("2026-03-01T22:05:00Z", result="NONE")
    assert await rollups() == []
    job = await BackupJob.get(uid="job-3")
    assert job.run_state is JobRunState.RUNNING and job.last_result is SessionResult.NONE
    done = {"result": "SUCCESS", "endedAt": "2026-03-01T23:00:00Z", "processedBytes": 50}
    await report("2026-03-01T23:05:00Z", **done)
    expected = [(a1.id, loc, 0, VBR, date(2026, 3, 1), 1, 0, 0, 50)]
    assert await rollups() == expected
    await report("2026-03-01T23:10:00Z", **done)  # re-reported
    assert await rollups() == expected
    await report("2026-03-01T21:00:00Z", result="NONE")  # a late "running" report
    assert await rollups() == expected
    assert (await BackupJobSession.get(uid="run-1")).result is SessionResult.SUCCESS
    job = await BackupJob.get(uid="job-3")
    assert job.run_state is JobRunState.IDLE and job.last_result is SessionResult.SUCCESS
    # Corrected to FAILED: moved from one column to the other, not added.
    await report("2026-03-02T08:00:00Z", **{**done, "result": "FAILED", "processedBytes": 20})
    assert await rollups() == [(a1.id, loc, 0, VBR, date(2026, 3, 1), 0, 0, 1, 20)]
    assert (await BackupJob.get(uid="job-3")).last_result is SessionResult.FAILED


async def test_older_reports_do_not_turn_back_time(client, gql, world: World):
    key = await issue_key(gql, world)
    await post(client, key, fleet(sessions=0, day="2026-03-05"))
    old = fleet(sessions=0, day="2026-03-01")
    old["jobs"][2]["schedule"] = "0 1 * * *"
    old["computers"][0]["hostname"] = "renamed"
    resp = await post(client, key, old)
    assert resp.json()["rejected"] == []
    assert (await BackupJob.get(uid="job-3")).schedule == "0 22 * * *"
    pc1 = await ManagedComputer.get(uid="pc-1")
    assert pc1.hostname == "pc1"  # the rename came in the older report
    assert pc1.last_heartbeat_at is not None and pc1.last_heartbeat_at.day == 5
    assert pc1.last_restore_point_at is not None and pc1.last_restore_point_at.day == 5
    # Restore points are facts, not state: the old ones are added all the same.
    assert pc1.restore_point_count == 2 and await RestorePoint.all().count() == 2


async def test_existing_job_keeps_the_consoles_assignment(client, gql, world: World):
    key = await issue_key(gql, world)
    await post(client, key, fleet(sessions=0))
    await BackupJob.filter(uid="job-3").update(assigned_by_provider=True)
    later = fleet(sessions=0, day="2026-03-02")
    later["jobs"][2]["assignedByProvider"] = False
    later["jobs"][0]["assignedByProvider"] = True
    await post(client, key, later)
    assert (await BackupJob.get(uid="job-3")).assigned_by_provider is True
    assert (await BackupJob.get(uid="job-1")).assigned_by_provider is False


async def test_query_count_does_not_grow_with_the_batch(client, gql, world: World):
    key = await issue_key(gql, world)
    # The inventory as the batches below report it; the key's last_used_at is fresh now.
    await post(client, key, fleet(sessions=0, day="2026-03-02"))

    def batch(first: int, n: int, result: str) -> dict[str, Any]:
        b = fleet(sessions=0, day="2026-03-02")
        b["sessions"] = [
            {"uid": f"q-{i}", "job": f"job-{1 + i % 3}", "result": result,
             "startedAt": "2026-03-02T01:00:00Z", "endedAt": "2026-03-02T02:00:00Z"}
            for i in range(first, first + n)
        ]  # fmt: skip
        b["restorePoints"] = [
            {"uid": f"r-{i}", "computer": "pc-1", "createdAt": "2026-03-02T01:00:00Z"}
            for i in range(first, first + n)
        ]
        return b

    seen = []
    for first, n in ((0, 5), (100, 300)):
        with count_queries() as queries:
            resp = await post(client, key, batch(first, n, "SUCCESS"))
        assert resp.json()["accepted"]["sessions"] == n
        seen.append(queries.count)
        with count_queries() as queries:  # the same sessions, now failed: updates
            resp = await post(client, key, batch(first, n, "FAILED"))
        seen.append(queries.count)
    assert seen[0] == seen[2] and seen[1] == seen[3], seen
    assert seen[0] <= 30, seen


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_concurrent_identical_batches_write_once(client, gql, world: World):
    key = await issue_key(gql, world)
    batch = fleet(sessions=200)
    responses = await asyncio.gather(*[post(client, key, copy.deepcopy(batch)) for _ in range(4)])
    assert [r.status_code for r in responses] == [200] * 4
    assert all(r.json()["rejected"] == [] for r in responses)
    assert await BackupJobSession.all().count() == 200
    assert await ManagedComputer.all().count() == 2
    a1, loc = world.orgs["A1"].id, world.locations["A1-Default"].id
    failed = len([n for n in range(200) if n % 3 == 0])
    assert await rollups() == [
        (a1, loc, 0, AGENTS, date(2026, 3, 1), 200 - failed, 0, failed, 200_000)
    ]
    assert (await ManagedComputer.get(uid="pc-1")).restore_point_count == 2


async def test_body_over_the_limit_is_refused_by_the_middleware(
    client, gql, world: World, settings
):
    key = await issue_key(gql, world)
    batch = fleet(sessions=1000)  # a valid shape, padded past the limit
    for session in batch["sessions"]:
        session["messages"] = ["m" * 300] * 4
    body = json.dumps(batch).encode()
    assert len(body) > settings.max_body_bytes
    resp = await client.post(URL, content=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 413
    assert resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await ManagedComputer.all().count() == 0
