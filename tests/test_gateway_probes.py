"""Cloud gateway reachability probes against real sockets on 127.0.0.1: a listening port is
reachable, a bound port that does not listen refuses, a listener whose accept queue is full
never answers (the probe times out); results and audit entries of a sweep, the concurrency
bound seen in the kernel's own socket table, a constant statement count, the scheduled job
through the in-process broker, the cloudGatewayProbe mutation for every principal of the
world (the engine decides), and the "Cloud gateway unreachable" alarm raised by a failed
probe and resolved by a later successful one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.alarms import evaluation
from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.graphql.ids import to_global_id
from app.models import Alarm, AlarmStatus, AuditEntry, CloudGateway, Job, JobState
from app.services import cloud_gateways, gateway_probes
from app.services.actor import Actor
from app.services.gateway_probes import probe_address, probe_enabled
from tests.conftest import TEST_SETTINGS
from tests.querycount import count_queries
from workers.broker import setup
from workers.runtime import run_queued_inline
from workers.scheduler import Scheduler
from workers.schedules import GATEWAY_PROBES, default_schedules

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
GA = "Service Provider Global Administrator"
ADMIN = "Service Provider Administrator"
PROC_TCP = Path("/proc/net/tcp")
LINUX_TCP_TABLE = PROC_TCP.exists()


# --- real sockets ---------------------------------------------------------------------------


@asynccontextmanager
async def listening() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts and closes: its port answers."""

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextmanager
def refusing() -> Iterator[socket.socket]:
    """A port bound on 127.0.0.1 without listening (no one else gets it): connects refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


def syn_sent(port: int) -> int:
    """Sockets of this host in SYN_SENT towards 127.0.0.1:port (the kernel's table)."""
    count = 0
    for line in PROC_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "02" and int(fields[2].split(":")[1], 16) == port:
            count += 1
    return count


@contextmanager
def silent() -> Iterator[int]:
    """A listener with backlog 0 whose accept queue is full: further SYNs are dropped, so a
    connect hangs until the prober's timeout (Linux)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


async def gateway(name: str, port: int, **kw: Any) -> CloudGateway:
    return await CloudGateway.create(name=name, address="127.0.0.1", port=port, **kw)


# --- one probe ------------------------------------------------------------------------------


async def test_a_probe_tells_answering_refusing_silent_and_unresolvable_apart() -> None:
    async with listening() as port:
        up = await probe_address("127.0.0.1", port, 2)
    assert up.reachable and up.error == "" and up.latency_ms is not None and up.latency_ms >= 0
    with refusing() as sock:
        down = await probe_address("127.0.0.1", port_of(sock), 2)
    assert (down.reachable, down.latency_ms, down.error) == (False, None, "connection refused")
    if not LINUX_TCP_TABLE:
        pytest.skip("the silent listener relies on Linux dropping SYNs to a full accept queue")
    with silent() as port:
        hung = await probe_address("127.0.0.1", port, 0.2)
    assert (hung.reachable, hung.error) == (False, "no answer within 0.2 s")
    unknown = await probe_address("gateway.invalid", 6180, 5)
    assert not unknown.reachable
    assert unknown.error.startswith("cannot resolve gateway.invalid"), unknown.error


# --- sweeps ---------------------------------------------------------------------------------


async def test_a_sweep_stores_each_enabled_gateways_answer_and_audits_changes_only(world) -> None:
    provider = world.orgs["Provider"].id
    with refusing() as closed:
        async with listening() as port:
            up = await gateway("up", port)
            down = await gateway("down", port_of(closed))
            off = await gateway("off", port_of(closed), enabled=False)
            report = await probe_enabled(T0)
            assert (report.probed, report.reachable, report.unreachable) == (2, 1, 1)
            assert {(c["id"], c["was"], c["reachable"]) for c in report.changed} == {
                (up.id, None, True),
                (down.id, None, False),
            }
            rows = {g.id: g for g in await CloudGateway.all()}
            assert (rows[up.id].reachable, rows[up.id].last_probe_error) == (True, "")
            assert rows[up.id].last_probe_at == rows[up.id].last_reachable_at == T0
            assert rows[up.id].probe_latency_ms is not None
            assert (rows[down.id].reachable, rows[down.id].last_probe_error) == (
                False,
                "connection refused",
            )
            assert rows[down.id].last_probe_at == T0 and rows[down.id].last_reachable_at is None
            assert rows[down.id].probe_latency_ms is None
            # A disabled gateway is not probed.
            assert (rows[off.id].reachable, rows[off.id].last_probe_at) == (None, None)
            entries = await AuditEntry.filter(action="cloudGatewayReachability").order_by("id")
            assert [(e.object_id, e.organization_id, e.actor_id) for e in entries] == [
                (str(up.id), provider, None),
                (str(down.id), provider, None),
            ]
            assert entries[1].details["error"] == "connection refused"
            # The same answers again: stored, nothing audited.
            again = await probe_enabled(T0 + timedelta(minutes=1))
            assert again.changed == []
            assert await AuditEntry.filter(action="cloudGatewayReachability").count() == 2
            assert (await CloudGateway.get(id=down.id)).last_probe_at == T0 + timedelta(minutes=1)
        # The listener went away: "up" stops answering, keeps when it last answered.
        gone = await probe_enabled(T0 + timedelta(minutes=2))
    assert [(c["id"], c["was"], c["reachable"]) for c in gone.changed] == [(up.id, True, False)]
    row = await CloudGateway.get(id=up.id)
    assert (row.reachable, row.last_probe_error) == (False, "connection refused")
    assert row.last_reachable_at == T0 + timedelta(minutes=1)
    assert await AuditEntry.filter(action="cloudGatewayReachability").count() == 3


async def test_a_moved_or_re_enabled_gateway_is_unprobed_until_the_next_probe(world) -> None:
    actor = Actor(await principal_for_bearer(world.token("Provider", GA)))
    async with listening() as port:
        row = await gateway("gw", port)
        await probe_enabled(T0)
        await cloud_gateways.update_gateway(actor, row.id, cloud_gateways.GatewayInput(name="gw 2"))
        assert (await CloudGateway.get(id=row.id)).reachable is True  # a rename changes nothing
        await cloud_gateways.update_gateway(
            actor, row.id, cloud_gateways.GatewayInput(enabled=False)
        )
        assert (await CloudGateway.get(id=row.id)).reachable is True  # kept while disabled
        await cloud_gateways.update_gateway(
            actor, row.id, cloud_gateways.GatewayInput(enabled=True)
        )
        row = await CloudGateway.get(id=row.id)
        assert (row.reachable, row.last_probe_at, row.last_reachable_at) == (None, None, T0)
        await probe_enabled(T0)
        await cloud_gateways.update_gateway(
            actor, row.id, cloud_gateways.GatewayInput(port=port + 1)
        )
        row = await CloudGateway.get(id=row.id)
        assert (row.reachable, row.last_probe_at, row.last_reachable_at) == (None, None, None)


@pytest.mark.skipif(not LINUX_TCP_TABLE, reason="reads the kernel's socket table (Linux)")
async def test_at_most_the_configured_number_of_probes_run_at_once(world, use_settings) -> None:
    use_settings(gateway_probe_concurrency=3, gateway_probe_timeout_seconds=0.4)
    with silent() as port:
        before = syn_sent(port)
        for i in range(8):
            await gateway(f"gw{i}", port)
        sweep = asyncio.create_task(probe_enabled(T0))
        most = 0
        while not sweep.done():
            most = max(most, syn_sent(port) - before)
            await asyncio.sleep(0.01)
        report = await sweep
    assert most == 3
    assert (report.probed, report.unreachable) == (8, 8)
    errors = set(await CloudGateway.all().values_list("last_probe_error", flat=True))
    assert errors == {"no answer within 0.4 s"}


async def test_a_sweep_sends_the_same_statements_for_any_number_of_gateways(world) -> None:
    async with listening() as port:
        for i in range(3):
            await gateway(f"a{i}", port)
        with count_queries() as few:
            await probe_enabled(T0)
        for i in range(12):
            await gateway(f"b{i}", port)
        with count_queries() as many:
            report = await probe_enabled(T0 + timedelta(minutes=1))
        with count_queries() as unchanged:
            await probe_enabled(T0 + timedelta(minutes=2))
    assert report.probed == 15 and len(report.changed) == 12
    # read gateways, store all results, read the provider, insert the audit entries
    assert few.count == many.count == 4, (str(few), str(many))
    assert unchanged.count == 2, str(unchanged)


def test_settings_check_the_probe_limits(use_settings) -> None:
    from app.settings import SettingsError

    use_settings(gateway_probe_timeout_seconds=0)
    with pytest.raises(SettingsError, match="TENANTRY_GATEWAY_PROBE_TIMEOUT"):
        gateway_probes._limits()
    use_settings(gateway_probe_concurrency=0)
    with pytest.raises(SettingsError, match="TENANTRY_GATEWAY_PROBE_CONCURRENCY"):
        gateway_probes._limits()


# --- the scheduled job ----------------------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[Any]:
    from app.services import jobs

    previous = jobs._dispatcher
    b = setup(TEST_SETTINGS, stub=True)
    yield b
    jobs.set_dispatcher(previous)


def test_the_probe_schedule_is_on_in_real_settings_and_off_in_tests(monkeypatch) -> None:
    from app.settings import load_settings

    assert GATEWAY_PROBES not in [s.name for s in default_schedules(TEST_SETTINGS)]
    for name in (
        "TENANTRY_SCHEDULE_GATEWAY_PROBES",
        "TENANTRY_GATEWAY_PROBE_TIMEOUT",
        "TENANTRY_GATEWAY_PROBE_CONCURRENCY",
    ):
        monkeypatch.delenv(name, raising=False)
    real = load_settings()
    [probes] = [s for s in default_schedules(real) if s.name == GATEWAY_PROBES]
    assert (probes.cron, probes.job_kind) == ("* * * * *", "gateways.probe")
    assert (real.gateway_probe_timeout_seconds, real.gateway_probe_concurrency) == (5.0, 20)
    monkeypatch.setenv("TENANTRY_SCHEDULE_GATEWAY_PROBES", "")
    monkeypatch.setenv("TENANTRY_GATEWAY_PROBE_TIMEOUT", "1.5")
    monkeypatch.setenv("TENANTRY_GATEWAY_PROBE_CONCURRENCY", "4")
    real = load_settings()
    assert GATEWAY_PROBES not in [s.name for s in default_schedules(real)]
    assert (real.gateway_probe_timeout_seconds, real.gateway_probe_concurrency) == (1.5, 4)


async def test_the_scheduler_enqueues_one_probe_job_per_tick_and_a_worker_runs_it(
    world, broker, use_settings
) -> None:
    settings = use_settings(schedule_gateway_probes="* * * * *")
    [probes] = [s for s in default_schedules(settings) if s.name == GATEWAY_PROBES]
    scheduler = Scheduler([probes], scheduler_id="t", lease_seconds=0)
    with refusing() as closed:
        async with listening() as port:
            up, down = await gateway("up", port), await gateway("down", port_of(closed))
            fired = await scheduler.run_once(T0 + timedelta(seconds=5))
            assert fired == [(GATEWAY_PROBES, T0)]
            assert await scheduler.run_once(T0 + timedelta(seconds=30)) == []  # same tick
            assert await run_queued_inline(broker) == 1
    job = await Job.get(kind="gateways.probe")
    assert job.state is JobState.SUCCEEDED and job.organization_id is None  # type: ignore[attr-defined]
    assert (job.result["probed"], job.result["reachable"], job.result["unreachable"]) == (2, 1, 1)
    assert (await CloudGateway.get(id=up.id)).reachable is True
    assert (await CloudGateway.get(id=down.id)).reachable is False


# --- the mutation ---------------------------------------------------------------------------

PROBE = """mutation($id: ID!) {
  cloudGatewayProbe(id: $id) {
    name reachable lastProbeAt lastProbeError probeLatencyMs lastReachableAt
  }
}"""


async def test_cloud_gateway_probe_for_every_principal_as_the_engine_says(world, gql) -> None:
    with refusing() as closed:
        async with listening() as port:
            up = await gateway("up", port)
            down = await gateway("down", port_of(closed), enabled=False)
            allowed = set()
            for key, token in sorted(world.tokens.items()):
                p = await principal_for_bearer(token)
                body = await gql(PROBE, {"id": to_global_id("CloudGateway", up.id)}, token=token)
                if engine.allows(p, CLOUD_INFRASTRUCTURE, Action.UPDATE):
                    assert "errors" not in body, (key, body)
                    got = body["data"]["cloudGatewayProbe"]
                    assert (got["reachable"], got["lastProbeError"]) == (True, None), key
                    assert got["lastProbeAt"] == got["lastReachableAt"] is not None
                    allowed.add(key)
                else:
                    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (key, body)
                    assert body["data"] is None
            assert allowed == {f"Provider:{GA}", f"Provider:{ADMIN}"}
            token = world.token("Provider", GA)
            # A disabled gateway may be probed on demand (before enabling it, say).
            body = await gql(PROBE, {"id": to_global_id("CloudGateway", down.id)}, token=token)
            got = body["data"]["cloudGatewayProbe"]
            assert (got["reachable"], got["lastProbeError"], got["probeLatencyMs"]) == (
                False,
                "connection refused",
                None,
            )
            missing = await gql(PROBE, {"id": to_global_id("CloudGateway", 999)}, token=token)
            assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
            listed = await gql(
                "{ cloudGateways { nodes { name reachable lastProbeError } } }", token=token
            )
    assert listed["data"]["cloudGateways"]["nodes"] == [
        {"name": "up", "reachable": True, "lastProbeError": None},
        {"name": "down", "reachable": False, "lastProbeError": "connection refused"},
    ]
    # Every probe the mutation ran is audited: the two allowed principals' and the disabled
    # gateway's (refused calls never reached the service).
    entries = await AuditEntry.filter(action="cloudGatewayProbe", outcome="SUCCESS")
    assert len(entries) == 3
    assert {e.actor_id for e in entries} == {
        (await principal_for_bearer(world.token("Provider", r))).user_id for r in (GA, ADMIN)
    }


# --- the alarm ------------------------------------------------------------------------------


async def gateway_alarms() -> list[tuple[int, AlarmStatus, str]]:
    rows = await Alarm.filter(template__catalogue_key="cloud_gateway_unreachable").order_by("id")
    return [(a.object_id, a.status, a.message) for a in rows]


async def test_a_failed_probe_raises_the_unreachable_alarm_and_a_success_resolves_it(
    world,
) -> None:
    with refusing() as closed:
        async with listening() as port:
            up = await gateway("up", port)
            down = await gateway("down", port_of(closed))
            await probe_enabled(T0)
            new = await gateway("new", port_of(closed))  # never probed yet: no alarm
        await evaluation.evaluate_all(T0)
        [(object_id, status, message)] = await gateway_alarms()
        assert (object_id, status) == (down.id, AlarmStatus.ACTIVE)
        assert message == (
            f"gateway 127.0.0.1:{port_of(closed)} is unreachable (connection refused);"
            " last reachable: never"
        )
        # Down again a minute later: the same alarm, not a repeat.
        await probe_enabled(T0 + timedelta(minutes=1))
        await evaluation.evaluate_all(T0 + timedelta(minutes=1))
        alarms = await gateway_alarms()
        assert [(a[0], a[1]) for a in alarms] == [
            (down.id, AlarmStatus.ACTIVE),
            (up.id, AlarmStatus.ACTIVE),  # its listener went away with the block above
            (new.id, AlarmStatus.ACTIVE),
        ]
        assert (await Alarm.get(object_id=down.id)).occurrences == 1
        # The port starts listening: the next probe succeeds and the alarm resolves.
        closed.listen()
        server = await asyncio.start_server(lambda r, w: w.close(), sock=closed)
        try:
            await probe_enabled(T0 + timedelta(minutes=2))
        finally:
            server.close()
            await server.wait_closed()
    await evaluation.evaluate_all(T0 + timedelta(minutes=2))
    by_object = {a[0]: a[1] for a in await gateway_alarms()}
    assert by_object == {
        down.id: AlarmStatus.RESOLVED,
        new.id: AlarmStatus.RESOLVED,
        up.id: AlarmStatus.ACTIVE,
    }
