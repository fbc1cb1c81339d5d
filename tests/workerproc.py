"""Real `tenantry worker` processes for tests: started in their own process group (so that
`kill -9` takes the dramatiq master and its worker processes at once), with short heartbeat
and redelivery windows, logging to a file shown when a test fails."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

TENANTRY = str(Path(sys.executable).with_name("tenantry"))

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
