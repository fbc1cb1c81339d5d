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

Usage (`app.services.billing_usage.measure_many`): every due invoice of a call — whatever
its period and invoice type — is measured in one call, a constant number of statements.
Pricing (`Terms`): the plan as it is now; a correction prices with the original's snapshot.

Numbers and exactly once (`app.services.invoice_writing`): the drafts of one call — every
customer and issuer of a billing.run batch — are written in one transaction, under the
issuers' number locks, skipping the periods already invoiced, numbered without gaps, with
their lines, notifications and audit entries in a constant number of statements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
    StorageMode,
    SubscriptionPlan,
)
from app.models.jobs import Job
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.billing_usage import Wanted, measure_many
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


@dataclass(frozen=True)
class Terms:
    """What prices an invoice: the plan's figures and rates, from the plan as it is (a run)
    or read back from an invoice's snapshot (a correction prices with the original's plan)."""

    currency: str
    discount_percent: Decimal
    tax_rate_percent: Decimal
    invoice_type: InvoiceType
    due_days: int
    rates: dict[BillingItem, RateSpec]


def plan_terms(plan: SubscriptionPlan, rates: dict[BillingItem, RateSpec]) -> Terms:
    return Terms(
        currency=plan.currency,
        discount_percent=Decimal(plan.discount_percent),
        tax_rate_percent=Decimal(plan.tax_rate_percent),
        invoice_type=InvoiceType(plan.invoice_type),
        due_days=plan.due_days,
        rates=rates,
    )


def snapshot_terms(snapshot: dict[str, Any]) -> Terms | None:
    """The terms `plan_snapshot` kept (None when the snapshot lacks them: an invoice written
    without one)."""
    try:
        rates = {
            BillingItem(item): RateSpec(
                item=BillingItem(item),
                rate=None if spec["rate"] is None else Decimal(spec["rate"]),
                free_allowance=Decimal(spec["free_allowance"]),
                storage_mode=StorageMode(spec["storage_mode"]),
                block_gb=int(spec["block_gb"]),
                round_up=bool(spec["round_up"]),
            )
            for item, spec in snapshot["rates"].items()
        }
        return Terms(
            currency=str(snapshot["currency"]),
            discount_percent=Decimal(snapshot["discount_percent"]),
            tax_rate_percent=Decimal(snapshot["tax_rate_percent"]),
            invoice_type=InvoiceType(snapshot["invoice_type"]),
            due_days=int(snapshot["due_days"]),
            rates=rates,
        )
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None


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


def wanted(customer_id: int, period: Period, invoice_type: InvoiceType) -> Wanted:
    """The measurement an invoice of this type and period needs (DETAILED: per location)."""
    return Wanted(customer_id, period.start, period.end, invoice_type is InvoiceType.DETAILED)


def draft_for(
    assignment: PlanAssignment,
    issuer: Organization,
    period: Period,
    usage: list[Usage],
    rates: dict[BillingItem, RateSpec],
    as_of: date,
    snapshot: dict[str, Any] | None = None,
) -> Draft:
    """The priced invoice of one period, with the assigned plan as it is now (`snapshot`: the
    plan's, when already taken)."""
    plan: SubscriptionPlan = assignment.plan
    snapshot = plan_snapshot(plan, rates) if snapshot is None else snapshot
    terms = plan_terms(plan, rates)
    return priced_draft(assignment.customer, issuer, plan, period, usage, terms, snapshot, as_of)


def priced_draft(
    customer: Organization,
    issuer: Organization,
    plan: SubscriptionPlan | None,
    period: Period,
    usage: list[Usage],
    terms: Terms,
    snapshot: dict[str, Any],
    as_of: date,
) -> Draft:
    """The invoice of one period priced with `terms` (`snapshot`: the same plan, stored)."""
    kind = billed_kind(customer)
    lines, totals = price(
        usage,
        terms.rates,
        terms.currency,
        terms.discount_percent,
        terms.tax_rate_percent,
        terms.invoice_type,
    )
    state = first_state(kind, terms.invoice_type)
    due_on = None
    if state is not InvoiceState.INFORMATION:
        due_on = date.fromordinal(max(period.invoice_date, as_of).toordinal() + terms.due_days)
    return Draft(
        customer=customer,
        issuer=issuer,
        plan=plan,
        kind=kind,
        type=terms.invoice_type,
        period=period,
        issued_on=period.invoice_date,
        due_on=due_on,
        currency=terms.currency,
        lines=lines,
        totals=totals,
        snapshot=snapshot,
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
    work: list[tuple[PlanAssignment, Period, Wanted]] = []
    for a in assignments:
        plan: SubscriptionPlan = a.plan
        for period in due_periods(
            a.billing_start, plan.billing_day, last.get(a.customer.id), as_of
        ):
            work.append((a, period, wanted(a.customer.id, period, InvoiceType(plan.invoice_type))))
    if not work:
        return {}
    rates = await rate_specs_many(sorted({a.plan.id for a in assignments}))
    snapshots = {
        plan.id: plan_snapshot(plan, rates.get(plan.id, {}))
        for plan in {a.plan.id: a.plan for a in assignments}.values()
    }
    # Every due period of the batch measured together: a constant number of statements.
    usage = await measure_many(w for _, _, w in work)
    drafts: list[Draft] = []
    for a, period, w in work:
        issuer = a.customer.parent
        if issuer is None:  # the provider itself: billed by nobody (and filtered out)
            continue
        plan_rates, snapshot = rates.get(a.plan.id, {}), snapshots[a.plan.id]
        drafts.append(draft_for(a, issuer, period, usage[w], plan_rates, as_of, snapshot))
    out: dict[int, list[Invoice]] = defaultdict(list)
    for invoice in await write_drafts(drafts, actor, job):
        out[invoice.customer_id].append(invoice)  # type: ignore[attr-defined]
    return dict(out)


async def generate(
    customer_id: int, as_of: date, job: Job | None = None, actor: Actor | None = None
) -> list[Invoice]:
    """The customer's due invoices, written once (idempotent: a repeat writes nothing)."""
    return (await generate_many([customer_id], as_of, job, actor)).get(customer_id, [])
