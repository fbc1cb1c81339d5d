"""The demo's billing: subscription plans, their assignments and about three months of invoices,
so that the invoices, their PDFs and their life cycle can be explored at once.

- The provider's plan "Provider standard (EUR)" (VAT 21 %, consumed cloud storage billed in
  100 GB blocks rounded up) bills its resellers (the usage of all their companies) and its
  direct companies; each demo reseller bills its companies with a plan of its own (Northwind:
  US dollars with sales tax and a discount; Blue Harbor: pounds, VAT, detailed per location).
- Billing starts 3 months before today, so every billed customer has three monthly invoices
  (the first for the shorter period from that day to its month's end). They are generated in this process through the billing
  run's own service (`invoice_generation.generate_many`), one invoice date after the other as
  the monthly run would have done, so their due dates lie where that run would have put them.
- Life cycle, by each issuer's primary-role user (the audit log shows who "did" it): each
  customer's oldest invoice is marked paid a week after its date; one invoice per issuer is
  corrected (a credit note and a new invoice that adds data transferred out in its period but
  recorded in the usage ledger only after it was issued); then the daily overdue pass runs, so
  unpaid invoices whose due date has passed are OVERDUE. Chargeback reports (departments in
  the enterprise edition) are information only and are left as they are.

Everything goes through the services, as a user would: plans, assignments, invoices and their
notifications (queued in the outbox; the scheduler's `outbox.deliver` sends them later — on the
embedded defaults as .eml files under data/outbox — nothing is delivered while seeding).

Idempotent: an owner's plan is created when missing, only customers without a plan get one,
generation writes only the invoices not there yet, and the life cycle touches only invoices
written by this call. Seeding twice adds nothing.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from app.models import Location, Organization, OrgKind
from app.models.billing import (
    BillingItem,
    Invoice,
    InvoiceKind,
    InvoiceState,
    InvoiceType,
    PlanAssignment,
    StorageMode,
    SubscriptionPlan,
    TaxType,
)
from app.services import invoice_generation, invoices, subscription_plans, usage_ledger
from app.services.actor import Actor
from app.services.subscription_plans import PlanInput, RateInput
from app.simulator.demo_actor import staff_actor

BILLING_MONTHS = 3  # billing starts this many months before today
PAID_AFTER = timedelta(days=7)  # the oldest invoices were paid a week after their date
# Data transferred out during a corrected invoice's period, recorded only after it was issued
# (the reason for the correction: the new invoice includes it).
LATE_TRANSFER_GB = Decimal("340")

D = Decimal
BI = BillingItem


@dataclass(frozen=True)
class DemoPlan:
    owner: str  # the demo organization that keeps the plan and bills with it
    plan: PlanInput
    rates: tuple[RateInput, ...]


DEMO_PLANS: tuple[DemoPlan, ...] = (
    DemoPlan(
        "Tenantry Cloud",
        PlanInput(
            name="Provider standard (EUR)",
            description="The provider's price list for its resellers and direct companies.",
            currency="EUR",
            tax_type=TaxType.VAT,
            tax_rate_percent=D("21"),
            billing_day=1,
            due_days=14,
            invoice_type=InvoiceType.SUMMARY,
        ),
        (
            RateInput(BI.WORKSTATION_AGENT, D("2.50"), free_allowance=D("5")),
            RateInput(BI.SERVER_AGENT, D("12.00"), free_allowance=D("2")),
            RateInput(BI.MANAGED_VM, D("6.00")),
            RateInput(BI.CLOUD_BACKUP_WORKSTATION, D("1.20")),
            RateInput(BI.CLOUD_BACKUP_SERVER, D("4.50")),
            RateInput(BI.CLOUD_BACKUP_VM, D("3.00")),
            RateInput(BI.REPLICATED_VM, D("9.00"), free_allowance=D("1")),
            RateInput(
                BI.CLOUD_STORAGE_GB,
                D("0.02"),
                storage_mode=StorageMode.CONSUMED,
                block_gb=100,
                round_up=True,
            ),
            RateInput(BI.COMPUTE_HOUR, D("0.35")),
            RateInput(BI.TRANSFER_OUT_GB, D("0.05"), free_allowance=D("100")),
        ),
    ),
    DemoPlan(
        "Northwind Backup",
        PlanInput(
            name="Northwind managed backup (USD)",
            description="Agents and cloud backups, net 30, 5 % loyalty discount.",
            currency="USD",
            tax_type=TaxType.SALES_TAX,
            tax_rate_percent=D("8.25"),
            discount_percent=D("5"),
            billing_day=1,
            due_days=30,
            invoice_type=InvoiceType.SUMMARY,
        ),
        (
            RateInput(BI.WORKSTATION_AGENT, D("3.00"), free_allowance=D("3")),
            RateInput(BI.SERVER_AGENT, D("15.00"), free_allowance=D("1")),
            RateInput(BI.MANAGED_VM, D("7.50")),
            RateInput(BI.CLOUD_BACKUP_SERVER, D("5.00")),
            RateInput(BI.REPLICATED_VM, D("10.00")),
            RateInput(BI.CLOUD_STORAGE_GB, D("0.015")),  # the allocated quota
            RateInput(BI.TRANSFER_OUT_GB, D("0.04"), free_allowance=D("50")),
        ),
    ),
    DemoPlan(
        "Blue Harbor IT",
        PlanInput(
            name="Blue Harbor per location (GBP)",
            description="Detailed per location; storage in 50 GB blocks.",
            currency="GBP",
            tax_type=TaxType.VAT,
            tax_rate_percent=D("20"),
            billing_day=1,
            due_days=21,
            invoice_type=InvoiceType.DETAILED,
        ),
        (
            RateInput(BI.WORKSTATION_AGENT, D("2.20"), free_allowance=D("10")),
            RateInput(BI.SERVER_AGENT, D("11.00")),
            RateInput(BI.MANAGED_VM, D("5.50")),
            RateInput(BI.CLOUD_BACKUP_WORKSTATION, D("1.00")),
            RateInput(BI.CLOUD_BACKUP_VM, D("2.75")),
            RateInput(BI.REPLICATED_VM, D("8.00")),
            RateInput(
                BI.CLOUD_STORAGE_GB,
                D("0.018"),
                storage_mode=StorageMode.CONSUMED,
                block_gb=50,
                round_up=True,
            ),
            RateInput(BI.TRANSFER_OUT_GB, D("0.045")),
        ),
    ),
)


def months_before(day: date, months: int) -> date:
    """The same day `months` earlier (the month's last day when it is shorter)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


async def _plan(actor: Actor, owner: Organization, spec: DemoPlan) -> SubscriptionPlan:
    existing = await SubscriptionPlan.get_or_none(owner_id=owner.id, name=spec.plan.name)
    if existing is not None:
        return existing
    return await subscription_plans.create(actor, spec.plan, spec.rates)


async def _bill(actor: Actor, owner: Organization, spec: DemoPlan, today: date) -> list[Invoice]:
    """The owner's plan, its customers assigned and their due invoices; returns the invoices
    written now."""
    plan = await _plan(actor, owner, spec)
    customers = [
        o.id
        for o in await Organization.filter(
            parent_id=owner.id, kind__in=[k.value for k in subscription_plans.CUSTOMER_KINDS]
        ).order_by("id")
    ]
    assigned = set(
        await PlanAssignment.filter(customer_id__in=customers).values_list("customer_id", flat=True)
    )
    start = months_before(today, BILLING_MONTHS)
    for customer_id in customers:
        if customer_id not in assigned:
            await subscription_plans.assign(actor, customer_id, plan.id, start)
    # One run per invoice date, as the monthly run would have gone: due dates follow each date.
    dates = [
        p.invoice_date for p in invoice_generation.due_periods(start, plan.billing_day, None, today)
    ]
    written: list[Invoice] = []
    for day in dates:
        result = await invoice_generation.generate_many(customers, day, actor=actor)
        written += [invoice for rows in result.values() for invoice in rows]
    return written


async def _life_cycle(actor: Actor, written: list[Invoice], today: date) -> None:
    """Each customer's oldest payable invoice paid a week after its date, the newest invoice of
    the last customer corrected (usage recorded late: it is billed by the new invoice)."""
    payable = [
        i for i in written if i.kind is InvoiceKind.INVOICE and i.state is InvoiceState.UNPAID
    ]
    by_customer: dict[int, list[Invoice]] = defaultdict(list)
    for invoice in sorted(payable, key=lambda i: (i.issued_on, i.id)):
        by_customer[invoice.customer_id].append(invoice)  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    for rows in by_customer.values():
        oldest = rows[0]
        paid_at = datetime.combine(oldest.issued_on + PAID_AFTER, time(10), UTC)
        await invoices.mark_paid(actor, oldest.id, min(paid_at, now))
    if by_customer:
        last = by_customer[max(by_customer)]
        if len(last) > 1:
            await _late_transfer(last[-1])
            await invoices.correct(actor, last[-1].id, today)


async def _late_transfer(invoice: Invoice) -> None:
    """A file restore from the cloud on the period's last day, in the ledger only now."""
    customer_id: int = invoice.customer_id  # type: ignore[attr-defined]
    location = await Location.filter(company_id=customer_id, is_default=True).first()
    if location is None:  # not a company: its usage is its companies'
        return
    await usage_ledger.record(
        customer_id,
        BillingItem.TRANSFER_OUT_GB,
        LATE_TRANSFER_GB,
        datetime.combine(invoice.period_end, time(18), UTC),
        f"demo-billing:late-transfer:{invoice.id}",
        location_id=location.id,
    )


async def seed_demo_billing(today: date | None = None) -> int:
    """Plans, assignments and invoices of the demo owners (see the module docstring). Returns
    the invoices generated (credit notes and corrections not counted)."""
    today = today or datetime.now(UTC).date()
    owners = {
        o.name: o
        for o in await Organization.filter(
            kind__in=[OrgKind.PROVIDER.value, OrgKind.RESELLER.value],
            name__in=[spec.owner for spec in DEMO_PLANS],
        )
    }
    generated = 0
    for spec in DEMO_PLANS:
        owner = owners.get(spec.owner)
        actor = await staff_actor(owner.id) if owner is not None else None
        if owner is None or actor is None:
            continue
        written = await _bill(actor, owner, spec, today)
        await _life_cycle(actor, written, today)
        generated += len(written)
    if generated:
        # The daily overdue pass (the scheduler's billing.overdue), as the system.
        await invoices.mark_overdue(today)
    return generated
