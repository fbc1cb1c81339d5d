"""The scheduler: fires each schedule's ticks, once, even when several schedulers run.

- Single firing: a tick fires only in the scheduler whose INSERT of its ScheduledTick row
  (UNIQUE (name, tick)) succeeds; a job tick also carries the dedup key
  `schedule:<name>:<tick>`, so it enqueues at most one job whatever happens.
- Leader lease (an optimisation): one row per scheduler group, taken and renewed with a
  conditional UPDATE; a passive scheduler does not try to fire while the leader's lease runs,
  and takes over when it expires (or at once when the leader stops cleanly).
- Missed ticks: each pass looks at the most recent tick ≤ now only, and fires it when it is
  newer than the last fired tick. After downtime a schedule fires once, never once per missed
  interval, and never a tick older than one already fired.
- At most once: the tick row is written before the work; a crash in between loses that tick
  (the next one comes), a failure is logged and kept on the row (`error`).

`tenantry scheduler` runs `serve_scheduler()`; `tenantry serve` on the embedded defaults runs
the same loop in its own event loop (`start_embedded_scheduler()` / `stop_embedded_scheduler()`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from app.models import ScheduledTick, SchedulerLease
from app.settings import Settings, SettingsError, get_settings
from workers.schedules import Schedule, default_schedules

log = logging.getLogger("tenantry.scheduler")

Clock = Callable[[], datetime]
GROUP = "default"
# The loop wakes at least this often (to take over a lease, to notice a stop).
MAX_SLEEP = timedelta(seconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_scheduler_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    def __init__(
        self,
        schedules: list[Schedule],
        *,
        scheduler_id: str | None = None,
        lease_seconds: int = 10,
        retention: timedelta = timedelta(days=1),
        group: str = GROUP,
    ) -> None:
        self.schedules = schedules
        self.id = scheduler_id or new_scheduler_id()
        self.lease = timedelta(seconds=lease_seconds)
        self.retention = retention
        self.group = group
        self._lease_until: datetime | None = None
        # The tick last looked at per schedule: the database is asked once per new tick.
        self._seen: dict[str, datetime] = {}

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kw: object) -> Scheduler:
        settings = settings or get_settings()
        return cls(
            default_schedules(settings),
            lease_seconds=settings.scheduler_lease_seconds,
            retention=timedelta(seconds=settings.scheduler_tick_retention_seconds),
            **kw,  # type: ignore[arg-type]
        )

    # --- leadership -------------------------------------------------------------------

    async def lead(self, now: datetime) -> bool:
        """True while this scheduler holds the group's lease (always, without a lease)."""
        if self.lease <= timedelta(0):
            return True
        if self._lease_until is not None and now < self._lease_until - self.lease / 2:
            return True
        expires = now + self.lease
        renewed = await SchedulerLease.filter(
            Q(name=self.group) & (Q(holder=self.id) | Q(expires_at__lt=now))
        ).update(holder=self.id, expires_at=expires)
        if not renewed:
            if await SchedulerLease.exists(name=self.group):
                if self._lease_until is not None:
                    log.info("scheduler %s lost the lead", self.id)
                self._lease_until = None
                return False
            try:
                await SchedulerLease.create(name=self.group, holder=self.id, expires_at=expires)
            except IntegrityError:
                self._lease_until = None
                return False
        if self._lease_until is None:
            log.info("scheduler %s leads group %r", self.id, self.group)
        self._lease_until = expires
        return True

    async def release(self, now: datetime | None = None) -> None:
        """Hand the lead over at once (a clean stop)."""
        if self.lease <= timedelta(0) or self._lease_until is None:
            return
        at = (now or utcnow()) - timedelta(seconds=1)
        await SchedulerLease.filter(name=self.group, holder=self.id).update(expires_at=at)
        self._lease_until = None

    # --- firing -----------------------------------------------------------------------

    async def run_once(self, now: datetime) -> list[tuple[str, datetime]]:
        """One pass: when leading, fire each schedule's latest due tick not fired yet.
        Returns the (schedule, tick) pairs this scheduler fired."""
        if not await self.lead(now):
            return []
        fired: list[tuple[str, datetime]] = []
        for schedule in self.schedules:
            tick = schedule.latest_tick(now)
            if self._seen.get(schedule.name) == tick:
                continue
            if await self.fire(schedule, tick, now):
                fired.append((schedule.name, tick))
            self._seen[schedule.name] = tick
        return fired

    async def fire(self, schedule: Schedule, tick: datetime, now: datetime) -> bool:
        """Fire `tick` when it is newer than the last fired tick and this scheduler's INSERT
        of its row wins. False when it was not this scheduler's to fire."""
        last = await ScheduledTick.filter(name=schedule.name).order_by("-tick").first()
        if last is not None and last.tick >= tick:
            return False
        try:
            row = await ScheduledTick.create(
                name=schedule.name, tick=tick, fired_at=now, fired_by=self.id
            )
        except IntegrityError:
            return False  # another scheduler fired it
        await ScheduledTick.filter(name=schedule.name, tick__lt=tick - self.retention).delete()
        try:
            job_id = await self._work(schedule, tick)
        except Exception as exc:
            log.exception("schedule %s: tick %s failed", schedule.name, tick.isoformat())
            reason = getattr(exc, "message", None) or str(exc)
            await ScheduledTick.filter(id=row.id).update(error=f"{type(exc).__name__}: {reason}")
        else:
            if job_id is not None:
                await ScheduledTick.filter(id=row.id).update(job_id=job_id)
            log.info(
                "schedule %s fired tick %s",
                schedule.name,
                tick.isoformat(),
                extra={"schedule": schedule.name, "job_id": job_id},
            )
        return True

    async def _work(self, schedule: Schedule, tick: datetime) -> int | None:
        if schedule.call is not None:
            await schedule.call()
            return None
        from app.services import jobs

        assert schedule.job_kind is not None
        job, _ = await jobs.create(
            None,
            schedule.job_kind,
            None,
            dict(schedule.params),
            dedup_key=schedule.dedup_key(tick),
        )
        return job.id

    def next_wakeup(self, now: datetime) -> datetime:
        """When to look again: the next tick of any schedule, at most MAX_SLEEP away."""
        ticks = [s.next_tick(now) for s in self.schedules]
        return min([now + MAX_SLEEP, *ticks])


async def run_scheduler(
    stop_event: asyncio.Event,
    clock: Clock = utcnow,
    *,
    scheduler: Scheduler | None = None,
    settings: Settings | None = None,
) -> None:
    """Fire ticks until `stop_event` is set; the ORM and the broker must be set up."""
    scheduler = scheduler or Scheduler.from_settings(settings)
    names = ", ".join(f"{s.name} ({s.cron})" for s in scheduler.schedules) or "none"
    log.info("scheduler %s started; schedules: %s", scheduler.id, names)
    try:
        while not stop_event.is_set():
            try:
                await scheduler.run_once(clock())
            except Exception:  # the database went away: keep trying, do not die
                log.exception("scheduler pass failed")
            delay = (scheduler.next_wakeup(clock()) - clock()).total_seconds()
            try:
                await asyncio.wait_for(stop_event.wait(), timeout=max(0.0, delay))
            except TimeoutError:
                pass
    finally:
        try:
            await scheduler.release(clock())
        except Exception:
            log.exception("could not release the scheduler lease")
        log.info("scheduler %s stopped", scheduler.id)


# --- the `tenantry scheduler` process -----------------------------------------------------


async def serve_scheduler(settings: Settings | None = None) -> None:
    """The scheduler process: ORM and broker up, the loop until SIGTERM/SIGINT, then close."""
    from tortoise.context import TortoiseContext

    from app.db import tortoise_config
    from workers.broker import setup as setup_broker

    settings = settings or get_settings()
    if not settings.redis_url:
        raise SettingsError(
            "tenantry scheduler sends jobs through Redis: set REDIS_URL "
            "(on the embedded defaults, tenantry serve runs the scheduler itself)"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(settings), _enable_global_fallback=True)
        setup_broker(settings)
        await run_scheduler(stop, settings=settings)


# --- in-process, inside `tenantry serve` (embedded defaults) ---------------------------------

_embedded: tuple[asyncio.Task[None], asyncio.Event] | None = None


def embedded_enabled(settings: Settings | None = None) -> bool:
    """On by default when there is no Redis (one process does it all); TENANTRY_EMBEDDED_SCHEDULER
    forces it on or off."""
    settings = settings or get_settings()
    if settings.embedded_scheduler is not None:
        return settings.embedded_scheduler
    return settings.redis_url is None


def start_embedded_scheduler(settings: Settings | None = None) -> bool:
    """Start the scheduler as a task of the running event loop (call it where the ORM and the
    broker are set up, e.g. the app's lifespan). False when disabled or already running."""
    global _embedded
    settings = settings or get_settings()
    if _embedded is not None or not embedded_enabled(settings):
        return False
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        run_scheduler(stop, settings=settings), name="tenantry-scheduler"
    )
    _embedded = (task, stop)
    return True


async def stop_embedded_scheduler() -> None:
    global _embedded
    if _embedded is None:
        return
    task, stop = _embedded
    _embedded = None
    stop.set()
    await task
