"""What a job handler sees of its job: parameters, the persisted checkpoint, progress reports,
cooperative cancellation at step boundaries and waiting without holding a worker thread.

    async def handler(ctx: JobContext) -> dict | None:
        done = ctx.checkpoint.get("done", 0)          # resume where a crashed run stopped
        for i in range(done, n):
            await ctx.step(f"item {i}")               # raises JobCancelled when asked to stop
            ...                                       # the step's work
            await ctx.progress(100 * (i + 1) // n, f"item {i}", {"done": i + 1})
        return {"items": n}

Errors a handler raises decide what happens to the job: `TransientError` (and connection
errors, see `is_transient`) → retried later with backoff; `JobCancelled` → CANCELLED;
`ContinueLater` → the job waits (below); anything else → FAILED with its reason.

Waiting ("continue later"): a handler that has to wait (a VM booting, a pause between steps)
calls `await ctx.wait(seconds, message)`. Run by the job actor, a wait of INLINE_WAIT_SECONDS
or more raises `ContinueLater`: the actor parks the job (app.services.jobs.park: still RUNNING,
held by no worker, due at the end of the wait) and sends it again with that delay, and the
worker thread takes other messages meanwhile. The next delivery runs the handler from the top
with `ctx.woken` set: like a resumption, it finds where it was in its checkpoint (its own
persisted steps), but nothing was interrupted — it is not an attempt. A wake-up can come early
(a cancel wakes a waiting job at once; the recovery sweep sends an overdue one again), so a
handler works out from its checkpoint and the clock what is left and may wait again. Shorter
waits, and waits outside the actor (`can_continue_later` off: a JobContext built by hand),
sleep in place. Each delivery is limited by the kind's time limit on its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tortoise.exceptions import DBConnectionError

from app.models import Job
from app.services import jobs


class TransientError(Exception):
    """A failure that may go away by itself (a peer down, a timeout): the job is retried."""


class JobFailed(Exception):
    """A permanent failure with a message meant for the job's reader (no traceback, no type)."""


class JobCancelled(Exception):
    """Raised at a step boundary when a cancel was requested: the job ends CANCELLED."""


class ContinueLater(Exception):
    """Raised by `JobContext.wait`: park the job and deliver it again in `seconds`."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(f"continue in {seconds:g} s" + (f": {message}" if message else ""))
        self.seconds = seconds
        self.message = message


# Waits shorter than this are slept in the worker thread: parking costs a few statements and a
# broker round trip; holding the thread for the first, short polls of a boot costs less.
INLINE_WAIT_SECONDS = 0.1


class JobLost(Exception):
    """The job is no longer this worker's (finished elsewhere, or reclaimed after this worker
    missed its heartbeats): stop at once and write nothing more."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [TransientError, OSError, DBConnectionError]
    try:
        import asyncpg

        found += [
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.TooManyConnectionsError,
        ]
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        pass
    try:
        import redis.exceptions

        found += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    return tuple(found)


TRANSIENT_ERRORS = _connection_errors()


def is_transient(exc: BaseException) -> bool:
    """TransientError, or a connection error anywhere in the exception's chain (drivers are
    often wrapped by the ORM)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (JobFailed, JobCancelled, JobLost, ContinueLater)):
            return False
        if isinstance(current, TRANSIENT_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class JobContext:
    def __init__(
        self, job: Job, worker_id: str, woken: bool = False, can_continue_later: bool = False
    ) -> None:
        self.job = job
        self.worker_id = worker_id
        # This delivery continues a wait (ContinueLater), not a first run or a resumption.
        self.woken = woken
        # Set by the job actor, which parks the job when a wait raises ContinueLater.
        self.can_continue_later = can_continue_later
        # The persisted steps: what earlier runs of this job have already done.
        self.checkpoint: dict[str, Any] = dict(job.checkpoint or {})
        self.current_step = ""
        self.percent = job.progress_percent

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.job.params or {})

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry or resume, …"""
        return self.job.attempts

    async def progress(
        self, percent: float, message: str = "", checkpoint: dict[str, Any] | None = None
    ) -> None:
        """Report progress (and heartbeat); with `checkpoint`, persist it in the same UPDATE,
        so a re-run resumes after this point. JobLost when the job is no longer ours."""
        if checkpoint is not None:
            self.checkpoint = dict(checkpoint)
        self.percent = round(percent)
        ok = await jobs.progress(
            self.job.id, self.worker_id, self.percent, message, checkpoint=checkpoint
        )
        if not ok:
            raise JobLost(f"job {self.job.id} is no longer held by {self.worker_id}")

    async def save_checkpoint(self, checkpoint: dict[str, Any], message: str = "") -> None:
        """Persist the checkpoint, keeping the current percentage."""
        await self.progress(self.percent, message, checkpoint)

    async def step(self, name: str) -> None:
        """A step boundary: stop here (JobCancelled) when a cancel was requested."""
        self.current_step = name
        if await jobs.cancel_requested(self.job.id):
            raise JobCancelled(f"cancelled before {name}")

    async def wait(self, seconds: float, message: str = "") -> None:
        """Wait `seconds`: slept here when short (or outside the actor); otherwise raises
        ContinueLater, and the handler runs again from its checkpoint once the time is up (see
        the module's docstring). `message` is the job's progress message meanwhile."""
        if self.can_continue_later and seconds >= INLINE_WAIT_SECONDS:
            raise ContinueLater(seconds, message)
        await asyncio.sleep(max(0.0, seconds))
