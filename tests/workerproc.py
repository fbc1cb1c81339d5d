"""Real `tenantry worker` processes for tests: started in their own process group (so that
`kill -9` takes the dramatiq master and its worker processes at once), with short heartbeat
and redelivery windows, logging to a file shown when a test fails.

A test module on real processes uses the same three fixtures:

    @pytest.fixture(autouse=True)
    def services():
        require_services()            # skipped without PostgreSQL and Redis (failed in CI)

    @pytest.fixture
    def broker(db, monkeypatch):
        with redis_broker(REDIS_DB, "tenantry-x", monkeypatch) as (broker, settings):
            yield settings            # this process sends where the workers read

    @pytest.fixture
    def workers(broker, tmp_path):
        with worker_processes(broker, tmp_path) as start:
            yield start               # start() → a WorkerProcess; all stopped at the end
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from app.settings import Settings

TENANTRY = str(Path(sys.executable).with_name("tenantry"))
REQUIRED = os.environ.get("TENANTRY_REQUIRE_SERVICES") == "1"

# Short windows, so a killed worker's job is recoverable within seconds.
FAST_ENV = {
    "TENANTRY_JOB_HEARTBEAT_MS": "200",
    "TENANTRY_JOB_STALE_AFTER_MS": "1500",
    "TENANTRY_JOB_UNCLAIMED_AFTER_MS": "3000",
    "TENANTRY_JOB_RETRY_BASE_MS": "100",
    "TENANTRY_REDIS_HEARTBEAT_TIMEOUT_MS": "2000",
    "TENANTRY_REDIS_MAINTENANCE_CHANCE": "1000000",
}


def redis_url_with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def require_services() -> None:
    """Skip the test without PostgreSQL and Redis; fail it when CI requires them
    (TENANTRY_REQUIRE_SERVICES=1)."""
    import pytest

    from tests.conftest import ON_POSTGRES, REDIS_URL

    if not (ON_POSTGRES and REDIS_URL):
        if REQUIRED:
            pytest.fail(
                "TENANTRY_REQUIRE_SERVICES=1 but TENANTRY_TEST_DATABASE_URL (PostgreSQL) or "
                "TENANTRY_TEST_REDIS_URL is not set"
            )
        pytest.skip("needs TENANTRY_TEST_DATABASE_URL (PostgreSQL) and TENANTRY_TEST_REDIS_URL")


def fresh_redis_db(db: int) -> str:
    """The URL of the test Redis's database `db` (a test module's own index), emptied."""
    import redis

    from tests.conftest import REDIS_URL

    url = redis_url_with_db(REDIS_URL, db)
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@contextmanager
def redis_broker(db: int, namespace: str, monkeypatch: Any) -> Iterator[tuple[Any, Settings]]:
    """This process's broker on Redis database `db` (emptied), in a namespace of its own
    (`namespace` plus a random suffix), with the workers' short recovery windows (FAST_ENV);
    the dispatcher and the windows in place before are put back at the end."""
    from app.services import jobs
    from tests.conftest import TEST_SETTINGS
    from workers.broker import setup

    settings = replace(
        TEST_SETTINGS,
        redis_url=fresh_redis_db(db),
        redis_namespace=f"{namespace}-{uuid.uuid4().hex[:8]}",
        job_heartbeat_ms=int(FAST_ENV["TENANTRY_JOB_HEARTBEAT_MS"]),
        job_stale_after_ms=int(FAST_ENV["TENANTRY_JOB_STALE_AFTER_MS"]),
        job_unclaimed_after_ms=int(FAST_ENV["TENANTRY_JOB_UNCLAIMED_AFTER_MS"]),
    )
    previous = jobs._dispatcher
    for name in ("HEARTBEAT_INTERVAL", "STALE_AFTER", "UNCLAIMED_AFTER"):
        monkeypatch.setattr(jobs, name, getattr(jobs, name))
    broker = setup(settings, stub=False)  # also shortens this process's recovery windows
    try:
        yield broker, settings
    finally:
        jobs.set_dispatcher(previous)


class WorkerProcess:
    def __init__(
        self,
        database_url: str,
        redis_url: str,
        namespace: str,
        log: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.log = log
        env = {
            **os.environ,
            **FAST_ENV,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "TENANTRY_REDIS_NAMESPACE": namespace,
            "TENANTRY_ENV": "development",
            "TENANTRY_SEED_DEMO": "0",
            **(extra_env or {}),
        }
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [TENANTRY, "worker", "--processes", "1", "--threads", "2", "--shutdown-timeout", "5"],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: pgid == pid
        )

    def kill(self) -> None:
        """kill -9 the whole group (master and worker processes), as a crash would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._out.close()

    def pause(self) -> None:
        """SIGSTOP the whole group: it stops wherever it is (between two statements of a
        transaction, or just after a commit), for a test to look at the database."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def unpause(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the master once (a second one can hang it); kill after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, within: float = 30) -> None:
        """Block until the worker process says it takes messages (or fail with its log)."""
        deadline = time.monotonic() + within
        while "Worker process is ready for action" not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the worker exited ({self.proc.returncode}):\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker is not ready after {within} s:\n{self.output()}")
            time.sleep(0.05)


@contextmanager
def worker_processes(
    settings: Settings, logs: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Callable[[], WorkerProcess]]:
    """Yields `start()`, which starts a worker process on the test database and `settings`'
    Redis namespace (with `extra_env`), logging under `logs`; every one is stopped (or
    killed) at the end and its log shown."""
    from tests.conftest import PG_URL

    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        log = logs / f"worker-{len(started)}.log"
        assert settings.redis_url is not None
        worker = WorkerProcess(PG_URL, settings.redis_url, settings.redis_namespace, log, extra_env)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
            print(f"--- {worker.log.name}\n{worker.output()}")


async def wait_for(
    check: Callable[[], Awaitable[object]], within: float, what: str, every: float = 0.05
) -> object:
    """Poll `check` until it returns something truthy; AssertionError after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)
