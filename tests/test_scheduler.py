"""The scheduler on the test database: a tick fires once, two schedulers racing for a tick make
one job, missed ticks fire once, the recovery schedule sweeps, dedup keys hold, the loop and the
embedded scheduler start and stop. Time is injected; nothing here waits on the wall clock."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.authz.matrix import Functionality
from app.jobs import registry
from app.models import Job, JobState, ScheduledTick, SchedulerLease
from app.services import jobs
from tests.conftest import TEST_SETTINGS
from workers import scheduler as scheduler_module
from workers.scheduler import Scheduler, run_scheduler
from workers.schedules import RECOVERY, Schedule, default_schedules, parse_extra

KIND = "test.scheduled"
T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)


async def _noop(ctx):
    return None


if KIND not in registry.KINDS:
    registry.register(registry.JobKind(KIND, "Scheduled test", Functionality.LOGS, _noop))


def minutely(name: str = "every-minute") -> Schedule:
    return Schedule(name, "* * * * *", job_kind=KIND, params={"source": "test"})


def make(*schedules: Schedule, lease: int = 0, sid: str | None = None) -> Scheduler:
    return Scheduler(list(schedules), scheduler_id=sid, lease_seconds=lease)


async def ticks(name: str) -> list[datetime]:
    return [t.tick for t in await ScheduledTick.filter(name=name).order_by("tick")]


# --- schedules --------------------------------------------------------------------------


def test_latest_tick_includes_a_tick_exactly_now_and_next_tick_is_strictly_after():
    s = minutely()
    on_tick = datetime(2026, 3, 2, 12, 1, tzinfo=UTC)
    assert s.latest_tick(on_tick) == on_tick
    assert s.latest_tick(on_tick - timedelta(microseconds=1)) == datetime(
        2026, 3, 2, 12, 0, tzinfo=UTC
    )
    assert s.next_tick(on_tick) == datetime(2026, 3, 2, 12, 2, tzinfo=UTC)
    seconds = Schedule("s", "* * * * * */15", call=_noop_call)
    assert seconds.latest_tick(T0 + timedelta(seconds=14)) == datetime(
        2026, 3, 2, 12, 0, 30, tzinfo=UTC
    )
    assert seconds.next_tick(T0) == datetime(2026, 3, 2, 12, 0, 45, tzinfo=UTC)


async def _noop_call() -> None:
    return None


def test_default_schedules_from_settings():
    schedules = default_schedules(TEST_SETTINGS)
    assert [(s.name, s.cron, s.job_kind) for s in schedules] == [
        (RECOVERY, "* * * * * */15", None),
        ("maintenance.purge", "0 * * * *", "maintenance.purge"),
    ]
    tuned = replace(
        TEST_SETTINGS,
        schedule_recovery="",
        schedule_purge="30 2 * * *",
        schedules_extra=("ping|* * * * * *|diagnostics.noop",),
    )
    assert [(s.name, s.cron, s.job_kind) for s in default_schedules(tuned)] == [
        ("maintenance.purge", "30 2 * * *", "maintenance.purge"),
        ("ping", "* * * * * *", "diagnostics.noop"),
    ]


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="invalid cron"):
        Schedule("x", "every minute", job_kind=KIND)
    with pytest.raises(ValueError, match="either a job kind or a callable"):
        Schedule("x", "* * * * *")
    with pytest.raises(ValueError, match=r"name\|cron\|job\.kind"):
        parse_extra("ping|* * * * *")
    with pytest.raises(ValueError, match="unique: ping"):
        default_schedules(
            replace(TEST_SETTINGS, schedules_extra=("ping|* * * * *|a", "ping|0 * * * *|b"))
        )


# --- firing -----------------------------------------------------------------------------


async def test_a_tick_fires_once_and_enqueues_one_job(db, dispatched):
    first = make(minutely(), sid="a")
    assert await first.run_once(T0) == [("every-minute", datetime(2026, 3, 2, 12, 0, tzinfo=UTC))]
    # Later in the same minute, and a fresh scheduler that has not seen the tick: nothing.
    assert await first.run_once(T0 + timedelta(seconds=15)) == []
    assert await make(minutely(), sid="b").run_once(T0 + timedelta(seconds=20)) == []

    job = await Job.get(kind=KIND)
    assert job.dedup_key == "schedule:every-minute:2026-03-02T12:00:00+00:00"
    assert job.params == {"source": "test"}
    assert job.state == JobState.QUEUED
    assert job.organization_id is None  # type: ignore[attr-defined]
    assert dispatched == [job.id]
    row = await ScheduledTick.get(name="every-minute")
    assert (row.tick, row.fired_at, row.fired_by, row.job_id, row.error) == (
        datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
        T0,
        "a",
        job.id,
        None,
    )


async def test_two_schedulers_racing_for_the_same_ticks_fire_each_once(db, dispatched):
    a, b = make(minutely(), sid="a"), make(minutely(), sid="b")
    for minute in range(5):
        at = T0 + timedelta(minutes=minute)
        fired_a, fired_b = await asyncio.gather(a.run_once(at), b.run_once(at))
        assert len(fired_a) + len(fired_b) == 1, (minute, fired_a, fired_b)
    assert await ticks("every-minute") == [
        datetime(2026, 3, 2, 12, m, tzinfo=UTC) for m in range(5)
    ]
    keys = [j.dedup_key for j in await Job.filter(kind=KIND).order_by("id")]
    assert keys == [f"schedule:every-minute:2026-03-02T12:0{m}:00+00:00" for m in range(5)]
    assert len(dispatched) == 5


async def test_the_lease_keeps_a_passive_scheduler_from_trying_until_the_leader_stops(
    db, dispatched
):
    def every_second() -> Schedule:
        return Schedule("every-second", "* * * * * *", job_kind=KIND)

    def at(seconds: int) -> datetime:
        return T0 + timedelta(seconds=seconds)

    leader, passive = (
        make(every_second(), lease=10, sid="a"),
        make(every_second(), lease=10, sid="b"),
    )
    assert await leader.run_once(at(0)) == [("every-second", at(0))]
    # The passive one does not even try while the lease runs: no tick row, no job.
    assert await passive.run_once(at(3)) == []
    assert await ticks("every-second") == [at(0)]
    assert (await SchedulerLease.get(name="default")).holder == "a"

    # A clean stop hands the lead over at once.
    await leader.release(at(3))
    assert await passive.run_once(at(4)) == [("every-second", at(4))]
    assert (await SchedulerLease.get(name="default")).holder == "b"
    assert await leader.run_once(at(5)) == []

    # A leader that dies (no release) loses the lead when its lease (10 s from 4 s) expires.
    assert await leader.run_once(at(13)) == []
    assert await leader.run_once(at(15)) == [("every-second", at(15))]
    assert (await SchedulerLease.get(name="default")).holder == "a"
    assert await ticks("every-second") == [at(0), at(4), at(15)]
    assert await Job.filter(kind=KIND).count() == 3


async def test_missed_ticks_after_downtime_fire_once_and_never_an_older_tick(db, dispatched):
    s = make(minutely(), sid="a")
    await s.run_once(T0)
    # Down from 12:00:30 to 12:07:10: the seven missed minutes fire once, as 12:07.
    fired = await make(minutely(), sid="b").run_once(T0 + timedelta(minutes=6, seconds=40))
    assert fired == [("every-minute", datetime(2026, 3, 2, 12, 7, tzinfo=UTC))]
    assert await ticks("every-minute") == [
        datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 12, 7, tzinfo=UTC),
    ]
    # A scheduler whose clock is behind never fires a tick older than the last fired one.
    assert await make(minutely(), sid="c").run_once(T0 + timedelta(minutes=4)) == []
    assert await Job.filter(kind=KIND).count() == 2
    assert len(dispatched) == 2


async def test_the_loop_with_an_injected_clock_fires_the_latest_tick_after_a_jump(db, dispatched):
    calls: list[datetime] = []
    current: list[datetime] = []
    times = iter(
        [T0 + timedelta(seconds=s) for s in (0, 0, 0, 1, 1, 1)]
        + [T0 + timedelta(hours=5, seconds=s) for s in range(100)]
    )
    stop = asyncio.Event()

    async def record() -> None:
        calls.append(current[-1])
        if len(calls) == 2:
            stop.set()

    def clock() -> datetime:
        current.append(next(times))
        return current[-1]

    s = make(Schedule("hourly", "0 * * * *", call=record), lease=10, sid="loop")
    await asyncio.wait_for(run_scheduler(stop, clock, scheduler=s), timeout=10)
    assert await ticks("hourly") == [
        datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 17, 0, tzinfo=UTC),
    ]
    assert [c.hour for c in calls] == [12, 17]
    # Stopping released the lease for the next scheduler.
    lease = await SchedulerLease.get(name="default")
    assert lease.holder == "loop"
    assert lease.expires_at < current[-1]


async def test_the_recovery_schedule_sweeps_lost_jobs(db, dispatched):
    lost = await Job.create(kind=KIND, functionality="LOGS", state=JobState.QUEUED)
    recovery = next(s for s in default_schedules(TEST_SETTINGS) if s.name == RECOVERY)
    s = make(recovery, sid="a")
    fired = await s.run_once(datetime(2026, 3, 2, 12, 0, 7, tzinfo=UTC))
    assert fired == [(RECOVERY, datetime(2026, 3, 2, 12, 0, tzinfo=UTC))]
    assert dispatched == [lost.id]
    assert (await Job.get(id=lost.id)).enqueued_at is not None
    # Not again within the 15 seconds; again at the next tick.
    assert await s.run_once(datetime(2026, 3, 2, 12, 0, 14, tzinfo=UTC)) == []
    assert len(await s.run_once(datetime(2026, 3, 2, 12, 0, 15, tzinfo=UTC))) == 1
    assert await ticks(RECOVERY) == [
        datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 12, 0, 15, tzinfo=UTC),
    ]


async def test_the_dedup_key_prevents_a_second_job_for_the_same_tick(db, dispatched):
    await make(minutely(), sid="a").run_once(T0)
    job = await Job.get(kind=KIND)
    # The tick row is gone (say, pruned by hand): the tick fires again, but the job is the same.
    await ScheduledTick.all().delete()
    assert len(await make(minutely(), sid="b").run_once(T0)) == 1
    assert await Job.filter(kind=KIND).count() == 1
    assert (await ScheduledTick.get(name="every-minute")).job_id == job.id
    assert dispatched == [job.id]


async def test_a_failing_tick_is_recorded_and_not_retried(db, dispatched):
    s = make(Schedule("broken", "* * * * *", job_kind="no.such.kind"), sid="a")
    assert len(await s.run_once(T0)) == 1
    row = await ScheduledTick.get(name="broken")
    assert row.error is not None and row.error.startswith("BadInput: ")
    assert "unknown job kind 'no.such.kind'" in row.error
    assert row.job_id is None
    assert await make(Schedule("broken", "* * * * *", job_kind="x"), sid="b").run_once(T0) == []
    assert await Job.all().count() == 0


async def test_old_tick_rows_are_pruned_but_the_latest_is_kept(db, dispatched):
    s = Scheduler([minutely()], scheduler_id="a", lease_seconds=0, retention=timedelta(minutes=2))
    for minute in range(5):
        await s.run_once(T0 + timedelta(minutes=minute))
    assert await ticks("every-minute") == [
        datetime(2026, 3, 2, 12, m, tzinfo=UTC) for m in (2, 3, 4)
    ]


async def test_the_embedded_scheduler_starts_with_the_app_and_stops(db, dispatched, use_settings):
    off = use_settings(redis_url="redis://example.invalid/0")
    assert scheduler_module.embedded_enabled(off) is False
    assert scheduler_module.start_embedded_scheduler(off) is False
    assert scheduler_module.embedded_enabled(replace(off, embedded_scheduler=True)) is True

    on = use_settings(
        redis_url=None,
        schedule_recovery="",
        schedule_purge="",
        schedules_extra=(f"embedded|* * * * *|{KIND}",),
    )
    assert scheduler_module.embedded_enabled(on) is True
    sent = asyncio.Event()
    jobs.set_dispatcher(lambda job_id, delay_ms: (dispatched.append(job_id), sent.set()))
    assert scheduler_module.start_embedded_scheduler(on) is True
    assert scheduler_module.start_embedded_scheduler(on) is False  # already running
    try:
        await asyncio.wait_for(sent.wait(), timeout=10)
    finally:
        await scheduler_module.stop_embedded_scheduler()
    assert scheduler_module._embedded is None
    job = await Job.get(kind=KIND)
    assert job.dedup_key.startswith("schedule:embedded:")
    assert dispatched == [job.id]
    row = await ScheduledTick.get(name="embedded")
    assert row.job_id == job.id


def test_the_scheduler_command_needs_redis(use_settings, monkeypatch):
    from click.testing import CliRunner

    from app import logging_setup
    from app.cli import main

    monkeypatch.setattr(logging_setup, "configure_logging", lambda level: None)
    use_settings(redis_url=None)
    result = CliRunner().invoke(main, ["scheduler"])
    assert result.exit_code == 1
    assert "tenantry scheduler sends jobs through Redis: set REDIS_URL" in result.output
