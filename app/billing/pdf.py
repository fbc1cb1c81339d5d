"""The PDF of an invoice, credit note, chargeback report or quota usage report (fpdf2).

`render_invoice(invoice_id)` reads the invoice and its lines (two queries) and renders in a
thread. The same invoice always gives the same bytes: the document's creation date is the
invoice's issue date, and fpdf2 derives the file id from the content.

Text: fpdf2's core fonts know latin-1 only. When DejaVu Sans is installed (most desktop and
CI images; not the slim Python image) it is embedded and every name prints as written;
otherwise the core font is used and characters outside latin-1 are transliterated (accents
dropped: "Ł" → "L"; what has no latin form becomes "?"), so a name never breaks rendering.

Read from the invoice's `plan_snapshot` (the plan as generated): `tax_type`,
`tax_rate_percent`, `discount_percent`; absent keys print nothing.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from app.billing.money import currency_digits, money
from app.errors import NotFound
from app.models.billing import Invoice, InvoiceKind, InvoiceLine, InvoiceState, InvoiceType

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)
# Letters that Unicode does not decompose into a latin base letter and an accent.
LATIN_FORMS = {
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Ħ": "H",
    "ħ": "h",
    "ı": "i",
    "Œ": "OE",
    "œ": "oe",
    "ŀ": "l",
    "Ŀ": "L",
    "ƒ": "f",
    "–": "-",
    "—": "-",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "€": "EUR",
    "…": "...",
}
TAX_LABELS = {"VAT": "VAT", "GST": "GST", "SALES_TAX": "Sales tax"}
TITLES = {
    InvoiceKind.INVOICE: "Invoice",
    InvoiceKind.CREDIT_NOTE: "Credit note",
    InvoiceKind.CHARGEBACK: "Chargeback report",
}


@dataclass(frozen=True)
class Line:
    description: str
    location: str
    quantity: Decimal
    unit: str
    rate: Decimal | None
    amount: Decimal


@dataclass(frozen=True)
class Document:
    """Everything the PDF shows, read from the database beforehand (rendering does no I/O)."""

    number: str
    kind: InvoiceKind
    type: InvoiceType
    state: InvoiceState
    issuer: str
    customer: str
    issued_on: date
    due_on: date | None
    period_start: date
    period_end: date
    currency: str
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal
    snapshot: dict[str, Any]
    lines: tuple[Line, ...]
    corrects: str = ""


@cache
def unicode_font() -> tuple[Path, Path] | None:
    """DejaVu Sans (regular, bold) if installed; None: use the core font."""
    for folder in FONT_DIRS:
        regular = folder / "DejaVuSans.ttf"
        if regular.is_file():
            bold = folder / "DejaVuSans-Bold.ttf"
            return regular, bold if bold.is_file() else regular
    return None


def latin1(text: str) -> str:
    """`text` with every character outside latin-1 replaced by its unaccented form, or '?'."""
    out = []
    for ch in text:
        if ord(ch) < 256 or ch in LATIN_FORMS:
            out.append(LATIN_FORMS.get(ch, ch))
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(base if base and all(ord(c) < 256 for c in base) else "?")
    return "".join(out)


def number(value: Decimal | None, at_least: int = 0) -> str:
    """A quantity or rate without trailing zeros (but with at least `at_least` decimals)."""
    if value is None:
        return ""
    text = f"{Decimal(value).normalize():f}"
    decimals = len(text.partition(".")[2])
    return f"{Decimal(value):,.{max(decimals, at_least)}f}"


def percent(value: Any) -> str:
    return number(Decimal(str(value))) + "%"


def stamp(doc: Document) -> str:
    """The state printed in the corner: what kind of document this is and where it stands."""
    if doc.kind is InvoiceKind.CREDIT_NOTE:
        return "CREDIT NOTE"
    if doc.kind is InvoiceKind.CHARGEBACK:
        return "CHARGEBACK REPORT"
    if doc.type is InvoiceType.QUOTA_USAGE:
        return "QUOTA USAGE REPORT"
    return doc.state.value


async def load(invoice_id: int) -> Document:
    invoice = (
        await Invoice.filter(id=invoice_id).select_related("customer", "issuer", "corrects").first()
    )
    if invoice is None:
        raise NotFound("invoice")
    rows = (
        await InvoiceLine.filter(invoice_id=invoice_id)
        .select_related("location")
        .order_by("position")
    )
    return Document(
        number=invoice.number,
        kind=invoice.kind,
        type=invoice.type,
        state=invoice.state,
        issuer=invoice.issuer.name,
        customer=invoice.customer.name,
        issued_on=invoice.issued_on,
        due_on=invoice.due_on,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        currency=invoice.currency,
        subtotal=invoice.subtotal,
        discount=invoice.discount,
        tax=invoice.tax,
        total=invoice.total,
        snapshot=dict(invoice.plan_snapshot or {}),
        corrects=invoice.corrects.number if invoice.corrects else "",
        lines=tuple(
            Line(
                description=row.description,
                location=row.location.name if row.location else "",
                quantity=row.quantity,
                unit=row.unit,
                rate=row.rate,
                amount=row.amount,
            )
            for row in rows
        ),
    )


async def render_invoice(invoice_id: int) -> bytes:
    """The invoice's PDF. NotFound when there is no such invoice (scope is the caller's job)."""
    doc = await load(invoice_id)
    return await asyncio.to_thread(render, doc)


def render(doc: Document, core_font: bool = False) -> bytes:
    """The PDF of `doc`: DejaVu Sans if installed, unless `core_font` asks for the core font."""
    fonts = None if core_font else unicode_font()
    pdf = FPDF(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, 15)
    family = "Helvetica"
    text: Callable[[str], str] = latin1
    if fonts is not None:
        pdf.add_font("Body", "", str(fonts[0]))
        pdf.add_font("Body", "B", str(fonts[1]))
        family, text = "Body", str
    title = TITLES.get(doc.kind, "Invoice")
    if doc.type is InvoiceType.QUOTA_USAGE:
        title = "Quota usage report"
    pdf.set_title(text(f"{title} {doc.number}"))
    pdf.set_author(text(doc.issuer))
    pdf.set_creator("Tenantry")
    pdf.set_producer("Tenantry")
    pdf.set_creation_date(datetime.combine(doc.issued_on, time(0), UTC))
    pdf.add_page()

    pdf.set_font(family, "B", 18)
    pdf.cell(110, 10, text(doc.issuer))
    pdf.set_font(family, "B", 12)
    pdf.set_text_color(180, 30, 30)
    pdf.cell(0, 10, stamp(doc), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_font(family, "", 14)
    pdf.cell(0, 8, text(f"{title} {doc.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    pdf.set_font(family, "", 10)
    facts = [
        ("Bill to" if doc.kind is not InvoiceKind.CHARGEBACK else "Department", doc.customer),
        ("Issued", doc.issued_on.isoformat()),
        ("Due", doc.due_on.isoformat() if doc.due_on else ""),
        ("Period", f"{doc.period_start.isoformat()} to {doc.period_end.isoformat()}"),
        ("Currency", doc.currency),
    ]
    if doc.corrects:
        facts.append(("Corrects", doc.corrects))
    for label, value in facts:
        if not value:
            continue
        pdf.set_font(family, "B", 10)
        pdf.cell(30, 6, label)
        pdf.set_font(family, "", 10)
        pdf.multi_cell(0, 6, text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    _lines(pdf, doc, family, text)
    if doc.type is not InvoiceType.QUOTA_USAGE:
        _totals(pdf, doc, family, text)
    return bytes(pdf.output())


def _lines(pdf: FPDF, doc: Document, family: str, text: Any) -> None:
    detailed = doc.type is InvoiceType.DETAILED
    costs = doc.type is not InvoiceType.QUOTA_USAGE
    headings = ["Description"]
    widths = [70.0]
    if detailed:
        headings.append("Location")
        widths = [52.0, 34.0]
    headings += ["Quantity", "Unit"]
    widths += [22.0, 18.0]
    if costs:
        headings += ["Rate", "Amount"]
        widths += [20.0, 26.0]
    align = ["LEFT"] * (2 if detailed else 1) + ["RIGHT", "LEFT"] + ["RIGHT"] * (2 if costs else 0)
    digits = currency_digits(doc.currency)
    pdf.set_font(family, "", 9)
    with pdf.table(
        col_widths=widths,
        text_align=tuple(align),
        headings_style=FontFace(emphasis="BOLD", fill_color=(230, 230, 230)),
        line_height=5,
        width=sum(widths),
        align="LEFT",
    ) as table:
        table.row(headings)
        for line in doc.lines:
            cells = [text(line.description)]
            if detailed:
                cells.append(text(line.location))
            cells += [number(line.quantity), text(line.unit)]
            if costs:
                cells += [number(line.rate, digits), money(line.amount, doc.currency)]
            table.row(cells)
    pdf.ln(4)


def _totals(pdf: FPDF, doc: Document, family: str, text: Any) -> None:
    snap = doc.snapshot
    rows: list[tuple[str, str]] = [("Subtotal", money(doc.subtotal, doc.currency))]
    if doc.discount or snap.get("discount_percent"):
        label = "Discount"
        if snap.get("discount_percent") not in (None, ""):
            label += f" ({percent(snap['discount_percent'])})"
        rows.append((label, money(-doc.discount if doc.discount else doc.discount, doc.currency)))
    tax_type = str(snap.get("tax_type") or "")
    if doc.tax or tax_type not in ("", "NONE"):
        label = TAX_LABELS.get(tax_type, "Tax")
        if snap.get("tax_rate_percent") not in (None, ""):
            label += f" {percent(snap['tax_rate_percent'])}"
        rows.append((label, money(doc.tax, doc.currency)))
    rows.append((f"Total ({doc.currency})", money(doc.total, doc.currency)))
    for index, (label, value) in enumerate(rows):
        last = index == len(rows) - 1
        pdf.set_font(family, "B" if last else "", 11 if last else 10)
        pdf.cell(140, 7, text(label), align="R")
        pdf.cell(0, 7, value, align="R", new_x="LMARGIN", new_y="NEXT")
