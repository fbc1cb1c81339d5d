"""licensing.collect: license usage recounted from the inventory, one month and product per
step (`app.services.licensing` has the counting rules).

Params: optional "month" (an ISO date, any day of it). Without it (the daily schedule) the job
counts the current month, and on the first day of a month the month that just ended too. The
job's organization narrows the companies counted to those at or below it (the scheduler's
platform job has none: every company). Each upsert keeps the month's highest count, so a
re-run, a retry or a second job of the same month changes nothing the first did not; the
checkpoint lists the steps already written, which a resumed run skips.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from app.authz.matrix import Functionality
from app.errors import BadInput
from app.jobs.context import JobContext, JobFailed
from app.jobs.registry import JobKind, register
from app.services import licensing


async def collect(ctx: JobContext) -> dict[str, Any]:
    point = dict(ctx.checkpoint)
    if "months" in point:
        months = [date.fromisoformat(m) for m in point["months"]]
    else:
        try:
            months = licensing.months_to_collect(ctx.params.get("month"))
        except BadInput as exc:
            raise JobFailed(f"params.month: {exc.message}") from None
    organization_id = ctx.job.organization_id  # type: ignore[attr-defined]
    done: dict[str, dict[str, int]] = dict(point.get("done", {}))
    steps = [(month, product) for month in months for product in licensing.PRODUCTS]
    for index, (month, product) in enumerate(steps):
        key = f"{month.isoformat()}/{product.value}"
        if key in done:
            continue
        await ctx.step(key)
        result = await licensing.collect_product(product, month, organization_id)
        done[key] = {
            "companies": result.companies,
            "units": result.units,
            "written": result.written,
        }
        await ctx.progress(
            100 * (index + 1) / len(steps),
            f"{key}: {result.units} units in {result.companies} companies",
            {"months": [m.isoformat() for m in months], "done": done},
        )
    return {"months": [m.isoformat() for m in months], "done": done}


LICENSING_COLLECT = register(
    JobKind(
        name=licensing.COLLECT_KIND,
        label="Count license usage",
        functionality=Functionality.LICENSING,
        handler=collect,
        time_limit_seconds=1800,
        max_attempts=3,
    )
)
