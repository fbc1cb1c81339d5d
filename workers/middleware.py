"""Dramatiq middleware of Tenantry's workers.

ORM: Tortoise on the worker's event loop (the AsyncIO middleware's loop thread), opened in
`before_worker_boot` — before the worker threads take messages — and closed after the worker
threads have finished their messages. A failure raises MiddlewareError so the worker stops
instead of carrying on without a database.

Jobs: each message knows which worker thread runs it (the worker id the job row records), and
a `run_job` message that dramatiq dead-letters (the actor's time limit, an error escaping the
actor) leaves its job FAILED with the reason, not RUNNING until a recovery sweep.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware, MiddlewareError
from dramatiq.middleware.time_limit import TimeLimitExceeded
from tortoise import context as tortoise_context
from tortoise.context import TortoiseContext

from app.db import tortoise_config
from app.settings import Settings, get_settings

log = logging.getLogger("tenantry.worker")

T = TypeVar("T")

RUN_JOB = "run_job"

_worker_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tenantry_worker_id", default=None
)


def thread_worker_id() -> str:
    """hostname:pid:thread of the calling thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def current_worker_id() -> str:
    """The worker thread that runs the current message. Coroutines run on the event loop
    thread, but their context is copied from the worker thread that submitted them."""
    return _worker_id.get() or thread_worker_id()


class ORM(Middleware):
    """Tortoise on the worker's event loop. Where no global Tortoise context exists yet (a
    worker process) this one becomes the global fallback; inside the API process (the embedded
    worker) the API keeps its own and jobs activate this one explicitly (`activate()`)."""

    def __init__(self, settings: Settings | None = None, database_url: str | None = None):
        self.settings = settings
        self.database_url = database_url
        self.context: TortoiseContext | None = None

    def _loop(self):
        thread = get_event_loop_thread()
        if thread is None:
            raise MiddlewareError("the AsyncIO middleware must come before the ORM middleware")
        return thread

    async def _open(self) -> TortoiseContext:
        ctx = TortoiseContext()
        settings = self.settings or get_settings()
        config = tortoise_config(settings, database_url=self.database_url)
        use_global = tortoise_context._global_context is None
        # Current in this task while it initialises: model setup looks connections up through
        # the current context, and must not touch another one (the API's, in embedded mode).
        tortoise_context._current_context.set(ctx)
        await ctx.init(config=config, _enable_global_fallback=use_global)
        try:
            await ctx.db().execute_query("SELECT 1")
        except BaseException:
            await ctx.close_connections()
            raise
        return ctx

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        try:
            self.context = self._loop().run_coroutine(self._open())
        except MiddlewareError:
            raise
        except Exception as exc:
            log.critical("the worker cannot open the database: %s", exc)
            raise MiddlewareError(f"the worker cannot open the database: {exc}") from exc
        # Job events (progress, state) from this process reach subscribers in the API processes.
        from app.services import events

        self._owns_hub = events.current() is None
        events.install(self.settings)
        log.info("worker database ready")

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        # After the worker threads have finished their messages; emit_after runs middleware in
        # reverse order, so the AsyncIO loop (added before this one) is still running.
        ctx, self.context = self.context, None
        if ctx is None:
            return
        thread = get_event_loop_thread()
        if thread is None:
            return
        if getattr(self, "_owns_hub", False):
            from app.services import events

            try:
                thread.run_coroutine(events.shutdown())
            except Exception:
                log.exception("closing the worker's event hub failed")
        try:
            thread.run_coroutine(ctx.close_connections())
        except Exception:
            log.exception("closing the worker's database connections failed")

    def activate(self) -> None:
        """Make this worker's Tortoise context the current one in the calling task."""
        if self.context is not None:
            tortoise_context._current_context.set(self.context)

    def run(self, coro: Awaitable[T]) -> T:
        """Run a coroutine on the worker's loop with this context active (from a worker
        thread)."""

        async def wrapped() -> T:
            self.activate()
            return await coro

        return self._loop().run_coroutine(wrapped())


_orm: ORM | None = None


def set_orm(orm: ORM | None) -> None:
    global _orm
    _orm = orm


def activate_orm() -> None:
    """Called by actors at the start of each message: use the worker's Tortoise context."""
    if _orm is not None:
        _orm.activate()


class Jobs(Middleware):
    """Worker identity for each message, and the dead-letter path of `run_job` messages.
    Added before Retries: `after_` hooks run in reverse order, so this one sees the message
    already failed (dead-lettered) by Retries."""

    def before_process_message(self, broker: Any, message: Any) -> None:
        _worker_id.set(thread_worker_id())

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None or message.actor_name != RUN_JOB or not message.failed:
            return
        if not message.args:
            return
        job_id = int(message.args[0])
        if isinstance(exception, TimeLimitExceeded):
            reason = "time limit exceeded"
        else:
            reason = f"{type(exception).__name__}: {exception}"
        worker_id = current_worker_id()
        log.warning("job %s dead-lettered: %s", job_id, reason)
        if _orm is None:
            return
        from app.services import jobs

        try:
            _orm.run(jobs.fail(job_id, worker_id, reason))
        except Exception:
            log.exception("could not mark job %s failed; the recovery sweep will retry it", job_id)
