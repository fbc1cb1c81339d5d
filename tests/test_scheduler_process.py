"""Two live `tenantry scheduler` processes on the test PostgreSQL database and Redis, with a
schedule firing every second: each tick fires once, in one of them, and makes one job.

With the leader lease, one scheduler fires every tick and the other takes over when it stops;
without it (TENANTRY_SCHEDULER_LEASE=0) both race for every tick and the unique tick row alone
decides. CI's second pass runs these (TENANTRY_TEST_DATABASE_URL, TENANTRY_TEST_REDIS_URL);
they skip only when those are unset, and fail when TENANTRY_REQUIRE_SERVICES=1 asks for them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from app.models import Job, ScheduledTick, SchedulerLease
from app.settings import Settings
from tests.conftest import ON_POSTGRES, PG_URL, REDIS_URL

REQUIRED = os.environ.get("TENANTRY_REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parent.parent
KIND = "diagnostics.noop"
# A Redis database of its own, so the messages the schedulers send collide with nobody's.
REDIS_DB = 13

pytestmark = pytest.mark.skipif(
    not REQUIRED and not (ON_POSTGRES and REDIS_URL),
    reason="needs TENANTRY_TEST_DATABASE_URL (PostgreSQL) and TENANTRY_TEST_REDIS_URL",
)


def _redis_url() -> str:
    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{REDIS_DB}"))


@pytest.fixture
async def services() -> AsyncIterator[str]:
    """The Redis namespace of this run; its keys are deleted at the end."""
    assert ON_POSTGRES, "CI asked for PostgreSQL (TENANTRY_TEST_DATABASE_URL) but it is not set"
    assert REDIS_URL, "CI asked for Redis (TENANTRY_TEST_REDIS_URL) but it is not set"
    namespace = f"tenantry-sched-{uuid.uuid4().hex[:8]}"
    yield namespace
    await _delete_keys(namespace)


async def _messages(namespace: str) -> int:
    """The job messages the schedulers left in Redis (no worker consumes them here)."""
    import redis.asyncio as redis

    client = redis.from_url(_redis_url())
    try:
        return int(await client.hlen(f"{namespace}:jobs.msgs"))
    finally:
        await client.aclose()


async def _delete_keys(namespace: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(_redis_url())
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _start(namespace: str, lease_seconds: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": PG_URL,
        "REDIS_URL": _redis_url(),
        "TENANTRY_REDIS_NAMESPACE": namespace,
        "TENANTRY_SEED_DEMO": "0",
        # Every built-in schedule off, read from the settings so a new one cannot send its
        # messages into the count (the gateway probes' did once).
        **{
            f"TENANTRY_{f.name.upper()}": ""
            for f in fields(Settings)
            if f.name.startswith("schedule_")
        },
        "TENANTRY_SCHEDULES": f"ping|* * * * * *|{KIND}",
        "TENANTRY_SCHEDULER_LEASE": str(lease_seconds),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "scheduler", "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM once (a clean stop); the process's output, for failure messages."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the scheduler did not stop on SIGTERM:\n{out.decode()}") from None
    return out.decode(errors="replace")


async def _until(
    condition: Callable[[], Awaitable[bool]],
    procs: list[subprocess.Popen[bytes]],
    what: str,
    within: float = 20,
) -> None:
    """Poll the database until `condition` holds; fail early when a scheduler died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a scheduler exited ({proc.returncode}):\n{_stop(proc)}")
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _fired_by() -> list[str]:
    return [row.fired_by for row in await ScheduledTick.filter(name="ping").order_by("tick")]


async def _assert_one_job_per_tick() -> list[ScheduledTick]:
    rows = await ScheduledTick.filter(name="ping").order_by("tick")
    assert len({row.tick for row in rows}) == len(rows)
    assert [row.error for row in rows] == [None] * len(rows)
    jobs = await Job.filter(kind=KIND).order_by("id")
    assert len(jobs) == len(rows)
    assert {job.dedup_key for job in jobs} == {
        f"schedule:ping:{row.tick.isoformat()}" for row in rows
    }
    assert {job.id for job in jobs} == {row.job_id for row in rows}
    assert all(job.enqueued_at is not None for job in jobs)  # sent to the broker
    return rows


def _pid(scheduler_id: str) -> int:
    return int(scheduler_id.split(":")[1])


async def test_two_live_schedulers_with_a_lease_fire_each_tick_once_and_hand_over(db, services):
    namespace = services
    procs = [_start(namespace, lease_seconds=5) for _ in range(2)]
    outputs: list[str] = []
    try:
        await _until(lambda: _count_at_least(3), procs, "three ticks")
        leader = (await SchedulerLease.get(name="default")).holder
        first = next(p for p in procs if p.pid == _pid(leader))
        other = next(p for p in procs if p is not first)
        outputs.append(_stop(first))
        assert first.returncode == 0, outputs[-1]

        async def other_fired_three() -> bool:
            return sum(1 for who in await _fired_by() if _pid(who) == other.pid) >= 3

        await _until(other_fired_three, [other], "the other scheduler to take over")
        outputs.append(_stop(other))
        assert other.returncode == 0, outputs[-1]
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)

    rows = await _assert_one_job_per_tick()
    assert await _messages(namespace) == len(rows)
    # One leader at a time: the first fires every tick until it stops, then the other.
    by = [_pid(row.fired_by) for row in rows]
    handover = by.index(other.pid)
    assert set(by[:handover]) == {first.pid}, by
    assert set(by[handover:]) == {other.pid}, by
    assert handover >= 3


async def test_two_live_schedulers_without_a_lease_still_fire_each_tick_once(db, services):
    namespace = services
    procs = [_start(namespace, lease_seconds=0) for _ in range(2)]
    try:
        await _until(lambda: _count_at_least(4), procs, "four ticks")
        for proc in procs:
            out = _stop(proc)
            assert proc.returncode == 0, out
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)

    rows = await _assert_one_job_per_tick()
    assert len(rows) >= 4
    assert await _messages(namespace) == len(rows)
    assert await SchedulerLease.all().count() == 0


async def _count_at_least(n: int) -> bool:
    return await ScheduledTick.filter(name="ping").count() >= n
