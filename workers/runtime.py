"""The in-process worker of the embedded mode (no REDIS_URL): a dramatiq Worker with a few
threads on the StubBroker, inside the API process (`tenantry serve`, app.main's lifespan).

Tests and other modules use the same helpers:

    broker = setup(settings, stub=True)                    # dispatch into the stub, no worker
    await run_queued_inline(broker)                        # run what was sent, in this loop
    worker = start_worker(broker, threads=2)               # a real Worker (SQLite *file*)
    ...; broker.join(QUEUE, fail_fast=False); worker.join(); worker.stop()
"""

from __future__ import annotations

import logging
from datetime import timedelta

from dramatiq import Worker
from dramatiq.broker import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message

from app.services import jobs
from app.settings import Settings, get_settings
from workers.broker import QUEUE, current, setup

log = logging.getLogger("tenantry.worker")

_embedded: Worker | None = None
_booted: set[int] = set()


def _process_boot(broker: Broker) -> None:
    # The worker command does this once per process; it starts the time-limit watcher.
    if id(broker) not in _booted:
        _booted.add(id(broker))
        broker.emit_after("process_boot")


def start_worker(broker: Broker, threads: int = 2) -> Worker:
    """A dramatiq Worker on `broker` in this process (opens its own database connection on its
    own event loop: use a SQLite file or PostgreSQL, never sqlite://:memory:)."""
    _process_boot(broker)
    worker = Worker(broker, worker_threads=threads, worker_timeout=100)
    try:
        worker.start()
    except BaseException:
        worker.stop(timeout=1000)  # stops the event loop thread the AsyncIO middleware started
        raise
    return worker


def start_embedded_worker(settings: Settings | None = None) -> Worker | None:
    """Set up the in-process broker and start its worker (idempotent). None on an in-memory
    SQLite database, which a second connection cannot share: jobs then stay QUEUED."""
    global _embedded
    if _embedded is not None:
        return _embedded
    settings = settings or get_settings()
    broker = setup(settings, stub=True)
    if settings.database_url.startswith("sqlite://:memory:"):
        log.warning("in-memory SQLite: no in-process worker (jobs stay queued)")
        return None
    _embedded = start_worker(broker, settings.embedded_worker_threads)
    log.info("in-process worker started (%d threads)", settings.embedded_worker_threads)
    return _embedded


def stop_embedded_worker(timeout_ms: int = 10_000) -> None:
    """Stop the in-process worker; a job still running after `timeout_ms` is left RUNNING and
    resumed by the recovery sweep of the next start."""
    global _embedded
    worker, _embedded = _embedded, None
    if worker is not None:
        worker.stop(timeout=timeout_ms)


async def recover_orphans() -> list[int]:
    """At the start of the embedded mode, every QUEUED or RUNNING job is an orphan (the
    in-process queue died with the previous process): send them all again. A job another live
    process still runs keeps it (claims are conditional on a stale heartbeat)."""
    far = jobs.now() + jobs.UNCLAIMED_AFTER + jobs.STALE_AFTER + timedelta(days=1)
    return await jobs.recover(at=far)


async def start_for_app(settings: Settings) -> None:
    """The API's lifespan: the broker for dispatching, and in the embedded mode (no REDIS_URL,
    `embedded_worker` on, as `tenantry serve` has it) the in-process worker. With the worker
    off, a dispatcher someone already registered (a test's) is left in place."""
    if settings.redis_url:
        setup(settings)
        return
    if not settings.embedded_worker:
        if jobs._dispatcher is None:
            setup(settings, stub=True)  # jobs are accepted and stay queued
        return
    if start_embedded_worker(settings) is None:
        return
    try:
        recovered = await recover_orphans()
    except Exception as exc:  # the database is not migrated yet: nothing to recover
        log.warning("could not look for orphaned jobs: %s", exc)
        return
    if recovered:
        log.info("re-sent %d jobs left by the previous process", len(recovered))


def stop_for_app() -> None:
    stop_embedded_worker()


def queued_job_ids(broker: Broker) -> list[int]:
    """Take the `run_job` messages off a StubBroker's queues (delayed ones too), in order."""
    assert isinstance(broker, StubBroker)
    ids: list[int] = []
    for name in (QUEUE, f"{QUEUE}.DQ"):
        queue = broker.queues.get(name)
        while queue is not None and not queue.empty():
            message = Message.decode(queue.get_nowait())
            queue.task_done()
            if message.actor_name == "run_job":
                ids.append(int(message.args[0]))
    return ids


async def run_queued_inline(broker: Broker | None = None, worker_id: str = "inline") -> int:
    """Run the jobs sent to the StubBroker in this event loop with the caller's Tortoise
    context, until none are left (retries included, delays ignored). For tests on in-memory
    SQLite, where a worker thread could not see the database. Returns the deliveries run."""
    from workers.actors.jobs import execute

    broker = broker or current()
    runs = 0
    while ids := queued_job_ids(broker):  # type: ignore[arg-type]
        for job_id in ids:
            await execute(job_id, worker_id)
            runs += 1
    return runs
