"""`jobUpdated` over a real WebSocket (graphql-transport-ws): uvicorn serves app.main.create_app
in a background thread, on a temporary SQLite file, and the test drives the job through
app.services.jobs. Each progress event must reach the subscriber within one second, and the
stream completes after the job finishes.

Embedded mode: the in-process hub, so the job is driven on the server's own event loop (the
hub lives in the server process). Redis mode (CI's second pass, TENANTRY_TEST_REDIS_URL): the
job is driven by another process, whose events reach the server through Redis pub/sub."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.sync.client import ClientConnection, connect

from app.authz.matrix import Functionality
from app.graphql.ids import to_global_id
from app.jobs import registry
from app.services import events, jobs
from app.services.sessions import issue_session
from app.settings import override_settings
from tests.conftest import REDIS_URL, TEST_SETTINGS
from tests.factories import World, build_world

GA = "Service Provider Global Administrator"
KIND = "test.subscription"
WORKER = "test-worker"
EVENT_DEADLINE = 1.0  # seconds from a change to its event at the subscriber
PROTOCOL = "graphql-transport-ws"

SUBSCRIPTION = """
subscription($id: ID!) {
  jobUpdated(id: $id) { id state progressPercent progressMessage cancelRequested }
}
"""


async def _noop(ctx):  # type: ignore[no-untyped-def]
    return None


def ensure_kind() -> None:
    registry.load_kinds()
    if KIND not in registry.KINDS:
        registry.register(registry.JobKind(KIND, "Test subscription", Functionality.LOGS, _noop))


class LiveServer:
    """uvicorn in a thread of this process, on its own event loop."""

    def __init__(self, database: Path, hub: events.Hub) -> None:
        from app.main import create_app

        self.settings = replace(TEST_SETTINGS, database_url=f"sqlite://{database}", redis_url=None)
        # Services read the settings in force (the audit's transaction names its connection
        # from them): the server's database, whichever backend the rest of the run uses.
        override_settings(self.settings)
        events.install(hub=hub)  # the lifespan keeps an installed hub and closes it at exit
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_level="warning",
            ws="websockets-sansio",
        )
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="live-uvicorn", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/graphql"

    def run(self, coro: Any, timeout: float = 15) -> Any:
        """Run a coroutine on the server's loop (where its ORM context and hub live)."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        try:
            self.server.should_exit = True
            if self.thread.is_alive():
                self.thread.join(15)
            if not self.loop.is_running():
                self.loop.close()
        finally:
            override_settings(TEST_SETTINGS)


async def _prepare() -> World:
    from tortoise import Tortoise

    await Tortoise.generate_schemas()
    return await build_world()


@pytest.fixture(scope="module")
def recorded_dispatch() -> Iterator[list[int]]:
    previous = jobs._dispatcher
    sent: list[int] = []
    jobs.set_dispatcher(lambda job_id, delay_ms: sent.append(job_id))
    ensure_kind()
    yield sent
    jobs.set_dispatcher(previous)


def start_server(tmp: Path, hub: events.Hub) -> tuple[LiveServer, World]:
    server = LiveServer(tmp / "live.sqlite3", hub)
    try:
        server.start()
        world = server.run(_prepare(), timeout=60)
    except BaseException:
        server.stop()
        raise
    return server, world


@pytest.fixture(scope="module", params=["in-process", "redis"])
def live(request, tmp_path_factory, recorded_dispatch) -> Iterator[tuple[LiveServer, World]]:
    """One server per hub: every test runs on the in-process hub, and again on Redis when
    TENANTRY_TEST_REDIS_URL is set (channels under a prefix of this run only)."""
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("TENANTRY_TEST_REDIS_URL is not set (CI's second pass sets it)")
        import redis

        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3) as client:
            client.ping()  # a missing Redis fails here at once: never a skip
        hub: events.Hub = events.RedisHub(REDIS_URL, f"tenantry-test-{uuid.uuid4().hex[:12]}:")
    else:
        hub = events.LocalHub()
    server, world = start_server(tmp_path_factory.mktemp("live"), hub)
    yield server, world
    server.stop()


def local_hub() -> events.LocalHub:
    """The fan-out of this process's hub, where its WebSocket subscribers wait."""
    hub = events.current()
    if isinstance(hub, events.RedisHub):
        return hub.local
    assert isinstance(hub, events.LocalHub)
    return hub


# --- the graphql-transport-ws client side ----------------------------------------------------


def open_socket(
    server: LiveServer, token: str | None, *, header: bool = False, init: dict | None = None
) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token and header else None
    ws = connect(server.url, subprotocols=[PROTOCOL], additional_headers=headers, open_timeout=5)
    assert ws.subprotocol == PROTOCOL
    payload = init if init is not None else ({"Authorization": f"Bearer {token}"} if token else {})
    if header:
        payload = {}
    ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    assert json.loads(ws.recv(timeout=5))["type"] == "connection_ack"
    return ws


def subscribe(ws: ClientConnection, job_id: int, op: str = "1") -> None:
    ws.send(
        json.dumps(
            {
                "id": op,
                "type": "subscribe",
                "payload": {"query": SUBSCRIPTION, "variables": {"id": gid(job_id)}},
            }
        )
    )


def receive(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=timeout))
    while message["type"] in {"ping", "pong"}:
        message = json.loads(ws.recv(timeout=timeout))
    return message


def update(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"]["jobUpdated"]


def gid(pk: int) -> str:
    return to_global_id("Job", pk)


def new_job(server: LiveServer, world: World, org: str = "A1") -> int:
    job, _ = server.run(jobs.create(None, KIND, world.orgs[org], {}))
    return job.id


def follow_progress(
    ws: ClientConnection, job_id: int, drive: Callable[[str, tuple[Any, ...]], None]
) -> list[float]:
    """Subscribe, then drive the job step by step; returns each event's latency."""
    subscribe(ws, job_id)
    first = update(receive(ws))
    assert first == {
        "id": gid(job_id),
        "state": "QUEUED",
        "progressPercent": 0,
        "progressMessage": "",
        "cancelRequested": False,
    }
    steps: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("claim", (), {"state": "RUNNING", "progressPercent": 0}),
        ("progress", (25, "a quarter"), {"state": "RUNNING", "progressPercent": 25}),
        ("progress", (75, "three quarters"), {"state": "RUNNING", "progressPercent": 75}),
        ("succeed", (), {"state": "SUCCEEDED", "progressPercent": 100}),
    ]
    latencies = []
    for op, args, expected in steps:
        started = time.monotonic()
        drive(op, args)
        got = update(receive(ws, timeout=EVENT_DEADLINE + 4))
        latencies.append(time.monotonic() - started)
        assert {k: got[k] for k in expected} == expected, (op, got)
        if op == "progress":
            assert got["progressMessage"] == args[1]
    assert receive(ws) == {"id": "1", "type": "complete"}
    return latencies


def in_process_driver(server: LiveServer, job_id: int) -> Callable[[str, tuple[Any, ...]], None]:
    def drive(op: str, args: tuple[Any, ...]) -> None:
        if op == "claim":
            assert server.run(jobs.claim(job_id, WORKER)) is not None
        elif op == "progress":
            assert server.run(jobs.progress(job_id, WORKER, *args))
        else:
            assert server.run(jobs.succeed(job_id, WORKER, {"rows": 1}))

    return drive


# --- embedded mode: the in-process hub -------------------------------------------------------


def test_progress_events_reach_a_websocket_subscriber_within_a_second(live):
    server, world = live
    job_id = new_job(server, world)
    with open_socket(server, world.token("R1", GA)) as ws:
        latencies = follow_progress(ws, job_id, in_process_driver(server, job_id))
    assert max(latencies) < EVENT_DEADLINE, latencies
    # The subscription left the hub when the stream completed.
    assert local_hub().subscriber_count(events.job_channel(job_id)) == 0


def test_authorization_header_of_the_upgrade_request_works_too(live):
    server, world = live
    job_id = new_job(server, world)
    server.run(jobs.claim(job_id, WORKER))
    server.run(jobs.fail(job_id, WORKER, "boom"))
    with open_socket(server, world.token("Provider", GA), header=True) as ws:
        subscribe(ws, job_id)
        assert update(receive(ws))["state"] == "FAILED"
        # A finished job: its current state, then the stream completes.
        assert receive(ws) == {"id": "1", "type": "complete"}


def test_cancel_request_is_an_event(live):
    server, world = live
    job_id = new_job(server, world)
    with open_socket(server, world.token("R1", GA)) as ws:
        subscribe(ws, job_id)
        assert update(receive(ws))["state"] == "QUEUED"
        server.run(jobs.claim(job_id, WORKER))
        assert update(receive(ws))["state"] == "RUNNING"
        ws.send(
            json.dumps(
                {
                    "id": "2",
                    "type": "subscribe",
                    "payload": {
                        "query": "mutation($id: ID!) { jobCancel(id: $id) { cancelRequested } }",
                        "variables": {"id": gid(job_id)},
                    },
                }
            )
        )
        answers = [receive(ws) for _ in range(3)]
        by_op = {(m["id"], m["type"]): m for m in answers}
        assert by_op[("2", "next")]["payload"]["data"] == {"jobCancel": {"cancelRequested": True}}
        assert ("2", "complete") in by_op
        assert update(by_op[("1", "next")])["cancelRequested"] is True
        server.run(jobs.cancelled(job_id, WORKER))
        assert update(receive(ws))["state"] == "CANCELLED"
        assert receive(ws) == {"id": "1", "type": "complete"}


def test_unauthenticated_subscription_is_refused_with_unauthenticated(live):
    server, world = live
    job_id = new_job(server, world)
    with open_socket(server, None) as ws:
        subscribe(ws, job_id)
        message = receive(ws)
    assert message["type"] == "error" and message["id"] == "1", message
    assert message["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_bad_credential_in_connection_init_is_unauthenticated(live):
    server, world = live
    job_id = new_job(server, world)
    with open_socket(server, None, init={"Authorization": "Bearer not-a-token"}) as ws:
        subscribe(ws, job_id)
        message = receive(ws)
    assert message["type"] == "error"
    assert message["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_job_of_another_tenant_is_not_found(live):
    server, world = live
    job_id = new_job(server, world)
    with open_socket(server, world.token("R2", GA)) as ws:
        subscribe(ws, job_id)
        message = receive(ws)
    assert message["type"] == "error", message
    assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"
    assert local_hub().subscriber_count() == 0


def test_a_company_owner_without_the_logs_row_gets_not_found(live):
    server, world = live
    job_id = new_job(server, world)
    token, _ = server.run(issue_session(world.user("A1", "Company Owner")))
    with open_socket(server, token) as ws:
        subscribe(ws, job_id)
        message = receive(ws)
    assert message["type"] == "error"
    assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"


# --- production mode: Redis pub/sub, the job driven by another process -----------------------

DRIVER = r"""
import asyncio, json, sys
from tortoise import Tortoise
from app.db import tortoise_config
from app.services import events, jobs

async def main(database_url, redis_url, prefix):
    await Tortoise.init(config=tortoise_config(database_url=database_url),
                        _enable_global_fallback=True)
    events.install(hub=events.RedisHub(redis_url, prefix))
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            op, job_id, args = command["op"], command["job"], command["args"]
            if op == "claim":
                ok = await jobs.claim(job_id, "other-process") is not None
            elif op == "progress":
                ok = await jobs.progress(job_id, "other-process", *args)
            else:
                ok = await jobs.succeed(job_id, "other-process", {"rows": 1})
            print(json.dumps({"ok": bool(ok)}), flush=True)
    finally:
        await events.shutdown()
        await Tortoise.close_connections()

asyncio.run(main(*sys.argv[1:4]))
"""


@pytest.mark.parametrize("live", ["redis"], indirect=True)
def test_progress_from_another_process_reaches_the_subscriber_through_redis(live):
    server, world = live
    hub = events.current()
    assert isinstance(hub, events.RedisHub)
    prefix = hub.prefix
    job_id = new_job(server, world)
    database_url = server.settings.database_url
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, database_url, REDIS_URL, prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "TENANTRY_SEED_DEMO": "0"},
    )
    try:
        assert driver.stdout is not None and driver.stdin is not None
        assert driver.stdout.readline().strip() == "ready"

        def drive(op: str, args: tuple[Any, ...]) -> None:
            assert driver.stdin is not None and driver.stdout is not None
            driver.stdin.write(json.dumps({"op": op, "job": job_id, "args": list(args)}) + "\n")
            driver.stdin.flush()
            assert json.loads(driver.stdout.readline()) == {"ok": True}

        with open_socket(server, world.token("R1", GA)) as ws:
            latencies = follow_progress(ws, job_id, drive)
        assert max(latencies) < EVENT_DEADLINE, latencies
    finally:
        if driver.stdin is not None:
            driver.stdin.close()
        try:
            driver.wait(10)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()


# --- the in-process hub across threads (the embedded worker publishes from its own loop) -----


async def test_local_hub_delivers_across_threads_and_keeps_the_newest_when_full():
    hub = events.LocalHub()
    async with hub.subscribe("job:1") as sub, hub.subscribe("job:2") as other:
        worker = threading.Thread(
            target=lambda: asyncio.run(hub.publish("job:1", {"n": 1})), name="embedded-worker"
        )
        worker.start()
        worker.join(5)
        assert await sub.next(within=2) == {"n": 1}
        assert await other.next(within=0.05) is None  # another channel hears nothing
        # A slow subscriber loses its oldest wake-ups, never the newest.
        for n in range(events.QUEUE_SIZE + 5):
            hub.deliver("job:1", {"n": n})
        received = [await sub.next(within=1) for _ in range(events.QUEUE_SIZE)]
        assert received[-1] == {"n": events.QUEUE_SIZE + 4}
        assert received[0] == {"n": 5}
        assert hub.subscriber_count() == 2
    assert hub.subscriber_count() == 0
