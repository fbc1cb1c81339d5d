"""Invoice generation: periods (first from billing_start, consecutive, missed months all
issued), amounts of a worked example to the cent, exactly once (a repeated run, a run killed
after some customers), numbering per issuer (sequential, unique, also under concurrency on
PostgreSQL), chargeback reports in the enterprise edition, the billing jobs and schedules."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.models import AuditEntry, Job, Organization
from app.models.billing import (
    BillingItem,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    InvoiceType,
    OutboxMessage,
    PlanAssignment,
    PlanRate,
    StorageMode,
    SubscriptionPlan,
    UsageEntry,
)
from app.models.inventory import AgentEdition, AgentPlatform, BackupAgent, ManagedComputer
from app.services import invoice_generation, invoice_writing, jobs
from app.services.invoice_generation import Period, due_periods, generate, generate_many
from tests.conftest import ON_POSTGRES
from tests.test_allocations import code, gid

OCT1 = date(2026, 10, 1)
GENERATE = """mutation($input: InvoiceGenerateInput) { invoiceGenerate(input: $input) {
  id kind state params } }"""


# --- building blocks (shared with test_invoice_lifecycle) ------------------------------------


async def make_plan(
    owner: Organization,
    name: str = "Standard",
    rates: dict[BillingItem, Any] | None = None,
    **fields: Any,
) -> SubscriptionPlan:
    """A plan with rates: {item: rate} or {item: (rate, allowance)}."""
    fields.setdefault("currency", "EUR")
    plan = await SubscriptionPlan.create(owner=owner, name=name, **fields)
    for item, spec in (rates or {BillingItem.SERVER_AGENT: "10"}).items():
        rate, allowance = spec if isinstance(spec, tuple) else (spec, "0")
        await PlanRate.create(
            plan=plan,
            item=item,
            rate=None if rate is None else Decimal(rate),
            free_allowance=Decimal(allowance),
            storage_mode=StorageMode.ALLOCATED,
        )
    return plan


async def assign(customer: Organization, plan: SubscriptionPlan, start: date) -> PlanAssignment:
    return await PlanAssignment.create(customer=customer, plan=plan, billing_start=start)


_SERIAL = {"n": 0}


async def agents(world, company: str, edition: AgentEdition, n: int) -> None:
    org = world.orgs[company]
    location = world.locations[f"{company}-Default"]
    for _ in range(n):
        _SERIAL["n"] += 1
        computer = await ManagedComputer.create(
            company=org, location=location, uid=f"c-{_SERIAL['n']}", hostname=f"h{_SERIAL['n']}"
        )
        await BackupAgent.create(computer=computer, platform=AgentPlatform.WINDOWS, edition=edition)


async def ledger(world, company: str, item: BillingItem, quantity: str, at: datetime) -> None:
    _SERIAL["n"] += 1
    await UsageEntry.create(
        company=world.orgs[company],
        item=item,
        quantity=Decimal(quantity),
        at=at,
        source_key=f"test:{_SERIAL['n']}",
    )


async def simple_billing(world, start: date = date(2026, 9, 1)) -> dict[str, SubscriptionPlan]:
    """R1 bills A1 and A2, R2 bills B1, the provider bills R1, R2 and P1: one server agent
    each at 10 EUR (a reseller is billed for its companies' agents)."""
    plans = {
        "Provider": await make_plan(world.orgs["Provider"]),
        "R1": await make_plan(world.orgs["R1"]),
        "R2": await make_plan(world.orgs["R2"]),
    }
    for company in ("A1", "A2", "B1", "P1"):
        await agents(world, company, AgentEdition.SERVER, 1)
    for customer, owner in (
        ("A1", "R1"),
        ("A2", "R1"),
        ("B1", "R2"),
        ("P1", "Provider"),
        ("R1", "Provider"),
        ("R2", "Provider"),
    ):
        await assign(world.orgs[customer], plans[owner], start)
    return plans


async def numbers(issuer: Organization) -> list[str]:
    return list(
        await Invoice.filter(issuer_id=issuer.id)
        .order_by("number")
        .values_list("number", flat=True)
    )


# --- periods ---------------------------------------------------------------------------------


def test_first_period_starts_at_billing_start_and_ends_the_day_before_the_invoice() -> None:
    assert due_periods(date(2026, 9, 15), 1, None, date(2026, 9, 30)) == []
    assert due_periods(date(2026, 9, 15), 1, None, OCT1) == [
        Period(date(2026, 9, 15), date(2026, 9, 30), OCT1)
    ]
    # A start on the billing day itself: a whole month.
    assert due_periods(OCT1, 1, None, date(2026, 11, 1)) == [
        Period(OCT1, date(2026, 10, 31), date(2026, 11, 1))
    ]


def test_periods_follow_each_other_and_missed_months_are_all_due() -> None:
    periods = due_periods(date(2026, 5, 20), 15, date(2026, 8, 14), date(2026, 11, 20))
    assert periods == [
        Period(date(2026, 8, 15), date(2026, 9, 14), date(2026, 9, 15)),
        Period(date(2026, 9, 15), date(2026, 10, 14), date(2026, 10, 15)),
        Period(date(2026, 10, 15), date(2026, 11, 14), date(2026, 11, 15)),
    ]
    # Across a year end, and nothing due before the next date.
    assert [p.invoice_date for p in due_periods(date(2026, 11, 1), 1, None, date(2027, 2, 1))] == [
        date(2026, 12, 1),
        date(2027, 1, 1),
        date(2027, 2, 1),
    ]
    assert due_periods(date(2026, 5, 20), 15, date(2026, 11, 14), date(2026, 12, 14)) == []


# --- a worked example, to the cent ------------------------------------------------------------


async def test_worked_example_to_the_cent(world, dispatched) -> None:
    plan = await make_plan(
        world.orgs["R1"],
        rates={
            BillingItem.WORKSTATION_AGENT: "2.4950",
            BillingItem.SERVER_AGENT: ("12.99", "1"),
            BillingItem.COMPUTE_HOUR: "0.1234",
            BillingItem.TRANSFER_OUT_GB: "0.09",
            BillingItem.MANAGED_VM: None,  # a blank rate: not billed
        },
        discount_percent=Decimal("7.5"),
        tax_rate_percent=Decimal("19"),
        tax_type="VAT",
        due_days=14,
    )
    await assign(world.orgs["A1"], plan, date(2026, 9, 1))
    await agents(world, "A1", AgentEdition.WORKSTATION, 5)
    await agents(world, "A1", AgentEdition.SERVER, 3)
    await ledger(world, "A1", BillingItem.COMPUTE_HOUR, "12.5", datetime(2026, 9, 3, tzinfo=UTC))
    await ledger(
        world, "A1", BillingItem.TRANSFER_OUT_GB, "33.333", datetime(2026, 9, 30, 23, tzinfo=UTC)
    )
    # The next period's usage stays out of this invoice.
    await ledger(world, "A1", BillingItem.TRANSFER_OUT_GB, "100", datetime(2026, 10, 1, tzinfo=UTC))

    (invoice,) = await generate(world.orgs["A1"].id, OCT1)
    lines = await InvoiceLine.filter(invoice_id=invoice.id).order_by("position")
    assert [
        (x.item, x.quantity, x.free_allowance, x.billable_quantity, x.rate, x.amount) for x in lines
    ] == [
        # 5 × 2.495 = 12.475 → 12.48 (half up)
        (BillingItem.WORKSTATION_AGENT, 5, 0, 5, Decimal("2.495"), Decimal("12.48")),
        # 3 agents, 1 free: 2 × 12.99
        (BillingItem.SERVER_AGENT, 3, 1, 2, Decimal("12.99"), Decimal("25.98")),
        # 12.5 h × 0.1234 = 1.5425 → 1.54
        (
            BillingItem.COMPUTE_HOUR,
            Decimal("12.5"),
            0,
            Decimal("12.5"),
            Decimal("0.1234"),
            Decimal("1.54"),
        ),
        # 33.333 GB × 0.09 = 2.99997 → 3.00
        (
            BillingItem.TRANSFER_OUT_GB,
            Decimal("33.333"),
            0,
            Decimal("33.333"),
            Decimal("0.09"),
            Decimal("3"),
        ),
    ]
    # 43.00 − 7.5 % (3.225 → 3.23) = 39.77; VAT 19 % of 39.77 = 7.5563 → 7.56; total 47.33.
    assert (invoice.subtotal, invoice.discount, invoice.tax, invoice.total) == (
        Decimal("43.00"),
        Decimal("3.23"),
        Decimal("7.56"),
        Decimal("47.33"),
    )
    stored = await Invoice.get(id=invoice.id)
    assert (stored.subtotal, stored.total) == (Decimal("43"), Decimal("47.33"))
    assert (stored.period_start, stored.period_end, stored.issued_on, stored.due_on) == (
        date(2026, 9, 1),
        date(2026, 9, 30),
        OCT1,
        date(2026, 10, 15),
    )
    assert (stored.kind, stored.type, stored.state, stored.generated, stored.currency) == (
        InvoiceKind.INVOICE,
        InvoiceType.SUMMARY,
        InvoiceState.UNPAID,
        True,
        "EUR",
    )
    assert stored.issuer_id == world.orgs["R1"].id  # type: ignore[attr-defined]
    assert stored.number == "R1-2026-000001"
    snapshot = stored.plan_snapshot
    assert (snapshot["id"], snapshot["currency"], snapshot["tax_type"]) == (plan.id, "EUR", "VAT")
    assert Decimal(snapshot["discount_percent"]) == Decimal("7.5")
    assert Decimal(snapshot["rates"]["SERVER_AGENT"]["free_allowance"]) == 1
    assert Decimal(snapshot["rates"]["SERVER_AGENT"]["rate"]) == Decimal("12.99")
    assert snapshot["rates"]["MANAGED_VM"]["rate"] is None
    # Notified (outbox: the A1 owner and invoice auditor) and audited in the same transaction.
    assert await OutboxMessage.all().count() == 2
    entry = await AuditEntry.get(action="invoiceGenerate")
    assert (entry.object_id, entry.organization_id, entry.outcome) == (
        str(invoice.id),
        world.orgs["A1"].id,
        "SUCCESS",
    )
    # A plan edited afterwards changes nothing already issued.
    await PlanRate.filter(plan_id=plan.id, item=BillingItem.SERVER_AGENT).update(rate=Decimal(99))
    assert (await Invoice.get(id=invoice.id)).total == Decimal("47.33")


# --- periods in the database, exactly once ----------------------------------------------------


async def test_missed_months_each_get_an_invoice_and_a_rerun_adds_none(world, dispatched) -> None:
    plan = await make_plan(world.orgs["R1"], due_days=30)
    await agents(world, "A1", AgentEdition.SERVER, 2)
    await assign(world.orgs["A1"], plan, date(2026, 6, 10))
    written = await generate(world.orgs["A1"].id, date(2026, 10, 5))
    rows = await Invoice.filter(customer_id=world.orgs["A1"].id).order_by("period_start")
    assert [(r.period_start, r.period_end, r.issued_on) for r in rows] == [
        (date(2026, 6, 10), date(2026, 6, 30), date(2026, 7, 1)),
        (date(2026, 7, 1), date(2026, 7, 31), date(2026, 8, 1)),
        (date(2026, 8, 1), date(2026, 8, 31), date(2026, 9, 1)),
        (date(2026, 9, 1), date(2026, 9, 30), OCT1),
    ]
    assert len(written) == 4
    assert [r.number for r in rows] == [f"R1-2026-00000{i}" for i in range(1, 5)]
    assert {r.total for r in rows} == {Decimal(20)}
    # Due dates count from the day they were really issued: none is overdue on arrival.
    assert {r.due_on for r in rows} == {date(2026, 11, 4)}
    assert await generate(world.orgs["A1"].id, date(2026, 10, 5)) == []
    assert await generate(world.orgs["A1"].id, date(2026, 10, 31)) == []
    (november,) = await generate(world.orgs["A1"].id, date(2026, 11, 1))
    assert (november.period_start, november.period_end) == (OCT1, date(2026, 10, 31))
    assert await Invoice.filter(customer_id=world.orgs["A1"].id).count() == 5


async def test_a_customer_without_a_plan_or_not_yet_due_gets_nothing(world, dispatched) -> None:
    plan = await make_plan(world.orgs["R1"])
    await assign(world.orgs["A1"], plan, date(2026, 9, 20))
    assert await generate(world.orgs["A2"].id, OCT1) == []
    assert await generate(world.orgs["A1"].id, date(2026, 9, 30)) == []
    assert await Invoice.all().count() == 0


async def test_an_existing_invoice_of_the_period_is_skipped_not_doubled(world, dispatched) -> None:
    """The unique key decides: a run that computed its periods before another run committed
    the same invoice writes nothing (here: the check under the issuer's lock)."""
    await simple_billing(world)
    (first,) = await generate(world.orgs["A1"].id, OCT1)
    assignment = await PlanAssignment.get(customer_id=world.orgs["A1"].id).select_related(
        "plan", "customer__parent"
    )
    period = Period(date(2026, 9, 1), date(2026, 9, 30), OCT1)
    issuer = world.orgs["R1"]
    draft = invoice_generation.draft_for(assignment, issuer, period, [], {}, OCT1)
    assert await invoice_writing.write_drafts([draft], invoice_generation.Actor(None), None) == []
    assert await Invoice.filter(customer_id=world.orgs["A1"].id).count() == 1
    assert await numbers(issuer) == [first.number]


async def test_numbers_are_sequential_per_issuer(world, dispatched) -> None:
    await simple_billing(world)
    ids = [world.orgs[k].id for k in ("A1", "A2", "B1", "P1", "R1", "R2")]
    result = await generate_many(ids, date(2026, 11, 1))
    assert sum(len(v) for v in result.values()) == 12
    assert await numbers(world.orgs["R1"]) == [f"R1-2026-00000{i}" for i in range(1, 5)]
    assert await numbers(world.orgs["R2"]) == ["R2-2026-000001", "R2-2026-000002"]
    assert await numbers(world.orgs["Provider"]) == [f"PROVIDER-2026-00000{i}" for i in range(1, 7)]
    # Numbers follow the invoice dates: September's before October's.
    a1 = await Invoice.filter(customer_id=world.orgs["A1"].id).order_by("issued_on")
    assert a1[0].number < a1[1].number
    # The provider bills a reseller for its companies' usage: R1 has A1 and A2 (2 agents).
    r1 = await Invoice.filter(customer_id=world.orgs["R1"].id).first()
    assert r1 is not None and r1.total == Decimal(20)
    # A new year starts a new sequence.
    await generate_many(ids, date(2027, 1, 1))
    assert (await numbers(world.orgs["R2"]))[-1] == "R2-2027-000001"
    assert (await numbers(world.orgs["R2"]))[-2] == "R2-2026-000003"


async def test_quota_usage_reports_are_information(world, dispatched) -> None:
    plan = await make_plan(world.orgs["R1"], invoice_type=InvoiceType.QUOTA_USAGE)
    await agents(world, "A1", AgentEdition.SERVER, 4)
    await assign(world.orgs["A1"], plan, date(2026, 9, 1))
    (report,) = await generate(world.orgs["A1"].id, OCT1)
    assert (report.kind, report.state, report.due_on, report.total) == (
        InvoiceKind.INVOICE,
        InvoiceState.INFORMATION,
        None,
        Decimal(0),
    )
    line = await InvoiceLine.get(invoice_id=report.id, item=BillingItem.SERVER_AGENT)
    assert (line.quantity, line.rate, line.amount) == (4, None, 0)


async def test_departments_get_chargeback_reports_in_the_enterprise_edition(
    use_settings, db, dispatched
) -> None:
    from tests.factories import build_world

    use_settings(edition="enterprise")
    world = await build_world()
    await simple_billing(world)
    await generate_many([world.orgs[k].id for k in ("A1", "R1")], OCT1)
    a1 = await Invoice.get(customer_id=world.orgs["A1"].id)
    assert (a1.kind, a1.state, a1.due_on, a1.total) == (
        InvoiceKind.CHARGEBACK,
        InvoiceState.INFORMATION,
        None,
        Decimal(10),
    )
    # A reseller is not a department: the provider still invoices it.
    r1 = await Invoice.get(customer_id=world.orgs["R1"].id)
    assert (r1.kind, r1.state) == (InvoiceKind.INVOICE, InvoiceState.UNPAID)


# --- the billing.run job ------------------------------------------------------------------------


async def run_job(job_id: int) -> str:
    from workers.actors.jobs import execute

    return await execute(job_id, "test-worker")


async def test_the_scheduled_run_bills_everyone_once(world, dispatched) -> None:
    await simple_billing(world)
    job, _ = await jobs.create(None, "billing.run", None, {"as_of": "2026-10-01"})
    assert await run_job(job.id) == "succeeded"
    job = await Job.get(id=job.id)
    assert job.result == {"as_of": "2026-10-01", "customers": 6, "invoices": 6}
    again, _ = await jobs.create(None, "billing.run", None, {"as_of": "2026-10-01"})
    assert await run_job(again.id) == "succeeded"
    assert (await Job.get(id=again.id)).result["invoices"] == 0
    assert await Invoice.all().count() == 6
    assert set(await Invoice.all().values_list("job_id", flat=True)) == {job.id}


async def test_a_run_killed_midway_completes_without_duplicates(
    world, dispatched, monkeypatch
) -> None:
    """Batches of one customer; the run dies (a lost connection) while billing the fourth
    customer, after three were committed and checkpointed; the retry resumes after the
    third, and a second job for the same day finds nothing left."""
    from app.jobs import billing
    from app.jobs.context import TransientError

    await simple_billing(world)
    monkeypatch.setattr(billing, "BATCH", 1)
    real = billing.generate_many
    calls: list[list[int]] = []

    async def dying(ids: list[int], *args: Any, **kwargs: Any) -> Any:
        calls.append(list(ids))
        if len(calls) == 4:
            raise TransientError("connection lost")
        return await real(ids, *args, **kwargs)

    monkeypatch.setattr(billing, "generate_many", dying)
    job, _ = await jobs.create(None, "billing.run", None, {"as_of": "2026-10-01"})
    assert await run_job(job.id) == "retrying"
    row = await Job.get(id=job.id)
    assert row.checkpoint["done"] == 3 and await Invoice.all().count() == 3
    assert await run_job(job.id) == "succeeded"
    customers = sorted(world.orgs[k].id for k in ("A1", "A2", "B1", "P1", "R1", "R2"))
    assert calls == [[c] for c in customers[:4]] + [[c] for c in customers[3:]]
    assert sorted(await Invoice.all().values_list("customer_id", flat=True)) == customers
    assert (await Job.get(id=job.id)).result["invoices"] == 6


async def test_generate_mutation_starts_a_run_for_the_callers_customers(
    world, gql, dispatched
) -> None:
    await simple_billing(world)
    token = world.token("R1", "Service Provider Administrator")
    body = await gql(GENERATE, {"input": {"asOf": "2026-10-01"}}, token=token)
    job = body["data"]["invoiceGenerate"]
    assert (job["kind"], job["state"], job["params"]) == (
        "billing.run",
        "QUEUED",
        {"as_of": "2026-10-01"},
    )
    row = await Job.get()
    assert await run_job(row.id) == "succeeded"
    # R1 bills A1 and A2; what the provider bills R1 is not R1's to generate.
    assert sorted(await Invoice.all().values_list("customer_id", flat=True)) == sorted(
        [world.orgs["A1"].id, world.orgs["A2"].id]
    )
    one = {"customerId": gid("Company", world.orgs["B1"].id)}
    assert code(await gql(GENERATE, {"input": one}, token=token)) == "NOT_FOUND"
    mine = {"customerId": gid("Reseller", world.orgs["R1"].id)}
    assert code(await gql(GENERATE, {"input": mine}, token=token)) == "NOT_FOUND"
    future = {"asOf": "2999-01-01"}
    assert code(await gql(GENERATE, {"input": future}, token=token)) == "BAD_USER_INPUT"
    body = await gql(
        GENERATE,
        {"input": {"customerId": gid("Reseller", world.orgs["R2"].id), "asOf": "2026-11-01"}},
        token=world.token("Provider", "Service Provider Global Administrator"),
    )
    job_id = int(body["data"]["invoiceGenerate"]["params"]["customer_id"])
    assert job_id == world.orgs["R2"].id


async def test_the_invoice_auditor_may_not_generate(world, gql, dispatched) -> None:
    """ "Full (for generated invoices)": acting on generated invoices, never generating."""
    await simple_billing(world)
    token = world.token("Provider", "Service Provider Invoice Auditor")
    body = await gql(GENERATE, {"input": {"asOf": "2026-10-01"}}, token=token)
    assert code(body) == "FORBIDDEN"
    assert await Job.all().count() == 0
    # A job the auditor somehow queued fails at run time, by the same engine rule.
    auditor = world.user("Provider", "Service Provider Invoice Auditor")
    job = await Job.create(
        kind="billing.run",
        functionality="INVOICES",
        organization=world.orgs["Provider"],
        requested_by=auditor,
        params={"as_of": "2026-10-01"},
    )
    assert await run_job(job.id) == "failed"
    assert await Invoice.all().count() == 0


def test_the_daily_schedules_are_on_in_real_settings_and_off_in_tests(monkeypatch) -> None:
    from dataclasses import replace

    from app.settings import load_settings
    from tests.conftest import TEST_SETTINGS
    from workers.schedules import BILLING, OVERDUE, default_schedules

    names = [s.name for s in default_schedules(TEST_SETTINGS)]
    assert BILLING not in names and OVERDUE not in names
    monkeypatch.delenv("TENANTRY_SCHEDULE_BILLING", raising=False)
    monkeypatch.delenv("TENANTRY_SCHEDULE_OVERDUE", raising=False)
    real = load_settings()
    assert (real.schedule_billing, real.schedule_overdue) == ("0 1 * * *", "0 2 * * *")
    on = replace(TEST_SETTINGS, schedule_billing="0 1 * * *", schedule_overdue="0 2 * * *")
    by_name = {s.name: s for s in default_schedules(on)}
    assert (by_name[BILLING].job_kind, by_name[OVERDUE].job_kind) == (
        "billing.run",
        "billing.overdue",
    )
    now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    assert by_name[BILLING].latest_tick(now) == datetime(2026, 11, 3, 1, 0, tzinfo=UTC)
    assert by_name[OVERDUE].latest_tick(now) == datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
    monkeypatch.setenv("TENANTRY_SCHEDULE_BILLING", "")
    assert load_settings().schedule_billing == ""


# --- concurrency (PostgreSQL) -------------------------------------------------------------------


@pytest.mark.skipif(
    not ON_POSTGRES, reason="advisory locks and concurrent transactions need PostgreSQL"
)
async def test_concurrent_runs_number_once_and_sequentially(world, dispatched) -> None:
    provider = world.orgs["Provider"]
    plan = await make_plan(provider)
    companies = []
    for i in range(24):
        org = await Organization.create(kind="COMPANY", name=f"C{i:02d}", parent=provider)
        await assign(org, plan, date(2026, 8, 1))
        companies.append(org.id)
    # Four runs over overlapping halves, at once: each customer's two invoices once, and the
    # provider's numbers 1..48 without a gap or a repeat.
    halves = [companies[:16], companies[8:], companies, companies[::-1]]
    await asyncio.gather(*[generate_many(ids, OCT1) for ids in halves])
    assert await Invoice.all().count() == 48
    got = await numbers(provider)
    assert got == [f"PROVIDER-2026-{i:06d}" for i in range(1, 49)]
    per_customer = await Invoice.filter(customer_id__in=companies).values_list(
        "customer_id", "period_start"
    )
    assert len(set(per_customer)) == 48
