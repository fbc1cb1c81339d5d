"""The broker: Redis when REDIS_URL is set, else an in-process StubBroker (the embedded mode,
with an in-process worker, see workers.runtime).

    broker = setup(settings)        # once per process: API, worker, scheduler, tests

sets it as dramatiq's broker, declares the actors on it and registers the dispatcher of
app.services.jobs (how a job id reaches a worker). Middleware: dramatiq's defaults, AsyncIO
(async actors), ORM (Tortoise on the worker's event loop) and Jobs (worker identity,
dead letters). The Redis broker's heartbeat timeout and maintenance chance are short enough
that the messages of a worker killed with `kill -9` come back within seconds, not minutes
(TENANTRY_REDIS_HEARTBEAT_TIMEOUT_MS, TENANTRY_REDIS_MAINTENANCE_CHANCE); the job rows'
own heartbeats and the recovery sweep cover the rest.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq
from dramatiq.broker import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, Retries

from app.services import jobs
from app.settings import Settings, get_settings
from workers.middleware import ORM, Jobs, set_orm

log = logging.getLogger("tenantry.worker")

QUEUE = "jobs"

_broker: Broker | None = None


def current() -> Broker | None:
    """The broker set up in this process (None before setup())."""
    return _broker


def orm_of(broker: Broker) -> ORM:
    for middleware in broker.middleware:
        if isinstance(middleware, ORM):
            return middleware
    raise LookupError("this broker has no ORM middleware")


def apply_job_timing(settings: Settings) -> None:
    """The heartbeat and recovery windows of app.services.jobs, from the settings."""
    jobs.HEARTBEAT_INTERVAL = settings.job_heartbeat_ms / 1000
    jobs.STALE_AFTER = timedelta(milliseconds=settings.job_stale_after_ms)
    jobs.UNCLAIMED_AFTER = timedelta(milliseconds=settings.job_unclaimed_after_ms)


def _new_broker(settings: Settings, stub: bool) -> Broker:
    if stub:
        return StubBroker()
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(
        url=settings.redis_url,
        namespace=settings.redis_namespace,
        heartbeat_timeout=settings.redis_heartbeat_timeout_ms,
        maintenance_chance=settings.redis_maintenance_chance,
    )


def setup(
    settings: Settings | None = None, *, stub: bool | None = None, database_url: str | None = None
) -> Broker:
    """Create the broker (a StubBroker when `stub`, or when no REDIS_URL), make it dramatiq's
    and this process's, declare the actors on it and register the dispatcher. `database_url`
    overrides the settings' for the worker's own connection (tests on a temporary file)."""
    global _broker
    settings = settings or get_settings()
    use_stub = not settings.redis_url if stub is None else stub
    broker = _new_broker(settings, use_stub)
    broker.add_middleware(AsyncIO())
    orm = ORM(settings, database_url)
    broker.add_middleware(orm)
    broker.add_middleware(Jobs(), before=Retries)
    dramatiq.set_broker(broker)
    _broker = broker
    set_orm(orm)
    apply_job_timing(settings)
    from workers.actors import jobs as actors  # declares the actors on this broker at first import

    actors.bind(broker)
    jobs.set_dispatcher(dispatch)
    log.debug("broker ready: %s", type(broker).__name__)
    return broker


def dispatch(job_id: int, delay_ms: int | None) -> None:
    """app.services.jobs' dispatcher: a `run_job` message with the job id."""
    from workers.actors.jobs import run_job

    run_job.send_with_options(args=(job_id,), delay=delay_ms or None)


def is_stub(broker: Broker | None = None) -> bool:
    return isinstance(broker or _broker, StubBroker)
