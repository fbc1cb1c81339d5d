"""Invoices written set-based: a batch of customers costs the same statements whatever its size
(one INSERT each of invoices, lines, e-mails and audit entries, the recipients read once),
numbers stay gap-free per issuer when part of a batch exists already or collides, and batches
over several issuers at once (PostgreSQL: their locks taken in one order) write each invoice
once."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from app.authz.matrix import Portal, load_matrix
from app.models import AuditEntry, Location, Organization, User
from app.models.billing import (
    BillingItem,
    Invoice,
    InvoiceLine,
    InvoiceType,
    OutboxMessage,
    PlanAssignment,
    SubscriptionPlan,
    UsageEntry,
)
from app.models.inventory import AgentEdition, AgentPlatform, BackupAgent, ManagedComputer
from app.services import invoice_generation, invoice_writing
from app.services.actor import Actor
from app.services.invoice_generation import Period, generate, generate_many
from tests.conftest import ON_POSTGRES
from tests.factories import password_hash
from tests.querycount import count_queries
from tests.test_invoices import assign, make_plan, numbers

OCT1 = date(2026, 10, 1)
SEPTEMBER = Period(date(2026, 9, 1), date(2026, 9, 30), OCT1)


async def billed_companies(
    world, plans: dict[str, SubscriptionPlan], count: int, tag: str
) -> list[int]:
    """`count` companies, alternately under the provider and R1, each with an owner (the
    client portal's primary role: one e-mail per invoice) and compute hours in September."""
    owner = next(r for r in load_matrix().portals[Portal.CLIENT].roles if r.primary)
    ids = []
    for n in range(count):
        issuer = ("Provider", "R1")[n % 2]
        org = await Organization.create(
            kind="COMPANY", name=f"{tag}{n:02d}", parent=world.orgs[issuer]
        )
        await User.create(
            email=f"{tag.lower()}{n}@example.test",
            name=f"Owner {tag}{n}",
            role=owner.name,
            organization=org,
            password_hash=password_hash(),
        )
        await UsageEntry.create(
            company=org,
            item=BillingItem.COMPUTE_HOUR,
            quantity=Decimal(n + 1),
            at=datetime(2026, 9, 15, tzinfo=UTC),
            source_key=f"batch:{tag}:{n}",
        )
        await assign(org, plans[issuer], date(2026, 9, 1))
        ids.append(org.id)
    return ids


async def issuer_plans(world) -> dict[str, SubscriptionPlan]:
    return {
        issuer: await make_plan(world.orgs[issuer], rates={BillingItem.COMPUTE_HOUR: "0.5"})
        for issuer in ("Provider", "R1")
    }


async def test_a_batch_costs_the_same_statements_for_3_and_30_invoices(world, dispatched) -> None:
    plans = await issuer_plans(world)
    small = await billed_companies(world, plans, 3, "S")
    large = await billed_companies(world, plans, 30, "L")
    with count_queries() as three:
        written = await generate_many(small, OCT1)
    assert sum(len(v) for v in written.values()) == 3
    with count_queries() as thirty:
        written = await generate_many(large, OCT1)
    assert sum(len(v) for v in written.values()) == 30
    assert thirty.count == three.count, f"3 invoices: {three}\n30 invoices: {thirty}"
    # The writing: one statement per table for the 30 invoices of two issuers, the recipients
    # of all the customers read once.
    for table in ("invoices", "invoice_lines", "outbox", "audit_log"):
        assert len(thirty.matching(f'INSERT INTO "{table}"')) == 1, thirty
    assert len(thirty.matching('FROM "users"')) == 1, thirty

    # Each invoice whole: its line, its owner's e-mail and its audit entry.
    invoices = await Invoice.filter(customer_id__in=large).order_by("id")
    assert len(invoices) == 30
    assert await InvoiceLine.filter(invoice_id__in=[i.id for i in invoices]).count() == 30
    by_customer = {i.customer_id: i for i in invoices}  # type: ignore[attr-defined]
    for n, company in enumerate(large):
        assert by_customer[company].total == Decimal(n + 1) / 2
    mails = await OutboxMessage.filter(organization_id__in=large).values_list(
        "dedup_key", "payload"
    )
    owners = dict(await User.filter(organization_id__in=large).values_list("organization_id", "id"))
    assert sorted(key for key, _ in mails) == sorted(
        f"invoice-issued:{i.id}:{owners[i.customer_id]}"  # type: ignore[attr-defined]
        for i in invoices
    )
    entries = await AuditEntry.filter(action="invoiceGenerate", organization_id__in=large)
    assert sorted((e.object_id, e.details["number"], e.outcome) for e in entries) == sorted(
        (str(i.id), i.number, "SUCCESS") for i in invoices
    )
    # Gap-free per issuer across the two batches (2 + 15 for the provider, 1 + 15 for R1).
    assert await numbers(world.orgs["Provider"]) == [f"PROVIDER-2026-{i:06d}" for i in range(1, 18)]
    assert await numbers(world.orgs["R1"]) == [f"R1-2026-{i:06d}" for i in range(1, 17)]


async def test_invoices_already_there_are_skipped_and_get_no_number(world, dispatched) -> None:
    """A batch whose first customer was invoiced meanwhile: that one is skipped, the others
    are numbered from the next sequence on, without a gap."""
    plans = await issuer_plans(world)
    companies = await billed_companies(world, plans, 6, "C")
    await generate(companies[2], OCT1)  # the provider's first invoice
    drafts = await september_drafts(companies)
    written = await invoice_writing.write_drafts(drafts, Actor(None))
    assert sorted(i.customer_id for i in written) == sorted(  # type: ignore[attr-defined]
        set(companies) - {companies[2]}
    )
    assert await numbers(world.orgs["Provider"]) == [f"PROVIDER-2026-{i:06d}" for i in (1, 2, 3)]
    assert await numbers(world.orgs["R1"]) == [f"R1-2026-{i:06d}" for i in (1, 2, 3)]


async def test_a_batch_that_collides_is_rolled_back_and_written_one_by_one(
    world, dispatched, monkeypatch
) -> None:
    """Should the check under the lock miss an invoice (here: made blind), the unique key
    stops the batch: nothing of it stays, and each draft is retried on its own — the one
    already there collides again and is skipped, the others are numbered without a gap."""
    plans = await issuer_plans(world)
    companies = await billed_companies(world, plans, 4, "K")
    await generate(companies[1], OCT1)  # R1's first invoice

    async def blind(drafts):
        return set()

    monkeypatch.setattr(invoice_writing, "_existing_starts", blind)
    written = await invoice_writing.write_drafts(await september_drafts(companies), Actor(None))
    assert sorted(i.customer_id for i in written) == sorted(  # type: ignore[attr-defined]
        [companies[0], companies[2], companies[3]]
    )
    assert await Invoice.filter(customer_id__in=companies).count() == 4
    assert await numbers(world.orgs["R1"]) == ["R1-2026-000001", "R1-2026-000002"]
    assert await numbers(world.orgs["Provider"]) == ["PROVIDER-2026-000001", "PROVIDER-2026-000002"]
    # One audit entry and one e-mail per invoice: the rolled-back batch left none behind.
    assert await AuditEntry.filter(action="invoiceGenerate").count() == 4
    assert await OutboxMessage.filter(organization_id__in=companies).count() == 4


async def mixed_companies(
    world, plans: dict[str, SubscriptionPlan], count: int, tag: str
) -> list[int]:
    """`count` companies, alternately billed by the provider (a DETAILED plan) and R1 (a SUMMARY
    one), starting on 15 September, 1 September or 1 August (two periods due: a catch-up), each
    with a server agent at its location and compute hours in August (100 + n) and September
    (n + 1)."""
    ids = []
    for n in range(count):
        issuer = ("Provider", "R1")[n % 2]
        org = await Organization.create(
            kind="COMPANY", name=f"{tag}{n:02d}", parent=world.orgs[issuer]
        )
        location = await Location.create(company=org, name=f"Site {n}")
        computer = await ManagedComputer.create(
            company=org, location=location, uid=f"{tag}-{n}", hostname=f"{tag}-{n}"
        )
        await BackupAgent.create(
            computer=computer, platform=AgentPlatform.WINDOWS, edition=AgentEdition.SERVER
        )
        for day, quantity in ((date(2026, 8, 20), 100 + n), (date(2026, 9, 20), n + 1)):
            await UsageEntry.create(
                company=org,
                item=BillingItem.COMPUTE_HOUR,
                quantity=Decimal(quantity),
                at=datetime.combine(day, datetime.min.time(), tzinfo=UTC),
                source_key=f"mixed:{tag}:{n}:{day}",
            )
        start = (date(2026, 9, 15), date(2026, 9, 1), date(2026, 8, 1))[n % 3]
        await assign(org, plans[issuer], start)
        ids.append(org.id)
    return ids


async def test_a_batch_measures_every_period_and_invoice_type_in_one_go(world, dispatched) -> None:
    """Periods of several starts (and two periods for a customer behind), DETAILED and SUMMARY
    invoices in one batch: the usage is read once for all of them, 6 invoices or 24."""
    rates = {BillingItem.COMPUTE_HOUR: "0.5", BillingItem.SERVER_AGENT: "10"}
    plans = {
        "Provider": await make_plan(
            world.orgs["Provider"], rates=rates, invoice_type=InvoiceType.DETAILED
        ),
        "R1": await make_plan(world.orgs["R1"], rates=rates),
    }
    small = await mixed_companies(world, plans, 6, "S")
    large = await mixed_companies(world, plans, 24, "L")
    with count_queries() as few:
        written = await generate_many(small, OCT1)
    assert sum(len(v) for v in written.values()) == 8
    with count_queries() as many:
        written = await generate_many(large, OCT1)
    assert sum(len(v) for v in written.values()) == 32
    assert many.count == few.count, f"8 invoices: {few}\n32 invoices: {many}"
    # One read of each inventory table and of the ledger for every period and type.
    assert len(many.matching('"usage_ledger"')) == 1, many
    assert len(many.matching('FROM "backup_agents"')) == 2, many  # agents, cloud-backed ones
    assert len(many.matching('FROM "locations"')) == 1, many  # the DETAILED lines' names

    # Each invoice priced on its own period's ledger and the agent, per location if DETAILED.
    for n, company in enumerate(large):
        got = {
            (i.period_start, i.period_end, i.type, i.total)
            for i in await Invoice.filter(customer_id=company)
        }
        kind = (InvoiceType.DETAILED, InvoiceType.SUMMARY)[n % 2]
        september = Decimal(10) + Decimal(n + 1) / 2
        expected = {
            0: {(date(2026, 9, 15), date(2026, 9, 30), kind, september)},
            1: {(date(2026, 9, 1), date(2026, 9, 30), kind, september)},
            2: {
                (date(2026, 8, 1), date(2026, 8, 31), kind, Decimal(10) + Decimal(100 + n) / 2),
                (date(2026, 9, 1), date(2026, 9, 30), kind, september),
            },
        }[n % 3]
        assert got == expected, n
    detailed = await InvoiceLine.filter(
        invoice__customer_id=large[0], item=BillingItem.SERVER_AGENT
    ).values_list("description", flat=True)
    assert list(detailed) == ["Server agents - Site 0"]


async def september_drafts(companies: list[int]) -> list[invoice_writing.Draft]:
    assignments = await PlanAssignment.filter(customer_id__in=companies).select_related(
        "plan", "customer__parent"
    )
    return [
        invoice_generation.draft_for(a, a.customer.parent, SEPTEMBER, [], {}, OCT1)
        for a in assignments
    ]


@pytest.mark.skipif(
    not ON_POSTGRES, reason="advisory locks and concurrent transactions need PostgreSQL"
)
async def test_concurrent_batches_over_several_issuers_write_each_invoice_once(
    world, dispatched
) -> None:
    """Four runs at once over overlapping sets of customers of two issuers, in different
    orders: every batch locks both issuers (one order, no deadlock), each invoice is written
    once and each issuer's numbers have no gap."""
    plans = await issuer_plans(world)
    companies = await billed_companies(world, plans, 24, "X")
    runs = [companies[:16], companies[8:], companies[::-1], companies[1::2] + companies[::2]]
    await asyncio.gather(*[generate_many(ids, OCT1) for ids in runs])
    assert await Invoice.filter(customer_id__in=companies).count() == 24
    assert await numbers(world.orgs["Provider"]) == [f"PROVIDER-2026-{i:06d}" for i in range(1, 13)]
    assert await numbers(world.orgs["R1"]) == [f"R1-2026-{i:06d}" for i in range(1, 13)]
    assert await AuditEntry.filter(action="invoiceGenerate").count() == 24
    assert await OutboxMessage.filter(organization_id__in=companies).count() == 24
