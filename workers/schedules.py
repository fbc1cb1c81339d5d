"""The periodic schedules: a small declarative list, tuned or turned off through settings.

A schedule has a name, a cron expression (croniter; a 6th field is seconds: `* * * * * */15`)
and what to do at each tick: enqueue a job of a registered kind (one job per tick at most, by
its dedup key) or run a callable inside the scheduler itself (the recovery sweep).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from app.settings import Settings, get_settings

Call = Callable[[], Awaitable[Any]]

RECOVERY = "jobs.recover"
PURGE = "maintenance.purge"
DISCOVERY = "discovery.due"  # starts the discovery rules whose own schedule is due
LICENSING = "licensing.collect"  # license usage of the month, recounted daily
BILLING = "billing.run"  # the invoices that are due, generated daily
OVERDUE = "billing.overdue"  # unpaid invoices past their due date, marked daily
OUTBOX = "outbox.deliver"  # notifications waiting in the outbox (e-mail, webhooks)
ALARMS = "alarms.sweep"  # alarm evaluation: incremental every minute, full hourly
ALARM_DIGEST = "alarms.digest"  # the daily alarm digests of the organizations due this hour
GATEWAY_PROBES = "gateways.probe"  # reachability of the enabled cloud gateways, every minute


@dataclass(frozen=True, eq=False)
class Schedule:
    name: str
    cron: str
    job_kind: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    call: Call | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 100:
            raise ValueError(f"a schedule needs a name of 1 to 100 characters: {self.name!r}")
        if (self.job_kind is None) == (self.call is None):
            raise ValueError(f"schedule {self.name!r}: give either a job kind or a callable")
        if not croniter.is_valid(self.cron):
            raise ValueError(f"schedule {self.name!r}: invalid cron expression {self.cron!r}")

    def latest_tick(self, now: datetime) -> datetime:
        """The most recent tick at or before `now` (UTC, whole seconds)."""
        # croniter's get_prev is strictly before its start: start just after `now`.
        start = now.astimezone(UTC) + timedelta(microseconds=1)
        return _utc(croniter(self.cron, start).get_prev(datetime))

    def next_tick(self, now: datetime) -> datetime:
        """The first tick strictly after `now`."""
        return _utc(croniter(self.cron, now.astimezone(UTC)).get_next(datetime))

    def dedup_key(self, tick: datetime) -> str:
        return f"schedule:{self.name}:{tick.astimezone(UTC).isoformat()}"


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(fold=0)


async def _recover() -> Any:
    from app.services import jobs

    return await jobs.recover()


async def _discovery_due() -> Any:
    from app.services import discovery

    return await discovery.run_due()


def parse_extra(entry: str) -> Schedule:
    """`name|cron|job.kind` (from TENANTRY_SCHEDULES) → a job schedule."""
    parts = [p.strip() for p in entry.split("|")]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"a schedule is 'name|cron|job.kind', not {entry!r}")
    name, cron, kind = parts
    return Schedule(name, cron, job_kind=kind)


def default_schedules(settings: Settings | None = None) -> list[Schedule]:
    """The schedules in force: the recovery sweep, the hourly purge, the daily license count,
    the daily billing run and overdue marking, the alarm sweeps and digests, the gateway
    probes, and any extra ones. An empty cron expression in the settings turns a schedule
    off."""
    settings = settings or get_settings()
    schedules: list[Schedule] = []
    if settings.schedule_recovery.strip():
        schedules.append(Schedule(RECOVERY, settings.schedule_recovery.strip(), call=_recover))
    if settings.schedule_purge.strip():
        schedules.append(Schedule(PURGE, settings.schedule_purge.strip(), job_kind=PURGE))
    if settings.schedule_licensing.strip():
        schedules.append(
            Schedule(LICENSING, settings.schedule_licensing.strip(), job_kind=LICENSING)
        )
    if settings.schedule_billing.strip():
        schedules.append(Schedule(BILLING, settings.schedule_billing.strip(), job_kind=BILLING))
    if settings.schedule_overdue.strip():
        schedules.append(Schedule(OVERDUE, settings.schedule_overdue.strip(), job_kind=OVERDUE))
    if settings.schedule_discovery.strip():
        schedules.append(
            Schedule(DISCOVERY, settings.schedule_discovery.strip(), call=_discovery_due)
        )
    if settings.schedule_outbox.strip():
        schedules.append(Schedule(OUTBOX, settings.schedule_outbox.strip(), job_kind=OUTBOX))
    if settings.schedule_alarms.strip():
        schedules.append(Schedule(ALARMS, settings.schedule_alarms.strip(), job_kind=ALARMS))
    if settings.schedule_alarm_digest.strip():
        schedules.append(
            Schedule(ALARM_DIGEST, settings.schedule_alarm_digest.strip(), job_kind=ALARM_DIGEST)
        )
    if settings.schedule_gateway_probes.strip():
        schedules.append(
            Schedule(
                GATEWAY_PROBES, settings.schedule_gateway_probes.strip(), job_kind=GATEWAY_PROBES
            )
        )
    schedules.extend(parse_extra(entry) for entry in settings.schedules_extra)
    names = [s.name for s in schedules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"schedule names must be unique: {', '.join(duplicates)}")
    return schedules
