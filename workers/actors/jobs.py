"""The one actor: `run_job(job_id)`. The job row is the truth; the message carries its id only.

A message claims the job (a duplicate or a late redelivery claims nothing and stops), runs the
kind's handler with a JobContext while a background task keeps the claim alive (heartbeats),
and finishes the row: SUCCEEDED with the result, CANCELLED at a step boundary, retried later
with exponential backoff for transient errors, FAILED with the reason for anything else, or
parked when the handler waits (ContinueLater: the job is sent again with the wait's delay and
this thread is free meanwhile; the delivery that takes it back is a wake-up, not an attempt).
Dramatiq's own retries are off (max_retries=0): retries are the job row's. An error that
escapes (dramatiq's time limit, a database gone while finishing) dead-letters the message, and
workers.middleware.Jobs marks the job FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import dramatiq
from dramatiq.broker import Broker

from app.jobs import registry
from app.jobs.context import (
    ContinueLater,
    JobCancelled,
    JobContext,
    JobFailed,
    JobLost,
    is_transient,
)
from app.services import jobs
from app.settings import get_settings
from workers.broker import QUEUE, current
from workers.middleware import RUN_JOB, activate_orm, current_worker_id

log = logging.getLogger("tenantry.jobs")

# Dramatiq's limit is the backstop: each kind's own limit is enforced inside the actor.
MARGIN_SECONDS = 60


def actor_time_limit_ms() -> int:
    registry.load_kinds()
    longest = max((k.time_limit_seconds for k in registry.KINDS.values()), default=3600)
    return (longest + MARGIN_SECONDS) * 1000


def backoff_ms(attempt: int) -> int:
    """Exponential: base, 2×base, 4×base, … capped (attempt 1 is the first run)."""
    settings = get_settings()
    return int(
        min(settings.job_retry_max_ms, settings.job_retry_base_ms * 2 ** max(0, attempt - 1))
    )


def reason(exc: BaseException) -> str:
    if isinstance(exc, JobFailed):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _heartbeat(job_id: int, worker_id: str) -> None:
    while True:
        await asyncio.sleep(jobs.HEARTBEAT_INTERVAL)
        try:
            if not await jobs.heartbeat(job_id, worker_id):
                return
        except Exception as exc:  # the next beat may succeed; the sweep covers the rest
            log.warning("heartbeat of job %s failed: %s", job_id, exc)


async def execute(job_id: int, worker_id: str | None = None) -> str:
    """Run one delivery of the job. Returns what happened (for logs and tests): "skipped"
    (not claimed: duplicate, finished, someone else's), "succeeded", "failed", "cancelled",
    "retrying", "waiting" (parked) or "lost"."""
    worker_id = worker_id or current_worker_id()
    job = await jobs.claim(job_id, worker_id)
    woken = False
    if job is None:  # not claimable: perhaps parked, and this delivery is its wake-up
        job = await jobs.wake(job_id, worker_id)
        woken = job is not None
    if job is None:
        log.info("job %s not claimed by %s (duplicate or finished)", job_id, worker_id)
        return "skipped"
    try:
        kind = registry.get(job.kind)
    except KeyError as exc:
        await jobs.fail(job_id, worker_id, str(exc))
        return "failed"
    ctx = JobContext(job, worker_id, woken=woken, can_continue_later=True)
    beats = asyncio.create_task(_heartbeat(job_id, worker_id))
    try:
        return await _run(ctx, kind)
    finally:
        beats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beats


async def _run(ctx: JobContext, kind: registry.JobKind) -> str:
    job_id, worker_id = ctx.id, ctx.worker_id
    result: dict[str, Any] | None
    try:
        async with asyncio.timeout(kind.time_limit_seconds) as limit:
            result = await kind.handler(ctx)
    except TimeoutError as exc:
        if limit.expired():
            await jobs.fail(
                job_id, worker_id, f"time limit of {kind.time_limit_seconds} s exceeded"
            )
            return "failed"
        return await _failed(ctx, exc)
    except JobCancelled:
        await jobs.cancelled(job_id, worker_id)
        return "cancelled"
    except ContinueLater as wait:
        parked = await jobs.park(job_id, worker_id, wait.seconds, wait.message)
        return "waiting" if parked else "lost"
    except JobLost as exc:
        log.warning("%s", exc)
        return "lost"
    except Exception as exc:
        return await _failed(ctx, exc)
    await jobs.succeed(job_id, worker_id, result)
    return "succeeded"


async def _failed(ctx: JobContext, exc: Exception) -> str:
    if is_transient(exc):
        delay = backoff_ms(ctx.attempt)
        log.warning("job %s: transient failure, retry in %d ms: %s", ctx.id, delay, exc)
        await jobs.retry_later(ctx.id, ctx.worker_id, reason(exc), delay)
        return "retrying"
    if not isinstance(exc, JobFailed):
        log.exception("job %s (%s) failed", ctx.id, ctx.job.kind, exc_info=exc)
    await jobs.fail(ctx.id, ctx.worker_id, reason(exc))
    return "failed"


@dramatiq.actor(
    actor_name=RUN_JOB,
    queue_name=QUEUE,
    broker=current(),
    max_retries=0,
    time_limit=actor_time_limit_ms(),
)
async def run_job(job_id: int) -> None:
    activate_orm()
    await execute(job_id)


def bind(broker: Broker) -> None:
    """Declare the actors on `broker` (setup() was called again with another broker)."""
    if run_job.broker is not broker:
        run_job.broker = broker
        broker.declare_actor(run_job)
