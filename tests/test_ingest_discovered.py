"""One machine, one managed computer: an agent's report claims the computer a discovery rule
registered for it (hostname case-insensitively, an address in common; `computer_match`), a run
that finds a computer an agent reported registers nothing new, ambiguous matches bind nothing,
and the claim keeps ingestion idempotent and its statement count constant."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from app.integrations.backup_agents import FoundHost
from app.models import AgentKey, BackupAgent, BackupJob, DiscoveryRule, ManagedComputer
from app.models.operations import DiscoveryKind
from app.services import discovery, ingestion
from tests.conftest import ON_POSTGRES
from tests.factories import World
from tests.querycount import count_queries

DAY = "2026-03-01"


async def make_key(world: World, location: str = "A1-Default") -> AgentKey:
    """A key of A1 whose new computers land in `location` (its secret is not needed here)."""
    return await AgentKey.create(
        company=world.orgs["A1"],
        location=world.locations[location],
        name=f"key {location}",
        prefix=f"p{len(location)}{location[-4:]}",
        key_hash="0" * 64,
    )


async def make_rule(world: World, name: str, location: str = "A1-East") -> DiscoveryRule:
    return await DiscoveryRule.create(
        company=world.orgs["A1"],
        location=world.locations[location],
        name=name,
        kind=DiscoveryKind.NETWORK_SCAN,
        ranges=["10.0.1.0/24"],
    )


def report(*computers: dict[str, Any], day: str = DAY) -> dict[str, Any]:
    """The computers with an agent, an agent job and a heartbeat each."""
    return {
        "reportedAt": f"{day}T12:00:00Z",
        "computers": list(computers),
        "agents": [
            {"computer": c["uid"], "platform": "WINDOWS", "edition": "SERVER", "version": "6.1"}
            for c in computers
        ],
        "jobs": [
            {"uid": f"{c['uid']}-job", "kind": "AGENT", "name": "daily", "computer": c["uid"]}
            for c in computers
        ],
        "heartbeats": [
            {"computer": c["uid"], "at": f"{day}T11:59:00Z", "status": "HEALTHY"} for c in computers
        ],
    }


def pc(uid: str, hostname: str, *addresses: str) -> dict[str, Any]:
    return {
        "uid": uid,
        "hostname": hostname,
        "osFamily": "WINDOWS",
        "osName": "Windows Server 2025",
        "ipAddresses": list(addresses),
    }


async def snapshot() -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in await ManagedComputer.all()
        .order_by("id")
        .values_list(
            "id",
            "uid",
            "hostname",
            "location_id",
            "ip_addresses",
            "discovered_by_id",
            "agent_status",
            "updated_at",
        )
    ]


async def test_an_agent_report_claims_the_discovered_computer(world: World) -> None:
    rule = await make_rule(world, "LAN")
    assert await discovery.register_hosts(
        rule, [FoundHost("10.0.1.20", "WS-20.corp.example", "WINDOWS", "Windows 11")]
    ) == (1, 0)
    found = await ManagedComputer.get(uid="discovered:10.0.1.20")

    key = await make_key(world)  # new computers land in A1-Default; the rule scans A1-East
    batch = report(pc("agent-20", "ws-20.CORP.example", "10.0.1.20", "fe80::20"))
    result = await ingestion.ingest(key, copy.deepcopy(batch))
    assert result.rejected == []
    computer = await ManagedComputer.get(company_id=world.orgs["A1"].id)  # the one computer
    assert computer.id == found.id
    assert (computer.uid, computer.hostname, computer.ip_addresses) == (
        "agent-20",
        "ws-20.CORP.example",
        ["10.0.1.20", "fe80::20"],
    )
    assert (computer.discovered_by_id, computer.location_id) == (  # type: ignore[attr-defined]
        rule.id,
        world.locations["A1-East"].id,
    )
    assert (computer.os_name, computer.agent_status.value) == ("Windows Server 2025", "HEALTHY")
    assert (await BackupAgent.get(computer_id=computer.id)).version == "6.1"
    job = await BackupJob.get(uid="agent-20-job")
    placed = (job.computer_id, job.location_id)  # type: ignore[attr-defined]
    assert placed == (computer.id, computer.location_id)  # type: ignore[attr-defined]

    # The same batch again changes nothing; from now on the computer is matched by its uid.
    before = await snapshot()
    await ingestion.ingest(key, copy.deepcopy(batch))
    assert await snapshot() == before
    # The rule finds it again: known, nothing registered.
    found_again = FoundHost("10.0.1.20", "WS-20.corp.example", "WINDOWS", "Windows 11")
    assert await discovery.register_hosts(rule, [found_again]) == (0, 1)
    assert await snapshot() == before


async def test_a_run_registers_no_computer_an_agent_reported(world: World) -> None:
    key = await make_key(world, "A1-East")
    await ingestion.ingest(
        key,
        report(
            pc("pc-1", "PC1.corp.example", "10.0.1.5"),
            pc("pc-2", "pc2", "10.0.1.6"),
            pc("pc-3", "pc3", "10.0.1.7"),
        ),
    )
    other = await make_key(world, "A1-Default")
    await ingestion.ingest(other, report(pc("pc-9", "pc9", "10.0.1.9")))
    rule = await make_rule(world, "LAN")
    hosts = [
        FoundHost("10.0.1.50", "pc1.corp.example"),  # the hostname, at another address
        FoundHost("10.0.1.6", ""),  # the address, in the rule's location
        FoundHost("10.0.1.9", ""),  # the address, but pc-9 is in another location
        FoundHost("10.0.1.10", "new-10"),
    ]
    assert await discovery.register_hosts(rule, hosts) == (2, 2)
    rows = {c.uid: c for c in await ManagedComputer.all()}
    assert sorted(rows) == sorted(
        ["pc-1", "pc-2", "pc-3", "pc-9", "discovered:10.0.1.9", "discovered:10.0.1.10"]
    )
    # The reported computers it found are linked to it; the others are not.
    linked = {uid for uid, c in rows.items() if c.discovered_by_id == rule.id}
    assert linked == {"pc-1", "pc-2", "discovered:10.0.1.9", "discovered:10.0.1.10"}
    # A second rule finding pc-1 keeps the first link.
    second = await make_rule(world, "LAN again")
    assert await discovery.register_hosts(second, hosts[:1]) == (0, 1)
    first = await ManagedComputer.get(uid="pc-1")
    assert first.discovered_by_id == rule.id


async def test_ambiguous_matches_bind_nothing(world: World) -> None:
    network = await make_rule(world, "LAN")
    directory = await make_rule(world, "Domain")
    # The same machine registered by two rules: by address, and by directory entry.
    await discovery.register_hosts(network, [FoundHost("10.0.1.30", "ws-30")])
    await discovery.register_hosts(
        directory, [FoundHost("", "WS-30", dn="CN=WS-30,DC=corp,DC=example")]
    )
    await discovery.register_hosts(directory, [FoundHost("", "ws-31", dn="CN=WS-31")])
    await discovery.register_hosts(
        network, [FoundHost("10.0.1.31", "ws-31"), FoundHost("10.0.1.32", "ws-32")]
    )
    key = await make_key(world, "A1-East")
    # ws-30 by hostname alone: two candidates, nothing bound, a new computer as before.
    # ws-31 by hostname and address: one candidate (the network row), bound.
    # ws-32 claimed by two records of one batch: neither binds.
    result = await ingestion.ingest(
        key,
        report(
            pc("a-30", "ws-30", "192.168.0.30"),
            pc("a-31", "WS-31", "10.0.1.31"),
            pc("a-32", "ws-32"),
            pc("b-32", "WS-32"),
        ),
    )
    assert result.rejected == []
    rows = await ManagedComputer.all().order_by("id").values_list("uid", flat=True)
    assert sorted(rows) == sorted(
        [
            "discovered:10.0.1.30",
            "discovered:CN=WS-30,DC=corp,DC=example",
            "discovered:CN=WS-31",
            "a-31",  # was discovered:10.0.1.31
            "discovered:10.0.1.32",
            "a-30",
            "a-32",
            "b-32",
        ]
    )
    claimed = await ManagedComputer.get(uid="a-31")
    assert claimed.discovered_by_id == network.id
    # An address alone binds only in the key's location (private ranges repeat between sites).
    default_rule = await make_rule(world, "HQ", "A1-Default")
    await discovery.register_hosts(default_rule, [FoundHost("10.0.1.40", "")])
    await ingestion.ingest(key, report(pc("a-40", "srv40", "10.0.1.40")))
    assert await ManagedComputer.filter(uid__in=["a-40", "discovered:10.0.1.40"]).count() == 2
    home = await make_key(world, "A1-Default")
    await ingestion.ingest(home, report(pc("a-41", "srv41", "10.0.1.40")))
    bound = await ManagedComputer.get(uid="a-41")
    assert bound.discovered_by_id == default_rule.id
    assert not await ManagedComputer.exists(uid="discovered:10.0.1.40")


async def test_claims_keep_the_statement_count_constant(world: World) -> None:
    key = await make_key(world, "A1-East")
    rule = await make_rule(world, "LAN")

    async def claim(first: int, n: int) -> int:
        hosts = [
            FoundHost(f"10.0.{first + i // 200}.{i % 200}", f"ws-{first + i}") for i in range(n)
        ]
        await discovery.register_hosts(rule, hosts)
        batch = report(*(pc(f"agent-{first + i}", f"WS-{first + i}") for i in range(n)))
        with count_queries() as queries:
            result = await ingestion.ingest(key, batch)
        assert result.rejected == []
        assert await ManagedComputer.filter(uid__startswith="discovered:").count() == 0
        return queries.count

    small, large = await claim(0, 2), await claim(1000, 150)
    assert small == large, (small, large)
    # The claim costs one SELECT of the candidates, not one per record.
    assert await ManagedComputer.all().count() == 152


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_concurrent_reports_and_runs_make_one_computer(world: World) -> None:
    rule = await make_rule(world, "LAN")
    key = await make_key(world, "A1-East")
    batch = report(pc("agent-7", "ws-7", "10.0.1.7"))
    host = FoundHost("10.0.1.7", "ws-7")
    await asyncio.gather(
        *[ingestion.ingest(key, copy.deepcopy(batch)) for _ in range(3)],
        discovery.register_hosts(rule, [host]),
        discovery.register_hosts(rule, [host]),
    )
    rows = await ManagedComputer.all().values_list("uid", "discovered_by_id")
    assert rows == [("agent-7", rule.id)]
