"""Alarm evaluation jobs (app.alarms.evaluation has the rules).

* alarms.sweep — the scheduled sweep (the scheduler's single leader enqueues one per tick):
  incremental, full when `alarms_full_sweep_minutes` have passed since the last full one.
* alarms.evaluate — one organization's evaluation after an ingested batch, a failed login or an
  ended failover session (`evaluation.request_evaluation`, one job per organization and minute).

Both are idempotent: an evaluation applies what the evaluators see now, so a retried or
resumed run writes the same alarms (at most counting a repeat twice); cursors only move in the
transaction of the alarms they produced.
"""

from __future__ import annotations

from typing import Any

from app.alarms import evaluation
from app.authz.matrix import Functionality
from app.jobs.context import JobContext
from app.jobs.registry import JobKind, register


async def sweep(ctx: JobContext) -> dict[str, Any]:
    await ctx.step("sweep")
    report = await evaluation.sweep()
    return report.as_dict()


async def evaluate(ctx: JobContext) -> dict[str, Any]:
    organization_id = ctx.job.organization_id  # type: ignore[attr-defined]
    await ctx.step("evaluate")
    report = await evaluation.evaluate_organizations([organization_id] if organization_id else [])
    return report.as_dict()


ALARMS_SWEEP = register(
    JobKind(
        name=evaluation.SWEEP_KIND,
        label="Evaluate alarms",
        functionality=Functionality.ACTIVE_ALARMS,
        handler=sweep,
        time_limit_seconds=1800,
        max_attempts=2,
    )
)

ALARMS_EVALUATE = register(
    JobKind(
        name=evaluation.EVALUATE_KIND,
        label="Evaluate an organization's alarms",
        functionality=Functionality.ACTIVE_ALARMS,
        handler=evaluate,
        time_limit_seconds=600,
        max_attempts=3,
    )
)
