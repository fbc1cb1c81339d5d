"""Invoice generation: which periods are due, usage measured and priced, invoices numbered and
written once.

Periods. A customer's invoices are dated on its plan's `billing_day` of each month. The first
invoice is dated on the first such day after `PlanAssignment.billing_start` and covers
billing_start .. the day before its date; every later one starts the day after the previous
invoice's period_end (or at billing_start when the customer was re-assigned later than that)
and ends the day before its own date. A customer that is behind gets one invoice per missed
period in the same run (at most `MAX_PERIODS_PER_RUN`; the next run issues the rest).

Dates. `issued_on` is the invoice date of the period. The due date counts `due_days` from the
day the invoice is really generated (`as_of`), so a catch-up invoice dated months ago is not
overdue the moment it appears. Chargeback reports (companies in the enterprise edition), quota
usage reports and credit notes are INFORMATION: no due date, no payment states.

Numbers. "<ISSUER>-<year>-<sequence>" (e.g. "R1-2026-000123"): the issuer's name in capitals
and digits, the year of issued_on, a sequence per issuer and year without gaps, assigned while
holding the lock `invoice-number:<issuer id>` (`app.db.serialize`, until commit), so numbers
are unique and sequential even with several workers; the unique key (issuer, number) is the
last guard.

Exactly once. Each batch of one issuer's invoices is one transaction: lock, skip the periods
that already have an invoice (a repeated run, or one that crashed after committing some),
number, write invoice + lines + plan snapshot + the notification (outbox) + an audit entry per
invoice. The unique key (customer, kind, type, period_start, revision) backs this up: should a
batch still collide, it is retried invoice by invoice and a collision means "already there".
Invoices are written whole inside their transaction, so they are `generated` when committed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.functions import Max
from tortoise.transactions import in_transaction

from app.billing.pricing import PricedLine, RateSpec, Totals, Usage, price
from app.db import connection_name, serialize
from app.models import Organization
from app.models.billing import (
    BillingItem,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    InvoiceType,
    PlanAssignment,
    SubscriptionPlan,
)
from app.models.jobs import Job
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.audit import audited
from app.services.billing_usage import measure
from app.services.invoice_notifications import notify_issued
from app.services.subscription_plans import rate_specs_many
from app.settings import get_settings

MAX_PERIODS_PER_RUN = 120
BILLED_KINDS = (InvoiceKind.INVOICE.value, InvoiceKind.CHARGEBACK.value)


# --- periods ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive: the day before the invoice date
    invoice_date: date


def _add_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, day.day)


def next_invoice_date(after: date, billing_day: int) -> date:
    """The first date strictly after `after` that falls on `billing_day` (1–28)."""
    candidate = date(after.year, after.month, billing_day)
    return candidate if candidate > after else _add_month(candidate)


def due_periods(
    billing_start: date, billing_day: int, last_end: date | None, as_of: date
) -> list[Period]:
    """The periods whose invoice date is on or before `as_of`, after the last invoiced one."""
    start = billing_start
    if last_end is not None:
        start = max(start, date.fromordinal(last_end.toordinal() + 1))
    periods: list[Period] = []
    day = next_invoice_date(start, billing_day)
    while day <= as_of and len(periods) < MAX_PERIODS_PER_RUN:
        periods.append(Period(start, date.fromordinal(day.toordinal() - 1), day))
        start, day = day, _add_month(day)
    return periods


# --- numbers ------------------------------------------------------------------------------


def issuer_code(issuer: Organization) -> str:
    return re.sub(r"[^A-Z0-9]", "", issuer.name.upper())[:12] or f"ORG{issuer.id}"


async def last_sequence(issuer_id: int, year: int) -> int:
    """The issuer's highest sequence of `year` (0: none yet). Call while holding the issuer's
    number lock: within it, invoices of one issuer and year are inserted in number order."""
    number = (
        await Invoice.filter(
            issuer_id=issuer_id, issued_on__gte=date(year, 1, 1), issued_on__lte=date(year, 12, 31)
        )
        .order_by("-id")
        .first()
        .values_list("number", flat=True)
    )
    return int(str(number).rsplit("-", 1)[1]) if number else 0


class Numbering:
    """Numbers for one issuer inside one transaction that holds its number lock."""

    def __init__(self, issuer: Organization) -> None:
        self.issuer = issuer
        self.code = issuer_code(issuer)
        self.last: dict[int, int] = {}

    async def lock(self) -> None:
        await serialize(f"invoice-number:{self.issuer.id}")

    async def next(self, issued_on: date) -> str:
        year = issued_on.year
        if year not in self.last:
            self.last[year] = await last_sequence(self.issuer.id, year)
        self.last[year] += 1
        return f"{self.code}-{year}-{self.last[year]:06d}"


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


# --- writing ------------------------------------------------------------------------------


@dataclass
class Draft:
    """One invoice to write: everything decided before the transaction."""

    customer: Organization
    issuer: Organization
    plan: SubscriptionPlan | None
    kind: InvoiceKind
    type: InvoiceType
    period: Period
    issued_on: date
    due_on: date | None
    currency: str
    lines: list[PricedLine]
    totals: Totals
    snapshot: dict[str, Any]
    state: InvoiceState
    revision: int = 0
    corrects_id: int | None = None


def invoice_lines(invoice: Invoice, lines: Sequence[PricedLine]) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice_id=invoice.id,
            position=i + 1,
            location_id=line.location_id,
            item=line.item,
            description=line.description[:300],
            unit=line.unit,
            quantity=line.quantity,
            free_allowance=line.free_allowance,
            billable_quantity=line.billable_quantity,
            rate=line.rate,
            amount=line.amount,
        )
        for i, line in enumerate(lines)
    ]


async def write(draft: Draft, number: str, actor: Actor, job: Job | None, action: str) -> Invoice:
    """Insert the invoice, its lines and its notification, audited (inside a transaction)."""
    async with audited(actor, action, "Invoice", organization_id=draft.customer.id) as entry:
        invoice = await Invoice.create(
            customer=draft.customer,
            issuer=draft.issuer,
            plan=draft.plan,
            kind=draft.kind,
            type=draft.type,
            revision=draft.revision,
            corrects_id=draft.corrects_id,
            number=number,
            period_start=draft.period.start,
            period_end=draft.period.end,
            issued_on=draft.issued_on,
            due_on=draft.due_on,
            currency=draft.currency,
            subtotal=draft.totals.subtotal,
            discount=draft.totals.discount,
            tax=draft.totals.tax,
            total=draft.totals.total,
            plan_snapshot=draft.snapshot,
            state=draft.state,
            generated=True,
            job=job,
        )
        if draft.lines:
            await InvoiceLine.bulk_create(invoice_lines(invoice, draft.lines))
        await notify_issued(invoice)
        entry.bind(
            invoice.id,
            number=number,
            kind=draft.kind.value,
            periodStart=draft.period.start.isoformat(),
            periodEnd=draft.period.end.isoformat(),
            total=str(draft.totals.total),
            currency=draft.currency,
        )
    return invoice


async def _existing_starts(drafts: Sequence[Draft]) -> set[tuple[int, date]]:
    rows = await Invoice.filter(
        customer_id__in=sorted({d.customer.id for d in drafts}),
        period_start__in=sorted({d.period.start for d in drafts}),
        kind__in=list(BILLED_KINDS),
    ).values_list("customer_id", "period_start")
    return {(int(c), s) for c, s in rows}


async def _write_batch(
    issuer: Organization, drafts: Sequence[Draft], actor: Actor, job: Job | None
) -> list[Invoice]:
    numbering = Numbering(issuer)
    written: list[Invoice] = []
    async with in_transaction(connection_name()):
        await numbering.lock()
        there = await _existing_starts(drafts)
        for draft in drafts:
            if (draft.customer.id, draft.period.start) in there:
                continue
            number = await numbering.next(draft.issued_on)
            written.append(await write(draft, number, actor, job, "invoiceGenerate"))
    return written


async def write_issuer_drafts(
    issuer: Organization, drafts: Sequence[Draft], actor: Actor, job: Job | None
) -> list[Invoice]:
    """Write one issuer's drafts once: the whole batch in one transaction, or, when it
    collides with invoices written meanwhile, one by one (a collision: already there)."""
    try:
        return await _write_batch(issuer, drafts, actor, job)
    except IntegrityError:
        pass
    written: list[Invoice] = []
    for draft in drafts:
        try:
            written += await _write_batch(issuer, [draft], actor, job)
        except IntegrityError:
            continue
    return written


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
) -> Draft:
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
        snapshot=plan_snapshot(plan, rates),
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
    by_issuer: dict[int, list[Draft]] = defaultdict(list)
    issuers: dict[int, Organization] = {}
    for (_start, _end, invoice_type), items in sorted(work.items(), key=lambda kv: kv[0][:2]):
        usage = await _measure([a.customer.id for a, _ in items], items[0][1], invoice_type)
        for a, period in items:
            issuer = a.customer.parent
            if issuer is None:  # the provider itself: billed by nobody (and filtered out)
                continue
            usages = usage.get(a.customer.id, [])
            draft = draft_for(a, issuer, period, usages, rates.get(a.plan.id, {}), as_of)
            issuers[draft.issuer.id] = draft.issuer
            by_issuer[draft.issuer.id].append(draft)
    out: dict[int, list[Invoice]] = defaultdict(list)
    for issuer_id, drafts in sorted(by_issuer.items()):
        drafts.sort(key=lambda d: (d.issued_on, d.customer.id))
        for invoice in await write_issuer_drafts(issuers[issuer_id], drafts, actor, job):
            out[invoice.customer_id].append(invoice)  # type: ignore[attr-defined]
    return dict(out)


async def generate(
    customer_id: int, as_of: date, job: Job | None = None, actor: Actor | None = None
) -> list[Invoice]:
    """The customer's due invoices, written once (idempotent: a repeat writes nothing)."""
    return (await generate_many([customer_id], as_of, job, actor)).get(customer_id, [])
