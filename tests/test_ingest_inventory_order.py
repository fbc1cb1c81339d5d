"""A computer renamed (or moved to other addresses), a backup server upgraded, an agent given
another policy are not turned back when an older batch is delivered late (a retry, a queue
replay): managed computers, backup servers and backup agents keep the `reportedAt` of the batch
that last wrote them, as sessions do (`tests/test_ingest_corrections.py`). The same time is
applied (the last delivered wins); a newer batch with the same values only moves the time;
rows without a time take the next report; a discovered computer is still claimed; heartbeats
keep their own time; and the statement count does not grow with the inventory."""

from __future__ import annotations

from typing import Any

import httpx

from app.integrations.backup_agents import FoundHost
from app.models import BackupAgent, BackupServer, ManagedComputer
from app.models.inventory import AgentStatus
from app.services import discovery, ingestion
from tests.factories import World
from tests.querycount import count_queries
from tests.test_ingest_corrections import at, send
from tests.test_ingest_discovered import make_key, make_rule, pc
from tests.test_ingestion import issue_key

T0, T1, T2, T3 = (
    "2026-03-02T07:00:00Z",
    "2026-03-02T08:00:00Z",
    "2026-03-02T09:00:00Z",
    "2026-03-02T10:00:00Z",
)
TABLES = ("managed_computers", "backup_servers", "backup_agents")


def inventory(
    n: int = 1, name: str = "sql", version: str = "12.1", policy: str = "daily", prefix: str = ""
) -> dict[str, list[dict[str, Any]]]:
    """`n` computers with an agent each, and `n` backup servers; `name`, `version` and `policy`
    stand for what a report may change."""
    return {
        "computers": [
            {"uid": f"{prefix}pc-{i}", "hostname": f"{name}{i}", "osFamily": "WINDOWS",
             "osName": f"Windows Server {version}", "ipAddresses": [f"10.1.{i // 200}.{i % 200 + 1}"]}
            for i in range(n)
        ],
        "servers": [
            {"uid": f"{prefix}srv-{i}", "kind": "BACKUP_AND_REPLICATION", "name": f"{name}-vbr{i}",
             "version": version}
            for i in range(n)
        ],
        "agents": [
            {"computer": f"{prefix}pc-{i}", "platform": "WINDOWS", "edition": "SERVER",
             "version": version, "policy": policy}
            for i in range(n)
        ],
    }  # fmt: skip


RENAMED = {"name": "sql-new", "version": "12.3", "policy": "hourly"}


async def state() -> tuple[list[dict[str, Any]], ...]:
    """Every inventory row as stored, all columns."""
    out = []
    for model in (ManagedComputer, BackupServer, BackupAgent):
        out.append(list(await model.all().order_by("id").values()))
    return tuple(out)


def without_times(rows: tuple[list[dict[str, Any]], ...]) -> tuple[list[dict[str, Any]], ...]:
    return tuple([{**r, "reported_at": None, "updated_at": None} for r in t] for t in rows)


async def stored() -> tuple[str, str, str, str]:
    """The computer's hostname and OS, the server's version, the agent's policy."""
    computer = await ManagedComputer.get(uid="pc-0")
    server = await BackupServer.get(uid="srv-0")
    agent = await BackupAgent.get(computer_id=computer.id)
    return computer.hostname, computer.os_name, server.version, agent.policy


async def report_times() -> set[Any]:
    return {row["reported_at"] for rows in await state() for row in rows}


def writes(statements: list[str]) -> list[str]:
    """The INSERTs and UPDATEs of the inventory tables among `statements`."""
    return [
        s
        for s in statements
        if s.lstrip().upper().startswith(("UPDATE", "INSERT")) and any(t in s for t in TABLES)
    ]


async def test_an_older_batch_does_not_turn_back_a_rename(client: httpx.AsyncClient, gql, world):
    key = await issue_key(gql, world)
    await send(client, key, T1, **inventory())
    await send(client, key, T2, **inventory(**RENAMED))
    before = await state()
    assert await stored() == ("sql-new0", "Windows Server 12.3", "12.3", "hourly")

    # The T1 batch again, late: accepted, and nothing changes, not even the report times.
    with count_queries() as queries:
        await send(client, key, T1, **inventory())
    assert await state() == before
    assert await report_times() == {at(T2)}
    assert writes(queries.statements) == []


async def test_older_then_newer_is_applied(client: httpx.AsyncClient, gql, world: World):
    key = await issue_key(gql, world)
    await send(client, key, T1, **inventory())
    assert await stored() == ("sql0", "Windows Server 12.1", "12.1", "daily")
    assert await report_times() == {at(T1)}
    await send(client, key, T2, **inventory(**RENAMED))
    assert await stored() == ("sql-new0", "Windows Server 12.3", "12.3", "hourly")
    assert await report_times() == {at(T2)}
    computer = await ManagedComputer.get(uid="pc-0")
    assert computer.ip_addresses == ["10.1.0.1"]


async def test_the_same_time_is_applied_the_last_delivered_wins(
    client: httpx.AsyncClient, gql, world: World
):
    key = await issue_key(gql, world)
    await send(client, key, T2, **inventory(**RENAMED))
    await send(client, key, T2, **inventory())
    assert await stored() == ("sql0", "Windows Server 12.1", "12.1", "daily")
    assert await report_times() == {at(T2)}


async def test_the_same_batch_twice_writes_nothing(client: httpx.AsyncClient, gql, world: World):
    key = await issue_key(gql, world)
    await send(client, key, T1, **inventory())
    await send(client, key, T2, **inventory(**RENAMED))
    before = await state()
    with count_queries() as queries:
        await send(client, key, T2, **inventory(**RENAMED))
    assert await state() == before
    assert writes(queries.statements) == []


async def test_a_confirmation_moves_the_report_time_only(
    client: httpx.AsyncClient, gql, world: World
):
    """A newer batch that reports the inventory as stored moves the report times (so a batch
    between the two cannot change it any more), and nothing else."""
    key = await issue_key(gql, world)
    await send(client, key, T1, **inventory())
    before = await state()
    await send(client, key, T3, **inventory())
    assert without_times(await state()) == without_times(before)
    assert await report_times() == {at(T3)}
    await send(client, key, T2, **inventory(**RENAMED))  # older than T3
    assert await stored() == ("sql0", "Windows Server 12.1", "12.1", "daily")
    assert await report_times() == {at(T3)}


async def test_rows_without_a_report_time_take_one_report(
    client: httpx.AsyncClient, gql, world: World
):
    """Rows stored before migration 0016 have no report time: the next report applies,
    whatever its time, and from then on an older one does not."""
    key = await issue_key(gql, world)
    await send(client, key, T3, **inventory())
    for model in (ManagedComputer, BackupServer, BackupAgent):
        await model.all().update(reported_at=None)
    await send(client, key, T1, **inventory(**RENAMED))
    assert await stored() == ("sql-new0", "Windows Server 12.3", "12.3", "hourly")
    assert await report_times() == {at(T1)}
    await send(client, key, T0, **inventory())
    assert await stored() == ("sql-new0", "Windows Server 12.3", "12.3", "hourly")
    assert await report_times() == {at(T1)}


async def test_a_discovered_computer_is_claimed_by_any_report(world: World):
    """A discovered computer has no report time: an agent's report claims it, however old,
    and stamps it; an older report afterwards does not rename it."""
    rule = await make_rule(world, "LAN")
    host = FoundHost("10.0.1.20", "ws-20", "WINDOWS", "Windows 11")
    assert await discovery.register_hosts(rule, [host]) == (1, 0)
    found = await ManagedComputer.get(uid="discovered:10.0.1.20")
    assert found.reported_at is None
    key = await make_key(world)

    def batch(reported_at: str, hostname: str) -> dict[str, Any]:
        return {"reportedAt": reported_at, "computers": [pc("agent-20", hostname, "10.0.1.20")]}

    result = await ingestion.ingest(key, batch("2020-01-01T00:00:00Z", "ws-20"))
    assert result.rejected == []
    claimed = await ManagedComputer.get(id=found.id)
    assert (claimed.uid, claimed.reported_at) == ("agent-20", at("2020-01-01T00:00:00Z"))
    await ingestion.ingest(key, batch("2019-12-31T00:00:00Z", "old-name"))
    assert (await ManagedComputer.get(id=found.id)).hostname == "ws-20"
    await ingestion.ingest(key, batch(T1, "ws-20-renamed"))
    renamed = await ManagedComputer.get(id=found.id)
    assert (renamed.hostname, renamed.reported_at) == ("ws-20-renamed", at(T1))
    assert await ManagedComputer.all().count() == 1


async def test_heartbeats_keep_their_own_time(client: httpx.AsyncClient, gql, world: World):
    """The newest heartbeat wins whatever the batch's time: a late batch still carries a
    heartbeat newer than the stored one, while its inventory is not applied."""
    key = await issue_key(gql, world)

    def beats(at_: str, status: str) -> list[dict[str, Any]]:
        return [
            {"computer": "pc-0", "at": at_, "status": status},
            {"server": "srv-0", "at": at_, "status": status},
        ]

    await send(client, key, T2, **inventory(**RENAMED), heartbeats=beats(T1, "HEALTHY"))
    await send(client, key, T1, **inventory(), heartbeats=beats(T2, "WARNING"))
    computer = await ManagedComputer.get(uid="pc-0")
    server = await BackupServer.get(uid="srv-0")
    assert (computer.hostname, server.version) == ("sql-new0", "12.3")
    for row in (computer, server):
        assert row.last_heartbeat_at == at(T2) and row.reported_at == at(T2)
    assert (computer.agent_status, server.status) == (AgentStatus.WARNING, AgentStatus.WARNING)
    await send(client, key, T3, heartbeats=beats(T0, "ERROR"))  # an older heartbeat
    assert (await ManagedComputer.get(uid="pc-0")).agent_status is AgentStatus.WARNING
    assert (await BackupServer.get(uid="srv-0")).last_heartbeat_at == at(T2)


async def test_statements_do_not_grow_with_the_inventory(
    client: httpx.AsyncClient, gql, world: World
):
    key = await issue_key(gql, world)
    await send(client, key, T0)  # the key's last use is fresh now (not written per batch)
    steps = (  # new rows, a rename, a late batch, the same batch again, a confirmation
        (T2, {"name": "a"}), (T3, {"name": "b", "version": "13"}), (T1, {"name": "c"}),
        (T3, {"name": "b", "version": "13"}), (T3.replace("10:", "11:"), {"name": "b", "version": "13"}),
    )  # fmt: skip
    seen: dict[int, list[int]] = {}
    for n in (5, 300):
        prefix = f"n{n}-"
        for step, (reported_at, values) in enumerate(steps):
            with count_queries() as queries:
                await send(client, key, reported_at, **inventory(n, prefix=prefix, **values))
            seen.setdefault(n, []).append(queries.count)
            if step in (2, 3):  # the late batch, the same batch again: nothing written
                assert writes(queries.statements) == [], step
        hostnames = await ManagedComputer.filter(uid__startswith=prefix).values_list(
            "hostname", flat=True
        )
        assert sorted(hostnames) == sorted(f"b{i}" for i in range(n))
        versions = await BackupAgent.filter(computer__uid__startswith=prefix).values_list(
            "version", flat=True
        )
        assert set(versions) == {"13"} and len(versions) == n
    assert seen[5] == seen[300], seen
