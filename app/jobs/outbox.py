"""outbox.deliver: the platform's notification sweep (organization None), every 15 s.

Delivers due outbox messages in batches until none is due (or MAX_BATCHES were done; the next
tick carries on). Idempotent by construction: each message is claimed by a conditional UPDATE
before it is sent (app.services.outbox), so a retried or concurrent job never sends one twice.
"""

from __future__ import annotations

from typing import Any

from app.authz.matrix import Functionality
from app.jobs.context import JobContext
from app.jobs.registry import JobKind, register
from app.services import outbox

BATCH = 100
MAX_BATCHES = 20


async def deliver(ctx: JobContext) -> dict[str, Any]:
    totals = {"sent": 0, "retry": 0, "failed": 0, "lost": 0}
    for batch in range(MAX_BATCHES):
        await ctx.step(f"batch {batch + 1}")
        counts = await outbox.deliver_due(f"job-{ctx.id}", limit=BATCH)
        for key, value in counts.items():
            totals[key] += value
        if sum(counts.values()) < BATCH:
            break
    return totals


OUTBOX_DELIVER = register(
    JobKind(
        name="outbox.deliver",
        label="Deliver notifications (e-mail, webhooks)",
        functionality=Functionality.CONFIGURATION,
        handler=deliver,
        time_limit_seconds=600,
        max_attempts=1,
    )
)
