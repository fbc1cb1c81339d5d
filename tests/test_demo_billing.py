"""The demo's billing: the provider's and each reseller's plan assigned to the customers they
bill, three months of invoices per customer whose totals add up, one paid invoice per customer,
overdue ones, one correction per issuer, nothing added by a second seeding, and a demo company
owner reading its invoices and downloading a PDF (a Location Administrator may not)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

import app.demo
from app.demo import COMPANIES, PROVIDER, RESELLERS, seed_demo
from app.models import AuditEntry, Organization, OrgKind
from app.models.billing import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    OutboxMessage,
    PlanAssignment,
    PlanRate,
    SubscriptionPlan,
)
from app.simulator.demo_billing import (
    DEMO_PLANS,
    LATE_TRANSFER_GB,
    months_before,
    seed_demo_billing,
)

COUNTED = (
    SubscriptionPlan,
    PlanRate,
    PlanAssignment,
    Invoice,
    InvoiceLine,
    OutboxMessage,
    AuditEntry,
)
CENT = Decimal("0.01")


async def counts() -> dict[str, int]:
    return {model.__name__: await model.all().count() for model in COUNTED}


@pytest.fixture
async def seeded(db, monkeypatch) -> int:
    """The demo seeded, then its billing on its own: the invoices it issued. (How long seeding
    takes is measured by no test: a wall-clock bound failed on a loaded machine.)"""

    async def later() -> int:
        return 0

    monkeypatch.setattr(app.demo, "seed_demo_billing", later)
    assert await seed_demo() is True
    assert await Invoice.all().count() == 0
    return await seed_demo_billing()


def test_months_before_keeps_the_day_or_takes_the_month_end():
    assert months_before(date(2026, 5, 31), 3) == date(2026, 2, 28)
    assert months_before(date(2026, 2, 15), 3) == date(2025, 11, 15)
    assert months_before(date(2026, 1, 1), 1) == date(2025, 12, 1)


def first_days_of_last_months(today: date, n: int) -> list[date]:
    out, day = [], today.replace(day=1)
    for _ in range(n):
        out.append(day)
        day = (day - timedelta(days=1)).replace(day=1)
    return sorted(out)


async def test_plans_assignments_and_monthly_invoices_that_add_up(seeded):
    assert seeded > 0
    today = datetime.now(UTC).date()
    plans = {p.owner.name: p for p in await SubscriptionPlan.all().select_related("owner")}
    assert sorted(plans) == sorted([PROVIDER[0], *(name for name, _ in RESELLERS)])
    provider_plan = plans[PROVIDER[0]]
    assert (provider_plan.name, provider_plan.currency, provider_plan.tax_type.value) == (
        "Provider standard (EUR)",
        "EUR",
        "VAT",
    )
    assert provider_plan.tax_rate_percent == Decimal("21")
    storage = await PlanRate.get(plan_id=provider_plan.id, item="CLOUD_STORAGE_GB")
    assert (storage.storage_mode.value, storage.block_gb, storage.round_up) == (
        "CONSUMED",
        100,
        True,
    )
    assert await PlanRate.filter(plan_id=provider_plan.id, free_allowance__gt=0).count() >= 2
    assert {p.currency for p in plans.values()} == {"EUR", "USD", "GBP"}
    assert {p.invoice_type.value for p in plans.values()} == {"SUMMARY", "DETAILED"}

    # Who is billed by whom: the provider its resellers and direct companies, each reseller
    # its companies; billing started 3 months ago.
    expected = {name: PROVIDER[0] for name, _ in RESELLERS}
    expected |= {name: parent for name, _, parent in COMPANIES}
    assignments = await PlanAssignment.all().select_related("customer", "plan__owner")
    assert {a.customer.name: a.plan.owner.name for a in assignments} == expected
    start = months_before(today, 3)
    assert {a.billing_start for a in assignments} == {start}

    rows = await Invoice.all().select_related("customer", "issuer").order_by("id")
    lines: dict[int, list[InvoiceLine]] = defaultdict(list)
    for line in await InvoiceLine.all():
        lines[line.invoice_id].append(line)  # type: ignore[attr-defined]
    dates = first_days_of_last_months(today, 3)
    for name, issuer in expected.items():
        billed = [
            r
            for r in rows
            if r.customer.name == name and r.kind is InvoiceKind.INVOICE and r.revision == 0
        ]
        assert [r.issued_on for r in billed] == dates, name
        assert {r.issuer.name for r in billed} == {issuer}
        assert billed[0].period_start == start
        for before, after in itertools.pairwise(billed):
            assert after.period_start == before.period_end + timedelta(days=1)
        assert billed[-1].period_end == dates[-1] - timedelta(days=1)
    plan_of = {a.customer.name: a.plan for a in assignments}
    for r in rows:
        plan = plan_of[r.customer.name]
        assert r.currency == plan.currency and r.generated
        subtotal = sum((line.amount for line in lines[r.id]), Decimal(0))
        assert lines[r.id], r.number
        assert r.subtotal == subtotal, r.number
        assert r.total == r.subtotal - r.discount + r.tax, r.number
        if r.kind is InvoiceKind.CREDIT_NOTE:
            continue
        assert r.total > 0, r.number
        discount = (subtotal * plan.discount_percent / 100).quantize(CENT, ROUND_HALF_UP)
        tax = ((subtotal - discount) * plan.tax_rate_percent / 100).quantize(CENT, ROUND_HALF_UP)
        assert (r.discount, r.tax) == (discount, tax), r.number
    # Detailed invoices name locations.
    detailed = [r for r in rows if r.type.value == "DETAILED"]
    assert detailed and all(
        any(line.location_id is not None for line in lines[r.id]) for r in detailed
    )
    # Numbers run per issuer without gaps.
    numbers: dict[str, list[str]] = defaultdict(list)  # in id order: the order written
    for r in rows:
        numbers[r.issuer.name].append(r.number)
    for issued in numbers.values():
        by_year: dict[str, list[int]] = defaultdict(list)
        for n in issued:
            _, year, seq = n.rsplit("-", 2)
            by_year[year].append(int(seq))
        for seqs in by_year.values():  # a new year starts again at 1
            assert seqs == list(range(1, len(seqs) + 1)), issued


async def test_paid_overdue_and_corrected_invoices_are_there(seeded):
    today = datetime.now(UTC).date()
    rows = await Invoice.all().select_related("customer").order_by("issued_on", "id")
    originals = [r for r in rows if r.kind is InvoiceKind.INVOICE and r.revision == 0]
    # Each customer's oldest invoice was paid a week after its date.
    paid = [r for r in rows if r.state is InvoiceState.PAID]
    assert len(paid) == 8
    for r in paid:
        assert r.issued_on == min(o.issued_on for o in originals if o.customer_id == r.customer_id)
        assert r.paid_at is not None and r.paid_at.date() == r.issued_on + timedelta(days=7)
    # Unpaid invoices past their due date are OVERDUE; none before it.
    overdue = [r for r in rows if r.state is InvoiceState.OVERDUE]
    assert overdue
    assert all(r.due_on is not None and r.due_on < today for r in overdue)
    assert all(
        r.due_on is not None and r.due_on >= today for r in rows if r.state is InvoiceState.UNPAID
    )
    # Last month's provider invoices (due after 14 days) are overdue whatever today is.
    last_month = first_days_of_last_months(today, 2)[0]
    provider = await Organization.get(kind=OrgKind.PROVIDER.value)
    assert {
        r.state
        for r in originals
        if r.issuer_id == provider.id and r.issued_on == last_month  # type: ignore[attr-defined]
    } == {InvoiceState.OVERDUE}
    # One correction per issuer: the original CREDITED, a credit note negating it, a new
    # invoice of the same period (revision 1, due in the future).
    credited = [r for r in rows if r.state is InvoiceState.CREDITED]
    assert len(credited) == len(DEMO_PLANS)
    assert {r.customer.name for r in credited} == {"Globex", "Umbrella Labs", "Stark Industries"}
    for original in credited:
        followers = [r for r in rows if r.corrects_id == original.id]  # type: ignore[attr-defined]
        assert sorted(r.kind.value for r in followers) == ["CREDIT_NOTE", "INVOICE"]
        for r in followers:
            assert r.revision == 1
            assert (r.period_start, r.period_end) == (original.period_start, original.period_end)
        note = next(r for r in followers if r.kind is InvoiceKind.CREDIT_NOTE)
        new = next(r for r in followers if r.kind is InvoiceKind.INVOICE)
        assert note.total == -original.total and note.state is InvoiceState.INFORMATION
        assert new.state is InvoiceState.UNPAID and new.due_on is not None and new.due_on > today
        # The reason: data transferred out in the period, recorded late, billed by the new one.
        rate = await PlanRate.get(plan_id=original.plan_id, item="TRANSFER_OUT_GB")  # type: ignore[attr-defined]
        late = [
            line
            for line in await InvoiceLine.filter(invoice_id=new.id, item="TRANSFER_OUT_GB")
            if line.quantity
        ]
        assert [line.quantity for line in late] == [LATE_TRANSFER_GB]
        extra = ((LATE_TRANSFER_GB - rate.free_allowance) * rate.rate).quantize(CENT)
        assert new.subtotal - original.subtotal == extra > 0
    # The notifications wait in the outbox: nothing was delivered while seeding.
    messages = await OutboxMessage.all()
    assert len(messages) >= len(rows)
    assert {m.state.value for m in messages} == {"PENDING"}


async def test_seeding_twice_adds_nothing(seeded):
    before = await counts()
    assert before["Invoice"] == 8 * 3 + 2 * len(DEMO_PLANS)
    assert await seed_demo_billing() == 0
    assert await seed_demo() is False
    assert await counts() == before


async def test_the_enterprise_edition_gets_chargeback_reports(db, use_settings):
    use_settings(edition="enterprise")
    assert await seed_demo() is True
    rows = await Invoice.filter(revision=0).select_related("customer")
    assert len(rows) == 8 * 3
    for r in rows:
        if r.customer.kind is OrgKind.COMPANY:
            assert (r.kind, r.state) == (InvoiceKind.CHARGEBACK, InvoiceState.INFORMATION)
        else:  # the provider still invoices its resellers
            assert r.kind is InvoiceKind.INVOICE
    assert await Invoice.filter(state=InvoiceState.PAID).count() == 2
    assert await Invoice.filter(kind=InvoiceKind.CREDIT_NOTE).count() == 1


LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
INVOICES = """{ invoices(first: 50) { totalCount edges { node {
    number customerName issuerName currency state total pdfUrl
    lines { description amount } } } } }"""


async def _token(gql, email: str, password: str) -> str:
    body = await gql(LOGIN, {"e": email, "p": password})
    assert "errors" not in body, body
    return body["data"]["login"]["token"]


async def test_a_demo_owner_reads_its_invoices_and_downloads_a_pdf(seeded, gql, client, settings):
    token = await _token(gql, "owner@initech.demo", settings.demo_password)
    body = await gql(INVOICES, token=token)
    assert "errors" not in body, body
    found = body["data"]["invoices"]
    assert found["totalCount"] == 3
    nodes = [edge["node"] for edge in found["edges"]]
    assert {(n["customerName"], n["issuerName"], n["currency"]) for n in nodes} == {
        ("Initech", "Northwind Backup", "USD")
    }
    stored = await Invoice.filter(customer__name="Initech").order_by("-issued_on")
    assert [n["number"] for n in nodes] == [r.number for r in stored]
    assert [Decimal(n["total"]) for n in nodes] == [r.total for r in stored]
    assert "PAID" in {n["state"] for n in nodes}
    assert all(n["lines"] for n in nodes)

    resp = await client.get(nodes[0]["pdfUrl"], headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text[:200]
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.content.startswith(b"%PDF")
    assert f'filename="{nodes[0]["number"]}.pdf"' in resp.headers["content-disposition"]

    # The Location Administrator has no billing at all.
    token = await _token(gql, "location-administrator@initech.demo", settings.demo_password)
    body = await gql(INVOICES, token=token)
    assert body["data"] is None or body["data"]["invoices"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    resp = await client.get(nodes[0]["pdfUrl"], headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403
