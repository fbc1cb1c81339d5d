"""Corrections are priced with the plan that priced the original ("plan edits affect only future
invoices"): rates, allowances, currency, tax, discount, invoice type and due days read back
from the invoice's plan snapshot, after the plan was edited, and when the customer has no plan
any more (unassigned, the plan deleted); usage: the ledger of the original period (entries
recorded late included), the counts as measured now. The snapshot reads back as the plan it
was taken from."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from app.auth.authenticate import principal_for_bearer
from app.billing.pricing import RateSpec
from app.errors import Conflict
from app.models.billing import (
    BillingItem,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    InvoiceType,
    PlanRate,
    StorageMode,
    SubscriptionPlan,
    TaxType,
)
from app.models.inventory import AgentEdition
from app.services import invoice_generation, invoices, subscription_plans
from app.services.actor import Actor
from app.services.invoice_generation import generate
from tests.test_invoices import OCT1, agents, assign, ledger, make_plan

R1_ADMIN = ("R1", "Service Provider Administrator")
I = BillingItem  # noqa: E741
D = Decimal


async def r1_admin(world) -> Actor:
    return Actor(await principal_for_bearer(world.token(*R1_ADMIN)))


async def lines_of(
    invoice: Invoice,
) -> list[tuple[BillingItem, Decimal, Decimal, Decimal, Decimal]]:
    rows = await InvoiceLine.filter(invoice_id=invoice.id).order_by("position")
    return [(I(r.item), r.quantity, r.free_allowance, r.rate, r.amount) for r in rows]


async def state_of(invoice_id: int) -> InvoiceState:
    return (await Invoice.get(id=invoice_id)).state


async def a1_plan(world) -> SubscriptionPlan:
    """R1's plan for A1 (3 server agents, 4 compute hours in September): 10 per agent with one
    free, 0.50 per hour, 10 % discount, 20 % VAT, due in 30 days."""
    plan = await make_plan(
        world.orgs["R1"],
        "A1 only",
        rates={I.SERVER_AGENT: ("10", "1"), I.COMPUTE_HOUR: "0.5"},
        discount_percent=D(10),
        tax_type=TaxType.VAT,
        tax_rate_percent=D(20),
        due_days=30,
    )
    await agents(world, "A1", AgentEdition.SERVER, 3)
    await ledger(world, "A1", I.COMPUTE_HOUR, "4", datetime(2026, 9, 10, tzinfo=UTC))
    await assign(world.orgs["A1"], plan, date(2026, 9, 1))
    return plan


async def test_the_replacement_keeps_the_original_plan_after_the_plan_was_edited(
    world, dispatched
) -> None:
    plan = await a1_plan(world)
    (original,) = await generate(world.orgs["A1"].id, OCT1)
    assert (original.subtotal, original.discount, original.tax, original.total) == (
        D(22),
        D("2.2"),
        D("3.96"),
        D("23.76"),
    )
    # The plan changes everything after the invoice.
    await PlanRate.filter(plan_id=plan.id, item=I.SERVER_AGENT).update(
        rate=D(99), free_allowance=D(0)
    )
    await PlanRate.filter(plan_id=plan.id, item=I.COMPUTE_HOUR).update(rate=D(5))
    await SubscriptionPlan.filter(id=plan.id).update(
        currency="USD",
        discount_percent=D(0),
        tax_rate_percent=D(0),
        due_days=5,
        invoice_type=InvoiceType.DETAILED,
    )
    # An hour of September recorded late is billed; October's is not.
    await ledger(world, "A1", I.COMPUTE_HOUR, "1", datetime(2026, 9, 30, 23, tzinfo=UTC))
    await ledger(world, "A1", I.COMPUTE_HOUR, "7", datetime(2026, 10, 2, tzinfo=UTC))

    day = date(2026, 10, 20)
    note, new = await invoices.correct(await r1_admin(world), original.id, day)
    new = await Invoice.get(id=new.id)
    assert (new.currency, new.type, new.revision, new.state) == (
        "EUR",
        InvoiceType.SUMMARY,
        1,
        InvoiceState.UNPAID,
    )
    assert await lines_of(new) == [
        (I.SERVER_AGENT, D(3), D(1), D(10), D(20)),
        (I.COMPUTE_HOUR, D(5), D(0), D("0.5"), D("2.5")),
    ]
    assert (new.subtotal, new.discount, new.tax, new.total) == (
        D("22.5"),
        D("2.25"),
        D("4.05"),
        D("24.3"),
    )
    assert new.due_on == date(2026, 11, 19)  # the original's 30 days, from the correction
    assert new.plan_id == plan.id  # type: ignore[attr-defined]
    assert new.plan_snapshot == original.plan_snapshot
    assert (await Invoice.get(id=note.id)).total == -original.total

    # The edited plan prices the next invoice.
    (october,) = await generate(world.orgs["A1"].id, date(2026, 11, 1))
    assert (october.currency, october.type) == ("USD", InvoiceType.DETAILED)
    assert await lines_of(october) == [
        (I.SERVER_AGENT, D(3), D(0), D(99), D(297)),
        (I.COMPUTE_HOUR, D(7), D(0), D(5), D(35)),
    ]


async def test_a_customer_without_a_plan_any_more_is_still_correctable(world, dispatched) -> None:
    plan = await a1_plan(world)
    (original,) = await generate(world.orgs["A1"].id, OCT1)
    actor = await r1_admin(world)
    await subscription_plans.unassign(actor, world.orgs["A1"].id)
    await subscription_plans.delete(actor, plan.id)
    assert (await Invoice.get(id=original.id)).plan_id is None  # type: ignore[attr-defined]

    _, new = await invoices.correct(actor, original.id, date(2026, 10, 20))
    new = await Invoice.get(id=new.id)
    assert (new.kind, new.revision, new.currency, new.total) == (
        InvoiceKind.INVOICE,
        1,
        "EUR",
        original.total,
    )
    assert new.plan_id is None  # type: ignore[attr-defined]
    assert await lines_of(new) == [
        (I.SERVER_AGENT, D(3), D(1), D(10), D(20)),
        (I.COMPUTE_HOUR, D(4), D(0), D("0.5"), D(2)),
    ]
    assert await state_of(original.id) is InvoiceState.CREDITED


async def test_an_invoice_without_a_plan_snapshot_is_not_corrected(world, dispatched) -> None:
    await a1_plan(world)
    (original,) = await generate(world.orgs["A1"].id, OCT1)
    await Invoice.filter(id=original.id).update(plan_snapshot={})
    with pytest.raises(Conflict, match="no plan snapshot"):
        await invoices.correct(await r1_admin(world), original.id, date(2026, 10, 20))
    assert await state_of(original.id) is InvoiceState.UNPAID
    assert await Invoice.filter(customer_id=world.orgs["A1"].id).count() == 1


async def test_a_snapshot_reads_back_as_the_plan_it_was_taken_from(world) -> None:
    plan = SubscriptionPlan(
        id=7,
        name="Every kind",
        currency="BHD",
        tax_type=TaxType.GST,
        tax_rate_percent=D("7.5"),
        discount_percent=D("2.125"),
        billing_day=15,
        due_days=12,
        invoice_type=InvoiceType.DETAILED,
    )
    rates = {
        I.SERVER_AGENT: RateSpec(I.SERVER_AGENT, D("12.345"), D(2)),
        I.MANAGED_VM: RateSpec(I.MANAGED_VM, None),
        I.CLOUD_STORAGE_GB: RateSpec(
            I.CLOUD_STORAGE_GB, D("0.02"), D(100), StorageMode.CONSUMED, 250, True
        ),
    }
    snapshot = invoice_generation.plan_snapshot(plan, rates)
    assert invoice_generation.snapshot_terms(snapshot) == invoice_generation.plan_terms(plan, rates)
    assert invoice_generation.snapshot_terms({"currency": "EUR"}) is None
