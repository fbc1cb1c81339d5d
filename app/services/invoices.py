"""Invoices: who sees which (row scope), and their life cycle after generation.

Scope. An invoice is between its issuer (the customer's parent) and its customer. A caller sees
the invoices whose customer is in their tree *and* that their own organization issued or
received: provider staff see what the provider bills its resellers and direct companies (not
what a reseller bills its companies: that is between the reseller and its company), reseller
staff what they bill their companies and what the provider bills them, a company (department)
user its own company's. Staff limited to some companies see only those companies' invoices.
The matrix cell's rule narrows further in SQL (`engine.rule_filter`: the Service Provider
Invoice Auditor's "Full (for generated invoices)" → generated ones only). Outside the scope an
invoice is NOT_FOUND.

States (`InvoiceState`):

    UNPAID ──(due date passed, daily job)──▶ OVERDUE
    UNPAID / OVERDUE ──mark paid──▶ PAID ──mark unpaid──▶ UNPAID (OVERDUE when past due)
    any but CREDITED ──correct──▶ CREDITED (+ a CREDIT_NOTE and a new invoice, revision n+1,
                                   priced with the original's plan snapshot)
    INFORMATION: chargeback reports, quota usage reports, credit notes (no payment states)

Each change is one conditional UPDATE (the state it starts from is part of the WHERE), so two
concurrent requests cannot both win: the loser gets CONFLICT. Nothing is ever deleted.
Generation lives in `app.services.invoice_generation`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from tortoise.expressions import Q, Subquery

from app.authz import engine, scope
from app.authz.capabilities import INVOICES
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.billing.pricing import PricedLine, Totals
from app.errors import BadInput, Conflict, Forbidden, NotFound
from app.models import Job, Organization
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
from app.services import invoice_generation as gen
from app.services import jobs
from app.services.actor import Actor
from app.services.audit import audited
from app.services.billing_usage import measure_many
from app.services.guards import require
from app.services.invoice_notifications import notify_resent

PAYABLE = (InvoiceState.UNPAID, InvoiceState.OVERDUE)
RUN_KIND = "billing.run"
OVERDUE_KIND = "billing.overdue"


def invoice_q(p: Principal) -> Q:
    """Invoices the principal may see, as SQL (see the module's docstring)."""
    customers = Organization.filter(scope.org_q(p)).values("id")
    q = Q(customer_id__in=Subquery(customers)) & (
        Q(issuer_id=p.organization_id) | Q(customer_id=p.organization_id)
    )
    narrowed = engine.rule_filter(p, INVOICES)
    return q & narrowed if narrowed is not None else q


async def invoice_in_scope(p: Principal, pk: int) -> Invoice:
    row = await Invoice.filter(invoice_q(p), id=pk).select_related("customer").first()
    if row is None:
        raise NotFound("invoice")
    return row


def billable_q(p: Principal) -> Q:
    """Customers (organizations) the principal's organization bills and may see: those are
    the invoices it may generate."""
    return scope.org_q(p) & Q(parent_id=p.organization_id)


def may_generate(p: Principal) -> bool:
    """Generating writes invoices that are not generated yet: a cell rule limited to
    generated invoices refuses it (the engine decides, on such a target)."""
    return engine.can(p, INVOICES, Action.CREATE, Target(kind=INVOICES.kind, generated=False))


async def start_generation(actor: Actor, customer_id: int | None, as_of: date | None) -> Job:
    """Starts `billing.run` for one customer or every customer the caller bills (the jobs
    service writes the audit entry). Invoices dated after today cannot be generated."""
    p = actor.p
    require(p, INVOICES, Action.CREATE)
    if not may_generate(p):
        raise Forbidden(f"your role ({p.role.name}) may act on generated invoices only")
    day = as_of or today()
    if day > today():
        raise BadInput("the date has not come yet", field="input.asOf")
    params: dict[str, object] = {"as_of": day.isoformat()}
    if customer_id is not None:
        customer = await Organization.filter(billable_q(p), id=customer_id).first()
        if customer is None:
            raise NotFound("customer", field="input.customerId")
        if not await PlanAssignment.exists(customer_id=customer_id):
            raise BadInput("the customer has no subscription plan", field="input.customerId")
        params["customer_id"] = customer_id
    organization = await Organization.get(id=p.organization_id)
    job, _ = await jobs.create(actor, RUN_KIND, organization, params)
    return job


def target(invoice: Invoice, customer: Organization | None = None) -> Target:
    """What the engine needs of an invoice (its customer must be loaded, or given)."""
    customer = customer or invoice.customer
    return Target(
        kind=INVOICES.kind,
        organization_id=customer.id,
        organization_kind=customer.kind,
        generated=invoice.generated,
    )


def today() -> date:
    return datetime.now(UTC).date()


async def _acted_on(actor: Actor, invoice_id: int) -> Invoice:
    """The invoice in the actor's scope that the engine lets them UPDATE."""
    p = actor.p
    require(p, INVOICES, Action.UPDATE)
    invoice = await invoice_in_scope(p, invoice_id)
    require(p, INVOICES, Action.UPDATE, target(invoice))
    return invoice


async def _reload(invoice: Invoice) -> Invoice:
    return await Invoice.filter(id=invoice.id).select_related("customer").get()


async def mark_paid(actor: Actor, invoice_id: int, at: datetime | None = None) -> Invoice:
    invoice = await _acted_on(actor, invoice_id)
    paid_at = at or datetime.now(UTC)
    async with audited(
        actor, "invoiceMarkPaid", "Invoice", invoice.id, invoice.customer.id
    ) as entry:
        changed = await Invoice.filter(
            id=invoice.id, kind__not=InvoiceKind.CREDIT_NOTE.value, state__in=list(PAYABLE)
        ).update(state=InvoiceState.PAID, paid_at=paid_at)
        if not changed:
            raise Conflict(f"a {invoice.state.value} invoice cannot be marked paid")
        entry.details.update(number=invoice.number, previous=invoice.state.value)
    return await _reload(invoice)


async def mark_unpaid(actor: Actor, invoice_id: int, on: date | None = None) -> Invoice:
    """PAID → UNPAID, or OVERDUE when its due date has passed already."""
    invoice = await _acted_on(actor, invoice_id)
    day = on or today()
    back = (
        InvoiceState.OVERDUE
        if invoice.due_on is not None and invoice.due_on < day
        else InvoiceState.UNPAID
    )
    async with audited(
        actor, "invoiceMarkUnpaid", "Invoice", invoice.id, invoice.customer.id
    ) as entry:
        changed = await Invoice.filter(id=invoice.id, state=InvoiceState.PAID.value).update(
            state=back, paid_at=None
        )
        if not changed:
            raise Conflict(f"a {invoice.state.value} invoice cannot be marked unpaid")
        entry.details.update(number=invoice.number, state=back.value)
    return await _reload(invoice)


async def resend(actor: Actor, invoice_id: int) -> Invoice:
    """Queue the invoice's notification again (through the outbox, in this transaction)."""
    invoice = await _acted_on(actor, invoice_id)
    async with audited(actor, "invoiceResend", "Invoice", invoice.id, invoice.customer.id) as entry:
        sent_at = datetime.now(UTC)
        await Invoice.filter(id=invoice.id).update(sent_at=sent_at)
        invoice.sent_at = sent_at
        await notify_resent(invoice)
        entry.details.update(number=invoice.number)
    return await _reload(invoice)


async def mark_overdue(on: date | None = None, actor: Actor | None = None) -> int:
    """UNPAID invoices whose due date is before `on` (today) become OVERDUE: one UPDATE, one
    audit entry with the count. Returns how many changed."""
    day = on or today()
    async with audited(actor or Actor(None), "invoiceMarkOverdue", "Invoice") as entry:
        changed = await Invoice.filter(state=InvoiceState.UNPAID.value, due_on__lt=day).update(
            state=InvoiceState.OVERDUE
        )
        entry.details.update(on=day.isoformat(), changed=changed)
    return int(changed)


async def correct(actor: Actor, invoice_id: int, on: date | None = None) -> tuple[Invoice, Invoice]:
    """Replace an invoice: a CREDIT_NOTE with the original's lines and totals negated, and a
    new invoice of the same period — both of revision n+1, numbered now, notified — and the
    original CREDITED. Nothing is deleted.

    Plan edits affect only future invoices: the new invoice is priced with the plan that priced
    the original, read back from its snapshot (rates, allowances, storage modes, currency,
    tax, discount, invoice type, due days), whatever the customer's plan is now, and even when
    it has none any more. Its due date counts the snapshot's due days from the correction's
    day. Usage: the period quantities (compute hours, transfer out) are summed from the ledger
    for the original period again, so usage recorded late is included; the counts (agents,
    VMs, replicas, storage) have no history and are measured now. Returns (credit note,
    invoice)."""
    original = await _acted_on(actor, invoice_id)
    if original.kind is InvoiceKind.CREDIT_NOTE:
        raise Conflict("a credit note cannot be corrected")
    if original.state is InvoiceState.CREDITED:
        raise Conflict("the invoice was corrected already")
    terms = gen.snapshot_terms(original.plan_snapshot or {})
    if terms is None:
        raise Conflict("the invoice keeps no plan snapshot to price its correction with")
    day = on or today()
    customer: Organization = original.customer
    plan_id = original.plan_id  # type: ignore[attr-defined]
    plan = await SubscriptionPlan.filter(id=plan_id).first() if plan_id is not None else None
    period = gen.Period(original.period_start, original.period_end, day)
    wanted = gen.wanted(customer.id, period, terms.invoice_type)
    usage = (await measure_many([wanted]))[wanted]
    issuer = await Organization.get(id=original.issuer_id)  # type: ignore[attr-defined]
    replacement = gen.priced_draft(
        customer, issuer, plan, period, usage, terms, original.plan_snapshot, day
    )
    replacement.revision = original.revision + 1
    replacement.corrects_id = original.id
    credit = await _credit_note_draft(original, customer, issuer, day)
    async with audited(actor, "invoiceCorrect", "Invoice", original.id, customer.id) as entry:
        numbering = gen.Numbering(issuer)
        await numbering.lock()
        changed = await Invoice.filter(
            id=original.id, state__not=InvoiceState.CREDITED.value
        ).update(state=InvoiceState.CREDITED)
        if not changed:
            raise Conflict("the invoice was corrected already")
        note = await gen.write(credit, await numbering.next(day), actor, None, "creditNoteIssue")
        new = await gen.write(
            replacement, await numbering.next(day), actor, None, "invoiceGenerate"
        )
        entry.details.update(number=original.number, creditNote=note.number, invoice=new.number)
    return note, new


async def _credit_note_draft(
    original: Invoice, customer: Organization, issuer: Organization, day: date
) -> gen.Draft:
    rows = await InvoiceLine.filter(invoice_id=original.id).order_by("position")
    lines = [
        PricedLine(
            item=BillingItem(r.item),
            description=r.description,
            unit=r.unit,
            quantity=-r.quantity,
            free_allowance=r.free_allowance,
            billable_quantity=-r.billable_quantity,
            rate=r.rate,
            amount=-r.amount,
            location_id=r.location_id,  # type: ignore[attr-defined]
        )
        for r in rows
    ]
    return gen.Draft(
        customer=customer,
        issuer=issuer,
        plan=None,
        kind=InvoiceKind.CREDIT_NOTE,
        type=InvoiceType(original.type),
        period=gen.Period(original.period_start, original.period_end, day),
        issued_on=day,
        due_on=None,
        currency=original.currency,
        lines=lines,
        totals=Totals(-original.subtotal, -original.discount, -original.tax, -original.total),
        snapshot=original.plan_snapshot,
        state=InvoiceState.INFORMATION,
        revision=original.revision + 1,
        corrects_id=original.id,
    )
