"""Invoice generation: which periods are due, usage measured and priced, invoices numbered and
written once.

Periods (`app.billing.periods`). A customer's invoices are dated on its plan's `billing_day` of
each month; each period runs from the day after the previous invoice's period_end (or the
assignment's billing_start) to the day before its invoice date. A customer that is behind gets
one invoice per missed period in the same run (at most `MAX_PERIODS_PER_RUN`, the next
run issues the rest).

Dates. `issued_on` is the invoice date of the period. The due date counts `due_days` from the
day the invoice is really generated (`as_of`), so a catch-up invoice dated months ago is not
overdue the moment it appears. Chargeback reports (companies in the enterprise edition), quota
usage reports and credit notes are INFORMATION: no due date, no payment states.

Numbers and exactly once (`app.services.invoice_writing`): the drafts of one call — every
customer and issuer of a billing.run batch — are written in one transaction, under the
issuers' number locks, skipping the periods already invoiced, numbered without gaps, with
their lines, notifications and audit entries in a constant number of statements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from typing import Any

from tortoise.functions import Max

from app.billing.periods import Period, due_periods
from app.billing.pricing import RateSpec, Usage, price
from app.models import Organization
from app.models.billing import (
    BillingItem,
    Invoice,
    InvoiceKind,
    InvoiceState,
    InvoiceType,
    PlanAssignment,
    SubscriptionPlan,
)
from app.models.jobs import Job
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.billing_usage import measure
from app.services.invoice_writing import BILLED_KINDS, Draft, write_drafts
from app.services.invoice_writing import Numbering as Numbering  # credit notes use these
from app.services.invoice_writing import write as write
from app.services.subscription_plans import rate_specs_many
from app.settings import get_settings

# --- snapshot, kinds and states -----------------------------------------------------------


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "value"):
        return value.value
    return value


def plan_snapshot(plan: SubscriptionPlan, rates: dict[BillingItem, RateSpec]) -> dict[str, Any]:
    """The plan as the invoice used it (decimals as strings)."""
    return {
        "id": plan.id,
        "name": plan.name,
        "currency": plan.currency,
        "tax_type": _text(plan.tax_type),
        "tax_rate_percent": _text(Decimal(plan.tax_rate_percent)),
        "discount_percent": _text(Decimal(plan.discount_percent)),
        "billing_day": plan.billing_day,
        "due_days": plan.due_days,
        "invoice_type": _text(plan.invoice_type),
        "rates": {
            item.value: {k: _text(v) for k, v in asdict(spec).items() if k != "item"}
            for item, spec in sorted(rates.items(), key=lambda kv: list(BillingItem).index(kv[0]))
        },
    }


def billed_kind(customer: Organization) -> InvoiceKind:
    """Departments of the enterprise edition get chargeback reports; everyone else invoices."""
    if get_settings().enterprise and customer.kind is OrgKind.COMPANY:
        return InvoiceKind.CHARGEBACK
    return InvoiceKind.INVOICE


def first_state(kind: InvoiceKind, invoice_type: InvoiceType) -> InvoiceState:
    if kind is not InvoiceKind.INVOICE or invoice_type is InvoiceType.QUOTA_USAGE:
        return InvoiceState.INFORMATION
    return InvoiceState.UNPAID


# --- generation ---------------------------------------------------------------------------


async def _last_ends(customer_ids: Sequence[int]) -> dict[int, date]:
    rows = (
        await Invoice.filter(customer_id__in=list(customer_ids), kind__in=list(BILLED_KINDS))
        .annotate(last=Max("period_end"))
        .group_by("customer_id")
        .values("customer_id", "last")
    )
    return {int(r["customer_id"]): _as_date(r["last"]) for r in rows if r["last"] is not None}


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def _measure(
    customer_ids: Sequence[int], period: Period, invoice_type: InvoiceType
) -> dict[int, list[Usage]]:
    return await measure(
        list(customer_ids),
        period.start,
        period.end,
        per_location=invoice_type is InvoiceType.DETAILED,
    )


def draft_for(
    assignment: PlanAssignment,
    issuer: Organization,
    period: Period,
    usage: list[Usage],
    rates: dict[BillingItem, RateSpec],
    as_of: date,
    snapshot: dict[str, Any] | None = None,
) -> Draft:
    """The priced invoice of one period (`snapshot`: the plan's, when already taken)."""
    plan: SubscriptionPlan = assignment.plan
    customer: Organization = assignment.customer
    kind = billed_kind(customer)
    invoice_type = InvoiceType(plan.invoice_type)
    lines, totals = price(
        usage,
        rates,
        plan.currency,
        Decimal(plan.discount_percent),
        Decimal(plan.tax_rate_percent),
        invoice_type,
    )
    state = first_state(kind, invoice_type)
    due_on = None
    if state is not InvoiceState.INFORMATION:
        due_on = date.fromordinal(max(period.invoice_date, as_of).toordinal() + plan.due_days)
    return Draft(
        customer=customer,
        issuer=issuer,
        plan=plan,
        kind=kind,
        type=invoice_type,
        period=period,
        issued_on=period.invoice_date,
        due_on=due_on,
        currency=plan.currency,
        lines=lines,
        totals=totals,
        snapshot=plan_snapshot(plan, rates) if snapshot is None else snapshot,
        state=state,
    )


async def generate_many(
    customer_ids: Sequence[int],
    as_of: date,
    job: Job | None = None,
    actor: Actor | None = None,
) -> dict[int, list[Invoice]]:
    """Generate every due invoice of these customers (see the module docstring); returns the
    invoices written now per customer (none for a customer with nothing due, no plan, or
    whose due invoices already exist)."""
    actor = actor or Actor(None)
    assignments = await PlanAssignment.filter(
        customer_id__in=list(customer_ids), customer__parent_id__isnull=False
    ).select_related("plan", "customer__parent")
    last = await _last_ends([a.customer.id for a in assignments])
    work: dict[tuple[date, date, InvoiceType], list[tuple[PlanAssignment, Period]]] = defaultdict(
        list
    )
    for a in assignments:
        plan: SubscriptionPlan = a.plan
        for period in due_periods(
            a.billing_start, plan.billing_day, last.get(a.customer.id), as_of
        ):
            work[(period.start, period.end, InvoiceType(plan.invoice_type))].append((a, period))
    if not work:
        return {}
    rates = await rate_specs_many(sorted({a.plan.id for a in assignments}))
    snapshots = {
        plan.id: plan_snapshot(plan, rates.get(plan.id, {}))
        for plan in {a.plan.id: a.plan for a in assignments}.values()
    }
    drafts: list[Draft] = []
    for (_start, _end, invoice_type), items in sorted(work.items(), key=lambda kv: kv[0][:2]):
        usage = await _measure([a.customer.id for a, _ in items], items[0][1], invoice_type)
        for a, period in items:
            issuer = a.customer.parent
            if issuer is None:  # the provider itself: billed by nobody (and filtered out)
                continue
            usages = usage.get(a.customer.id, [])
            plan_rates, snapshot = rates.get(a.plan.id, {}), snapshots[a.plan.id]
            drafts.append(draft_for(a, issuer, period, usages, plan_rates, as_of, snapshot))
    out: dict[int, list[Invoice]] = defaultdict(list)
    for invoice in await write_drafts(drafts, actor, job):
        out[invoice.customer_id].append(invoice)  # type: ignore[attr-defined]
    return dict(out)


async def generate(
    customer_id: int, as_of: date, job: Job | None = None, actor: Actor | None = None
) -> list[Invoice]:
    """The customer's due invoices, written once (idempotent: a repeat writes nothing)."""
    return (await generate_many([customer_id], as_of, job, actor)).get(customer_id, [])
