"""Job rows and their state machine. The row is the truth; the broker carries ids only.

QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED, and RUNNING → QUEUED on a retry.
Every transition is one conditional UPDATE, so a duplicated message, a second worker or a
recovery sweep racing a live worker changes nothing: whoever loses the race does nothing.

Waiting (app.jobs.context.ContinueLater): a RUNNING job can be *parked* — held by no worker
(`worker_id` is WAITING) with `heartbeat_at` set to when it is due, and sent again with that
delay (`park`). Its state stays RUNNING for the API (the progress message says what it waits
for; `heartbeatAt` reads as its next wake-up). The next delivery takes it back with `wake`,
which does not count an attempt. The recovery sweep treats a parked job like a held one whose
heartbeat is its due time: sent again only once it is STALE_AFTER overdue (its message lost),
never reclaimed as dead while it sleeps. A cancel request wakes a parked job at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q

from app.authz import scope
from app.authz.principal import Principal
from app.db import column
from app.errors import BadInput, Conflict, NotFound
from app.jobs import registry
from app.models import Job, JobState, Organization
from app.services.actor import Actor
from app.services.audit import audited

log = logging.getLogger("tenantry.jobs")

# The worker id of a parked job (waiting to continue later, held by no worker): never a real
# worker's (hostname:pid:thread).
WAITING = "(waiting)"
# Seconds without a heartbeat after which a RUNNING job is taken to have lost its worker.
HEARTBEAT_INTERVAL = 5.0
STALE_AFTER = timedelta(seconds=30)
# A QUEUED job not picked up within this time is sent again (the broker lost it).
UNCLAIMED_AFTER = timedelta(seconds=60)

Dispatcher = Callable[[int, int | None], None]
_dispatcher: Dispatcher | None = None


def set_dispatcher(dispatch: Dispatcher | None) -> None:
    """The broker module registers how a job id reaches a worker (`dispatch(id, delay_ms)`)."""
    global _dispatcher
    _dispatcher = dispatch


def now() -> datetime:
    return datetime.now(UTC)


async def dispatch(job_id: int, delay_ms: int | None = None) -> None:
    if _dispatcher is None:
        raise RuntimeError("no broker configured: call workers.broker.setup() first")
    await Job.filter(id=job_id).update(enqueued_at=now())
    _dispatcher(job_id, delay_ms)


@dataclass(frozen=True)
class JobEvent:
    """What subscribers see of a job after each change."""

    id: int
    state: str
    progress_percent: int
    progress_message: str
    error: str | None


EventPublisher = Callable[[JobEvent], Any]
_publishers: list[EventPublisher] = []


def on_event(publisher: EventPublisher) -> None:
    _publishers.append(publisher)


async def _publish(job_id: int) -> None:
    if not _publishers:
        return
    job = await Job.get_or_none(id=job_id)
    if job is None:
        return
    event = JobEvent(job.id, job.state.value, job.progress_percent, job.progress_message, job.error)
    for publish in _publishers:
        result = publish(event)
        if hasattr(result, "__await__"):
            await result


async def job_in_scope(p: Principal, pk: int) -> Job:
    """The job, if the principal may see it; NOT_FOUND otherwise (never FORBIDDEN)."""
    row = await Job.filter(scope.job_q(p), id=pk).first()
    if row is None:
        raise NotFound("job")
    return row


async def create(
    actor: Actor | None,
    kind_name: str,
    organization: Organization | None,
    params: dict[str, Any] | None = None,
    dedup_key: str | None = None,
    send: bool = True,
) -> tuple[Job, bool]:
    """A new QUEUED job, sent to the broker after its row is committed. With `dedup_key`, a
    second call returns the existing job (False) instead of creating another. With
    `send=False` (the row created inside the caller's transaction), the caller sends it with
    `dispatch(job.id)` once committed; until then the recovery sweep would."""
    try:
        kind = registry.get(kind_name)
    except KeyError as exc:
        raise BadInput(exc.args[0], field="kind") from None
    if dedup_key is not None:
        existing = await Job.get_or_none(dedup_key=dedup_key)
        if existing is not None:
            return existing, False
    fields: dict[str, Any] = dict(
        kind=kind.name,
        functionality=kind.functionality.value,
        organization=organization,
        requested_by_id=actor.principal.user_id if actor and actor.principal else None,
        params=params or {},
        max_attempts=kind.max_attempts,
        dedup_key=dedup_key,
    )
    try:
        if actor is not None:
            async with audited(
                actor, "jobCreate", "Job", organization_id=organization.id if organization else None
            ) as entry:
                job = await Job.create(**fields)
                entry.bind(job.id, kind=kind.name)
        else:
            job = await Job.create(**fields)
    except IntegrityError:
        if dedup_key is None:
            raise
        existing = await Job.get_or_none(dedup_key=dedup_key)
        if existing is None:
            raise
        return existing, False
    if send:
        await dispatch(job.id)
        await _publish(job.id)
    return job, True


async def claim(job_id: int, worker_id: str) -> Job | None:
    """Take the job for this worker: QUEUED, or RUNNING with a stale heartbeat (its worker
    died). None when somebody else has it, it is finished (a duplicate delivery) or it is
    parked (see `wake`)."""
    at = now()
    cancelled = await Job.filter(id=job_id, state=JobState.QUEUED, cancel_requested=True).update(
        state=JobState.CANCELLED, finished_at=at
    )
    if cancelled:
        await _publish(job_id)
        return None
    taken = await Job.filter(
        Q(id=job_id)
        & (
            Q(state=JobState.QUEUED)
            | (Q(state=JobState.RUNNING, heartbeat_at__lt=at - STALE_AFTER) & ~Q(worker_id=WAITING))
        )
    ).update(
        state=JobState.RUNNING,
        worker_id=worker_id,
        heartbeat_at=at,
        attempts=F("attempts") + 1,
    )
    if not taken:
        return None
    await Job.filter(id=job_id, started_at=None).update(started_at=at)
    await _publish(job_id)
    return await Job.get(id=job_id)


async def park(job_id: int, worker_id: str, seconds: float, message: str = "") -> bool:
    """The job waits (its handler raised ContinueLater): still RUNNING, released by this
    worker, due in `seconds` (`heartbeat_at`), and sent again with that delay. False when the
    job is no longer this worker's. Should the message not reach the broker, the recovery
    sweep sends the job once it is overdue."""
    changes: dict[str, Any] = {
        "worker_id": WAITING,
        "heartbeat_at": now() + timedelta(seconds=seconds),
    }
    if message:
        changes["progress_message"] = message[:500]
    parked = await Job.filter(id=job_id, worker_id=worker_id, state=JobState.RUNNING).update(
        **changes
    )
    if not parked:
        return False
    await _publish(job_id)
    try:
        await dispatch(job_id, max(1, round(seconds * 1000)))
    except Exception as exc:
        log.warning("job %s parked but not sent (the recovery sweep will): %s", job_id, exc)
    return True


async def wake(job_id: int, worker_id: str) -> Job | None:
    """Take a parked job back for this worker (its wait is over, or a cancel woke it early):
    attempts unchanged. None when it is not parked (finished, or another delivery has it)."""
    woken = await Job.filter(id=job_id, state=JobState.RUNNING, worker_id=WAITING).update(
        worker_id=worker_id, heartbeat_at=now()
    )
    return await Job.get(id=job_id) if woken else None


async def wake_now(job_id: int) -> bool:
    """Send a parked job at once (its cancel should not wait for the end of its wait). Call it
    once the cancel request is committed. False when the job is not parked."""
    if not await Job.filter(id=job_id, state=JobState.RUNNING, worker_id=WAITING).exists():
        return False
    await dispatch(job_id)
    return True


async def heartbeat(job_id: int, worker_id: str) -> bool:
    """Keep the claim alive. False when the job is no longer this worker's."""
    return bool(
        await Job.filter(id=job_id, worker_id=worker_id, state=JobState.RUNNING).update(
            heartbeat_at=now()
        )
    )


async def cancel_requested(job_id: int) -> bool:
    return await Job.filter(id=job_id, cancel_requested=True).exists()


async def progress(
    job_id: int,
    worker_id: str,
    percent: int,
    message: str = "",
    checkpoint: dict[str, Any] | None = None,
) -> bool:
    changes: dict[str, Any] = {
        "progress_percent": max(0, min(100, int(percent))),
        "progress_message": message[:500],
        "heartbeat_at": now(),
    }
    if checkpoint is not None:
        changes["checkpoint"] = checkpoint
    updated = await Job.filter(id=job_id, worker_id=worker_id, state=JobState.RUNNING).update(
        **changes
    )
    if updated:
        await _publish(job_id)
    return bool(updated)


async def _finish(job_id: int, worker_id: str, state: JobState, **changes: Any) -> bool:
    updated = await Job.filter(id=job_id, worker_id=worker_id, state=JobState.RUNNING).update(
        state=state, finished_at=now(), **changes
    )
    if updated:
        await _publish(job_id)
    return bool(updated)


async def succeed(job_id: int, worker_id: str, result: dict[str, Any] | None) -> bool:
    return await _finish(
        job_id, worker_id, JobState.SUCCEEDED, result=result or {}, progress_percent=100
    )


async def cancelled(job_id: int, worker_id: str) -> bool:
    return await _finish(job_id, worker_id, JobState.CANCELLED)


async def fail(job_id: int, worker_id: str, error: str) -> bool:
    return await _finish(job_id, worker_id, JobState.FAILED, error=error[:4000])


async def retry_later(job_id: int, worker_id: str, error: str, delay_ms: int) -> bool:
    """A transient failure: back to QUEUED (attempts are counted at each claim) and sent again
    after `delay_ms`; FAILED once the attempts are used up."""
    job = await Job.get_or_none(id=job_id)
    if job is None:
        return False
    if job.attempts >= job.max_attempts:
        return await fail(job_id, worker_id, f"gave up after {job.attempts} attempts: {error}")
    updated = await Job.filter(id=job_id, worker_id=worker_id, state=JobState.RUNNING).update(
        state=JobState.QUEUED, worker_id="", error=error[:4000]
    )
    if updated:
        await _publish(job_id)
        await dispatch(job_id, delay_ms)
    return bool(updated)


async def request_cancel(actor: Actor, job: Job) -> Job:
    """Cooperative: a QUEUED job is cancelled at once; a RUNNING one stops at its next step."""
    if job.state in {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}:
        raise Conflict(f"the job is already {job.state.value.lower()}")
    async with audited(actor, "jobCancel", "Job", job.id, job.organization_id) as entry:  # type: ignore[attr-defined]
        queued = await Job.filter(id=job.id, state=JobState.QUEUED).update(
            state=JobState.CANCELLED, cancel_requested=True, finished_at=now()
        )
        if not queued:
            await Job.filter(id=job.id, state=JobState.RUNNING).update(cancel_requested=True)
        entry.details["state"] = "CANCELLED" if queued else "cancel requested"
    await _publish(job.id)
    if not queued:
        await wake_now(job.id)
    return await Job.get(id=job.id)


async def recover(at: datetime | None = None) -> list[int]:
    """Send again the jobs a dead worker left RUNNING (stale heartbeat), the parked jobs whose
    wake-up is overdue by as much (their message was lost) and the QUEUED jobs the broker lost
    (never picked up). Claiming stays conditional, so a live worker keeps its job."""
    at = at or now()
    stale = await column(
        Job.filter(state=JobState.RUNNING, heartbeat_at__lt=at - STALE_AFTER), "id"
    )
    lost = await column(
        Job.filter(
            Q(state=JobState.QUEUED)
            & (Q(enqueued_at__lt=at - UNCLAIMED_AFTER) | Q(enqueued_at=None))
        ),
        "id",
    )
    ids: list[int] = sorted({*stale, *lost})
    for job_id in ids:
        await dispatch(job_id)
    return ids
