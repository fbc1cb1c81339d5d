"""billing.run: generate the due invoices of one customer or of every customer; billing.overdue:
unpaid invoices past their due date become OVERDUE (`app.services.invoice_generation` and
`app.services.invoices` hold the rules).

billing.run params: optional "customer_id" (one customer) and "as_of" (an ISO date; default:
the day the job was created, UTC, so a retried or resumed job bills the same day). A job
asked for by a user bills the customers that user's organization bills and may see (the
requester's rights as they are when the job runs; a role that may not generate invoices — the
Service Provider Invoice Auditor's "for generated invoices" — fails the job); the scheduler's
job (no requester) bills every customer with a plan. Customers go in id order, in batches; the
checkpoint records the last customer id done, so a killed run continues after it — and each
customer's generation is idempotent anyway (the unique key), so the batch in flight when it
died is completed, never doubled.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from tortoise.expressions import Subquery

from app.authz.capabilities import INVOICES
from app.authz.matrix import Action, Functionality
from app.authz.principal import Principal
from app.jobs.context import JobContext, JobFailed
from app.jobs.registry import JobKind, register
from app.jobs.requester import requester_principal
from app.models import Organization
from app.models.billing import Invoice, PlanAssignment
from app.services import invoices
from app.services.actor import Actor
from app.services.invoice_generation import generate_many
from app.services.invoices import OVERDUE_KIND, RUN_KIND, billable_q, may_generate

BATCH = 500  # customers per batch: one transaction, measured and written set-based


def _as_of(ctx: JobContext) -> date:
    raw = ctx.checkpoint.get("as_of") or ctx.params.get("as_of")
    if raw:
        try:
            return date.fromisoformat(str(raw))
        except ValueError:
            raise JobFailed(f"params.as_of: not an ISO date: {raw!r}") from None
    created: datetime = ctx.job.created_at
    return created.astimezone(UTC).date()


async def _requester(ctx: JobContext) -> Principal | None:
    user_id = ctx.job.requested_by_id  # type: ignore[attr-defined]
    if user_id is None:
        return None
    p = await requester_principal(user_id, INVOICES, Action.CREATE, "generate invoices")
    if not may_generate(p):
        raise JobFailed("the requesting user may act on generated invoices only")
    return p


async def run(ctx: JobContext) -> dict[str, Any]:
    as_of = _as_of(ctx)
    p = await _requester(ctx)
    customers: Any = PlanAssignment.all()
    if p is not None:
        customers = customers.filter(
            customer_id__in=Subquery(Organization.filter(billable_q(p)).values("id"))
        )
    customer_id = ctx.params.get("customer_id")
    if customer_id is not None:
        customers = customers.filter(customer_id=int(customer_id))
        if not await customers.exists():
            raise JobFailed("no customer with a subscription plan that you bill has this id")
    total = await customers.count()
    after = int(ctx.checkpoint.get("after", 0))
    done = int(ctx.checkpoint.get("done", 0))
    written = int(ctx.checkpoint.get("invoices", 0))
    if ctx.attempt > 1:
        # A run cut between a batch's commits and its checkpoint wrote invoices the checkpoint
        # does not count, and the resumed batch skips them: count this job's own rows.
        written = await Invoice.filter(job_id=ctx.job.id).count()
    actor = Actor(p)
    while True:
        ids = list(
            await customers.filter(customer_id__gt=after)
            .order_by("customer_id")
            .limit(BATCH)
            .values_list("customer_id", flat=True)
        )
        if not ids:
            break
        await ctx.step(f"customers {ids[0]}..{ids[-1]}")
        result = await generate_many(ids, as_of, ctx.job, actor)
        after, done = int(ids[-1]), done + len(ids)
        written += sum(len(v) for v in result.values())
        await ctx.progress(
            100 * done / max(total, 1),
            f"{done} of {total} customers, {written} invoices",
            {"as_of": as_of.isoformat(), "after": after, "done": done, "invoices": written},
        )
    return {"as_of": as_of.isoformat(), "customers": done, "invoices": written}


async def overdue(ctx: JobContext) -> dict[str, Any]:
    raw = ctx.params.get("on")
    try:
        on = date.fromisoformat(str(raw)) if raw else ctx.job.created_at.astimezone(UTC).date()
    except ValueError:
        raise JobFailed(f"params.on: not an ISO date: {raw!r}") from None
    changed = await invoices.mark_overdue(on)
    return {"on": on.isoformat(), "overdue": changed}


BILLING_RUN = register(
    JobKind(
        name=RUN_KIND,
        label="Generate invoices",
        functionality=Functionality.INVOICES,
        handler=run,
        time_limit_seconds=3 * 3600,
        max_attempts=5,
    )
)
BILLING_OVERDUE = register(
    JobKind(
        name=OVERDUE_KIND,
        label="Mark overdue invoices",
        functionality=Functionality.INVOICES,
        handler=overdue,
        time_limit_seconds=600,
        max_attempts=3,
    )
)
