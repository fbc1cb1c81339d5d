"""Invoices as CSV for accounting, streamed in chunks (keyset by id: constant memory, one
query per CHUNK invoices). Money has the currency's minor units, without grouping; text cells
that a spreadsheet would run as a formula are quoted (`app.csv_cells.safe_cell`)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from tortoise.queryset import QuerySet

from app.billing.money import in_minor_units
from app.csv_cells import safe_cell
from app.models.billing import Invoice

CHUNK = 500
HEADER = (
    "number",
    "customer",
    "issuer",
    "kind",
    "type",
    "period_start",
    "period_end",
    "issued_on",
    "due_on",
    "currency",
    "subtotal",
    "discount",
    "tax",
    "total",
    "state",
)
_VALUES = {
    "id": "id",
    "number": "number",
    "customer": "customer__name",
    "issuer": "issuer__name",
    "kind": "kind",
    "type": "type",
    "period_start": "period_start",
    "period_end": "period_end",
    "issued_on": "issued_on",
    "due_on": "due_on",
    "currency": "currency",
    "subtotal": "subtotal",
    "discount": "discount",
    "tax": "tax",
    "total": "total",
    "state": "state",
}
MONEY = ("subtotal", "discount", "tax", "total")


def _text(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return safe_cell(getattr(value, "value", value))


def encode(rows: list[dict[str, Any]], header: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(HEADER)
    for row in rows:
        currency = row["currency"]
        writer.writerow(
            [
                f"{in_minor_units(row[c], currency):f}" if c in MONEY else _text(row[c])
                for c in HEADER
            ]
        )
    return buffer.getvalue().encode("utf-8")


async def stream(invoices: QuerySet[Invoice], chunk: int = CHUNK) -> AsyncIterator[bytes]:
    """The header, then the invoices of `invoices` (already scoped and filtered) by id."""
    yield encode([], header=True)
    last = 0
    while True:
        rows = await invoices.filter(id__gt=last).order_by("id").limit(chunk).values(**_VALUES)
        if not rows:
            return
        yield encode(rows)
        last = rows[-1]["id"]
        if len(rows) < chunk:
            return
