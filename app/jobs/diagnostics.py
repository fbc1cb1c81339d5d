"""diagnostics.noop: the worker-fleet probe. It does nothing, in steps, and says so.

Operators and the benchmarks use it to measure enqueue-to-start latency and to check the
pipeline end to end; the crash tests use it to prove a resumed job repeats no step (each
completed step is persisted in the checkpoint, and a re-run continues after the last one).

Params: {"steps": n ≤ 1000, "step_seconds": s ≤ 10, "fail_transient_times": k (TransientError
on the first k attempts), "fail": "message" (fails permanently)}.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from app.authz.matrix import Functionality
from app.jobs.context import JobContext, JobFailed, TransientError
from app.jobs.registry import JobKind, register

MAX_STEPS = 1000
MAX_STEP_SECONDS = 10.0


def noop_params(params: dict[str, Any]) -> tuple[int, float, int, str | None]:
    """(steps, step_seconds, fail_transient_times, fail), checked. ValueError when out of
    bounds (the API may call this to answer BAD_USER_INPUT before creating the job)."""
    try:
        steps = int(params.get("steps", 1))
        step_seconds = float(params.get("step_seconds", 0))
        fail_transient = int(params.get("fail_transient_times", 0))
    except (TypeError, ValueError):
        raise ValueError("steps, step_seconds and fail_transient_times must be numbers") from None
    if not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 0 and {MAX_STEPS}")
    if not 0 <= step_seconds <= MAX_STEP_SECONDS:
        raise ValueError(f"step_seconds must be between 0 and {MAX_STEP_SECONDS:g}")
    if fail_transient < 0:
        raise ValueError("fail_transient_times must not be negative")
    fail = params.get("fail")
    return steps, step_seconds, fail_transient, str(fail) if fail else None


def _ms(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds() * 1000, 3)


async def noop(ctx: JobContext) -> dict[str, Any]:
    try:
        steps, step_seconds, fail_transient, fail = noop_params(ctx.params)
    except ValueError as exc:
        raise JobFailed(str(exc)) from None
    if ctx.attempt <= fail_transient:
        raise TransientError(
            f"asked to fail transiently {fail_transient} times (attempt {ctx.attempt})"
        )
    if fail:
        raise JobFailed(fail)
    completed: list[int] = [int(i) for i in ctx.checkpoint.get("completed", [])]
    resumed_from = len(completed)
    for i in range(resumed_from, steps):
        await ctx.step(f"step {i + 1} of {steps}")
        if step_seconds:
            await asyncio.sleep(step_seconds)
        completed.append(i)
        await ctx.progress(
            100 * (i + 1) / steps, f"step {i + 1} of {steps}", {"completed": completed}
        )
    job = ctx.job
    return {
        "steps": steps,
        "completed": completed,
        "resumed_from": resumed_from,
        "attempt": ctx.attempt,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "claimed_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
        # Enqueue-to-start: the first claim after the row was created.
        "latency_ms": _ms(job.started_at, job.created_at),
        # This attempt: its claim after its (re)dispatch.
        "claim_latency_ms": _ms(job.heartbeat_at, job.enqueued_at),
    }


NOOP = register(
    JobKind(
        name="diagnostics.noop",
        label="Worker diagnostics (no-op)",
        functionality=Functionality.CONFIGURATION,
        handler=noop,
        time_limit_seconds=int(MAX_STEPS * MAX_STEP_SECONDS) + 600,
        max_attempts=5,
    )
)
