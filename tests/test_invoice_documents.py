"""Invoice documents: the PDF (parsed back with pypdf), its download for every principal of the
world as the engine decides, NOT_FOUND across tenants, and the CSV export for accounting
(content, date range, formula safety, streaming in chunks); the invoice e-mails' recipients."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from pypdf import PdfReader

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import INVOICES
from app.authz.matrix import Action
from app.billing import csv_export, pdf
from app.graphql.ids import to_global_id
from app.models import Organization, OrgKind, User
from app.models.billing import (
    BillingItem,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    InvoiceType,
    OutboxMessage,
)
from app.services import invoice_notifications
from tests.factories import add_user
from tests.querycount import count_queries

UNICODE = "Zürich Ünïcødé ☃"


async def make_invoice(
    world,
    customer: str = "A1",
    number: str = "R1-2026-0001",
    *,
    type: InvoiceType = InvoiceType.DETAILED,
    kind: InvoiceKind = InvoiceKind.INVOICE,
    state: InvoiceState = InvoiceState.UNPAID,
    issued_on: date = date(2026, 11, 1),
    period_start: date = date(2026, 10, 1),
    currency: str = "EUR",
    generated: bool = True,
    lines: int = 2,
) -> Invoice:
    company = world.orgs[customer]
    invoice = await Invoice.create(
        customer=company,
        issuer_id=company.parent_id,
        kind=kind,
        type=type,
        number=number,
        period_start=period_start,
        period_end=date(2026, 10, 31),
        issued_on=issued_on,
        due_on=date(2026, 12, 1),
        currency=currency,
        subtotal=Decimal("1234.5000"),
        discount=Decimal("123.4500"),
        tax=Decimal("222.2100"),
        total=Decimal("1333.2600"),
        plan_snapshot={"tax_type": "VAT", "tax_rate_percent": "20.0000", "discount_percent": "10"},
        state=state,
        generated=generated,
    )
    location = world.locations.get(f"{customer}-Default")
    await InvoiceLine.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                position=i,
                location=location,
                item=BillingItem.SERVER_AGENT,
                description=f"Server agents line {i}",
                unit="agent",
                quantity=Decimal("3"),
                billable_quantity=Decimal("3"),
                rate=Decimal("12.5000"),
                amount=Decimal("37.5000"),
            )
            for i in range(1, lines + 1)
        ]
    )
    return invoice


def text_of(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


# --- PDF ---------------------------------------------------------------------------------------


async def test_the_pdf_holds_number_totals_lines_and_state(world) -> None:
    invoice = await make_invoice(world)
    data = await pdf.render_invoice(invoice.id)
    assert data.startswith(b"%PDF-")
    text = text_of(data)
    for expected in (
        "R1-2026-0001",
        "R1",  # the issuer
        "A1",  # the customer
        "Server agents line 1",
        "Server agents line 2",
        "Default location",  # a DETAILED invoice names each line's location
        "2026-10-01 to 2026-10-31",
        "1,234.50",
        "-123.45",
        "Discount (10%)",
        "VAT 20%",
        "222.21",
        "Total (EUR)",
        "1,333.26",
        "UNPAID",
    ):
        assert expected in text, expected
    # The same invoice gives the same bytes (creation date from the invoice).
    assert await pdf.render_invoice(invoice.id) == data


async def test_minor_units_follow_the_currency_and_summaries_have_no_location(world) -> None:
    jpy = await make_invoice(world, number="R1-JPY", currency="JPY", type=InvoiceType.SUMMARY)
    text = text_of(await pdf.render_invoice(jpy.id))
    assert "1,333" in text and "1,333.26" not in text
    assert "Default location" not in text and "Location" not in text
    bhd = await make_invoice(world, "A2", "R1-BHD", currency="BHD")
    assert "1,333.260" in text_of(await pdf.render_invoice(bhd.id))


@pytest.mark.parametrize(
    ("kind", "type", "state", "stamp"),
    [
        (InvoiceKind.CREDIT_NOTE, InvoiceType.SUMMARY, InvoiceState.INFORMATION, "CREDIT NOTE"),
        (InvoiceKind.CHARGEBACK, InvoiceType.SUMMARY, InvoiceState.INFORMATION, "CHARGEBACK"),
        (InvoiceKind.INVOICE, InvoiceType.SUMMARY, InvoiceState.PAID, "PAID"),
        (InvoiceKind.INVOICE, InvoiceType.QUOTA_USAGE, InvoiceState.INFORMATION, "QUOTA USAGE"),
    ],
)
async def test_the_state_is_printed(world, kind, type, state, stamp) -> None:
    invoice = await make_invoice(world, kind=kind, type=type, state=state)
    text = text_of(await pdf.render_invoice(invoice.id))
    assert stamp in text
    if type is InvoiceType.QUOTA_USAGE:  # quantities only: no rates, amounts or totals
        assert "Total" not in text and "37.50" not in text and "Server agents line 1" in text


async def test_unicode_names_never_break_the_pdf(world) -> None:
    await Organization.filter(id=world.orgs["A1"].id).update(name=UNICODE)
    await Organization.filter(id=world.orgs["R1"].id).update(name="Łódź 東京 Ωmega")
    invoice = await make_invoice(world)
    doc = await pdf.load(invoice.id)
    if pdf.unicode_font() is not None:  # DejaVu installed: names print as written
        assert UNICODE in text_of(pdf.render(doc))
    # Without a Unicode font (the slim image), the core font and transliteration.
    text = text_of(pdf.render(doc, core_font=True))
    assert "Zürich Ünïcødé ?" in text
    assert "Lódz ?? ?mega" in text
    assert pdf.latin1("Ærøskøbing – Łukasz ☃") == "Ærøskøbing - Lukasz ?"


async def test_render_reads_an_invoice_in_two_queries(world) -> None:
    invoice = await make_invoice(world, lines=40)
    with count_queries() as queries:
        await pdf.render_invoice(invoice.id)
    assert queries.count == 2, queries.statements


# --- download ----------------------------------------------------------------------------------


def expected_status(p, invoice_customer: str, world) -> int:
    """Independent of the code under test: the engine's field-level answer, then the scope
    of an A1 invoice (between R1 and A1): R1's staff (unrestricted) and A1's users."""
    if not engine.allows(p, INVOICES, Action.READ):
        return 403
    in_scope = p.organization_id in (world.orgs["R1"].id, world.orgs[invoice_customer].id)
    return 200 if in_scope else 404


async def test_download_for_every_principal_of_the_world(world, client) -> None:
    invoice = await make_invoice(world)
    url = f"/invoices/{to_global_id('Invoice', invoice.id)}.pdf"
    seen: dict[int, list[str]] = {200: [], 403: [], 404: []}
    for key, token in world.tokens.items():
        p = await principal_for_bearer(token)
        resp = await client.get(url, headers={"Authorization": f"Bearer {token}"})
        want = expected_status(p, "A1", world)
        assert resp.status_code == want, (key, resp.status_code, resp.text[:200])
        seen[want].append(key)
        if want == 200:
            assert resp.headers["content-type"] == "application/pdf"
            assert 'filename="R1-2026-0001.pdf"' in resp.headers["content-disposition"]
            assert "Server agents line 1" in text_of(resp.content)
        else:
            code = {403: "FORBIDDEN", 404: "NOT_FOUND"}[want]
            assert resp.json()["errors"][0]["extensions"]["code"] == code
    assert "A1:Company Owner" in seen[200] and "A1:Company Invoice Auditor" in seen[200]
    assert "R1:Service Provider Invoice Auditor" in seen[200]
    assert "A1:Location Administrator" in seen[403]
    assert "B1:Company Owner" in seen[404] and "R2:Service Provider Administrator" in seen[404]


async def test_download_errors(world, client) -> None:
    invoice = await make_invoice(world, generated=False)
    url = f"/invoices/{to_global_id('Invoice', invoice.id)}.pdf"
    assert (await client.get(url)).status_code == 401
    auditor = {"Authorization": f"Bearer {world.token('R1', 'Service Provider Invoice Auditor')}"}
    # "Full (for generated invoices)": one still being generated is not the auditor's to see.
    resp = await client.get(url, headers=auditor)
    assert resp.status_code == 404 and resp.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    owner = {"Authorization": f"Bearer {world.token('A1', 'Company Owner')}"}
    assert (await client.get(url, headers=owner)).status_code == 200
    missing = f"/invoices/{to_global_id('Invoice', invoice.id + 99)}.pdf"
    assert (await client.get(missing, headers=owner)).status_code == 404
    wrong_type = f"/invoices/{to_global_id('Company', invoice.id)}.pdf"
    resp = await client.get(wrong_type, headers=owner)
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# --- CSV ---------------------------------------------------------------------------------------


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


async def test_csv_export_in_scope_range_and_formula_safe(world, client) -> None:
    evil = await Organization.create(
        kind=OrgKind.COMPANY, name='=HYPERLINK("http://x")', parent=world.orgs["R1"]
    )
    world.orgs["Evil"] = evil
    await make_invoice(world, "A1", "R1-0001", issued_on=date(2026, 10, 1))
    await make_invoice(world, "A2", "R1-0002", issued_on=date(2026, 11, 1), currency="JPY")
    await make_invoice(world, "Evil", "+R1-0003", issued_on=date(2026, 11, 2))
    await make_invoice(world, "B1", "R2-0001", issued_on=date(2026, 11, 1))
    headers = {"Authorization": f"Bearer {world.token('R1', 'Service Provider Administrator')}"}
    resp = await client.get("/invoices.csv?from=2026-11-01&to=2026-11-30", headers=headers)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = rows_of(resp.content)
    assert [r["number"] for r in rows] == ["R1-0002", "'+R1-0003"]
    first, evil_row = rows
    assert first == {
        "number": "R1-0002",
        "customer": "A2",
        "issuer": "R1",
        "kind": "INVOICE",
        "type": "DETAILED",
        "period_start": "2026-10-01",
        "period_end": "2026-10-31",
        "issued_on": "2026-11-01",
        "due_on": "2026-12-01",
        "currency": "JPY",
        "subtotal": "1235",
        "discount": "123",
        "tax": "222",
        "total": "1333",
        "state": "UNPAID",
    }
    assert evil_row["customer"] == '\'=HYPERLINK("http://x")'
    assert evil_row["total"] == "1333.26"
    # A company user sees only their own company's; without a range, all of them.
    owner = {"Authorization": f"Bearer {world.token('A1', 'Company Owner')}"}
    rows = rows_of((await client.get("/invoices.csv", headers=owner)).content)
    assert [r["number"] for r in rows] == ["R1-0001"]


async def test_csv_errors(world, client) -> None:
    assert (await client.get("/invoices.csv")).status_code == 401
    admin = {"Authorization": f"Bearer {world.token('A1', 'Location Administrator')}"}
    resp = await client.get("/invoices.csv", headers=admin)
    assert resp.status_code == 403
    owner = {"Authorization": f"Bearer {world.token('A1', 'Company Owner')}"}
    resp = await client.get("/invoices.csv?from=2026-13-01", headers=owner)
    assert resp.status_code == 400 and resp.json()["errors"][0]["extensions"]["field"] == "from"
    resp = await client.get("/invoices.csv?from=2026-11-02&to=2026-11-01", headers=owner)
    assert resp.status_code == 400


async def test_csv_streams_in_chunks(world) -> None:
    for i in range(5):
        await make_invoice(
            world,
            "A1",
            f"N-{i}",
            issued_on=date(2026, 11, 1 + i),
            period_start=date(2026, 10, 1 + i),
            lines=0,
        )
    chunks = [c async for c in csv_export.stream(Invoice.all(), chunk=2)]
    assert len(chunks) == 4  # the header, then 2 + 2 + 1 invoices
    assert [r["number"] for r in rows_of(b"".join(chunks))] == [f"N-{i}" for i in range(5)]


# --- notification recipients ---------------------------------------------------------------------


async def test_invoice_emails_go_to_the_primary_user_and_the_invoice_auditors(world) -> None:
    invoice = await make_invoice(world)
    gone = await add_user(world, "A1", "Company Invoice Auditor", key="A1:gone", token=False)
    await User.filter(id=gone.id).update(enabled=False)  # disabled users get nothing
    assert await invoice_notifications.notify_issued(invoice) == 2
    assert await invoice_notifications.notify_issued(invoice) == 2  # a re-run: nothing new
    rows = await OutboxMessage.all().order_by("id").values("recipient", "dedup_key", "attachments")
    owner, auditor = world.user("A1", "Company Owner"), world.user("A1", "Company Invoice Auditor")
    assert rows == [
        {
            "recipient": owner.email,
            "dedup_key": f"invoice-issued:{invoice.id}:{owner.id}",
            "attachments": {"invoice_pdf": invoice.id},
        },
        {
            "recipient": auditor.email,
            "dedup_key": f"invoice-issued:{invoice.id}:{auditor.id}",
            "attachments": {"invoice_pdf": invoice.id},
        },
    ]
    await invoice_notifications.notify_resent(invoice)
    await invoice_notifications.notify_resent(invoice)
    keys = await OutboxMessage.filter(dedup_key__startswith="invoice-resent").values_list(
        "dedup_key", flat=True
    )
    assert sorted(keys) == sorted(
        f"invoice-resent:{invoice.id}:{n}:{u.id}" for n in (1, 2) for u in (owner, auditor)
    )
    # A reseller billed by the provider: its Global Administrator and its Invoice Auditor.
    reseller = await Invoice.create(
        customer=world.orgs["R1"],
        issuer=world.orgs["Provider"],
        type=InvoiceType.SUMMARY,
        number="P-0001",
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        issued_on=date(2026, 11, 1),
        currency="EUR",
        state=InvoiceState.UNPAID,
    )
    await invoice_notifications.notify_issued(reseller)
    names = await OutboxMessage.filter(dedup_key__startswith=f"invoice-issued:{reseller.id}:")
    assert sorted(m.recipient for m in names) == sorted(
        world.user("R1", role).email
        for role in ("Service Provider Global Administrator", "Service Provider Invoice Auditor")
    )


async def test_recipient_roles_come_from_the_matrix() -> None:
    from app.authz.matrix import Portal, load_matrix

    for portal in Portal:
        matrix = load_matrix().portals[portal]
        roles = invoice_notifications.recipient_roles(portal)
        primary = {r.name for r in matrix.roles if r.primary}
        assert primary <= roles
        for name in roles - primary:  # every other recipient reads invoices, configures nothing
            grants = matrix.grants(name)
            assert Action.READ in grants[next(k for k in grants if k.value == "INVOICES")].actions
        assert len(roles) == 2, (portal, roles)


async def test_chargeback_reports_in_the_enterprise_edition(db, client, use_settings) -> None:
    from tests.factories import build_world

    use_settings(edition="enterprise")
    world = await build_world()
    report = await make_invoice(
        world, kind=InvoiceKind.CHARGEBACK, type=InvoiceType.SUMMARY, state=InvoiceState.INFORMATION
    )
    url = f"/invoices/{to_global_id('Invoice', report.id)}.pdf"
    statuses = {}
    for role in ("Department Owner", "Chargeback Auditor", "Department Administrator"):
        headers = {"Authorization": f"Bearer {world.token('A1', role)}"}
        statuses[role] = (await client.get(url, headers=headers)).status_code
    assert statuses == {
        "Department Owner": 200,
        "Chargeback Auditor": 200,
        "Department Administrator": 403,  # "N/A" on the Chargeback Reports row
    }
    assert await invoice_notifications.notify_issued(report) == 2
    recipients = await OutboxMessage.all().order_by("id").values_list("recipient", flat=True)
    assert recipients == [
        world.user("A1", "Department Owner").email,
        world.user("A1", "Chargeback Auditor").email,
    ]
