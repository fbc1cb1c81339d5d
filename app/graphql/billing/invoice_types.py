"""GraphQL types of invoices, credit notes and chargeback reports. A page of invoices costs one
query for the page (customer and issuer joined) and one per nested list (lines, corrections),
whatever its size; money is given as decimal strings in the currency's minor units."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from weakref import WeakKeyDictionary

import strawberry
from strawberry.dataloader import DataLoader

from app.authz.capabilities import INVOICES
from app.authz.matrix import Action
from app.billing.money import quantum
from app.graphql.billing.plans import BillingItemEnum, InvoiceTypeEnum
from app.graphql.common import Node, viewer_can
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, to_global_id
from app.graphql.loaders import Loaders
from app.models.billing import Invoice, InvoiceKind, InvoiceLine, InvoiceState
from app.services import invoices

Info = strawberry.Info[Context, Any]

InvoiceKindEnum = strawberry.enum(
    InvoiceKind,
    name="InvoiceKind",
    description="INVOICE; CREDIT_NOTE (cancels a corrected invoice); CHARGEBACK (the "
    "enterprise edition's report to a department, no payment).",
)
InvoiceStateEnum = strawberry.enum(
    InvoiceState,
    name="InvoiceState",
    description="UNPAID → OVERDUE after the due date (daily); PAID and back to UNPAID by hand; "
    "INFORMATION for chargeback and quota usage reports and credit notes; CREDITED once "
    "corrected (a credit note and a new invoice were issued).",
)


def gid(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(to_global_id(type_name, pk))


def money(value: Any, currency: str) -> str:
    """A decimal string in the currency's minor units ("-12.30", "1500" for JPY)."""
    try:
        return str(Decimal(value).quantize(quantum(currency)))
    except Exception:  # an unknown code on an old row: as stored
        return str(Decimal(value))


def number(value: Any) -> str:
    """A quantity or rate without trailing zeros or exponent ("3", "0.05")."""
    text = format(Decimal(value), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- loaders, one set per request (hung on the request's Loaders) ---------------------------


class InvoiceLoaders:
    def __init__(self) -> None:
        self.lines: DataLoader[int, list[InvoiceLine]] = DataLoader(self._lines)
        self.corrections: DataLoader[int, list[Invoice]] = DataLoader(self._corrections)
        self.by_id: DataLoader[int, Invoice | None] = DataLoader(self._by_id)
        self.principal: Any = None

    async def _lines(self, ids: Sequence[int]) -> list[list[InvoiceLine]]:
        grouped: dict[int, list[InvoiceLine]] = defaultdict(list)
        for line in await InvoiceLine.filter(invoice_id__in=list(ids)).order_by(
            "invoice_id", "position"
        ):
            grouped[line.invoice_id].append(line)  # type: ignore[attr-defined]
        return [grouped.get(pk, []) for pk in ids]

    async def _corrections(self, ids: Sequence[int]) -> list[list[Invoice]]:
        grouped: dict[int, list[Invoice]] = defaultdict(list)
        rows = await Invoice.filter(
            invoices.invoice_q(self.principal), corrects_id__in=list(ids)
        ).select_related("customer", "issuer")
        for row in rows:
            grouped[row.corrects_id].append(row)  # type: ignore[attr-defined]
        return [grouped.get(pk, []) for pk in ids]

    async def _by_id(self, ids: Sequence[int]) -> list[Invoice | None]:
        rows = await Invoice.filter(
            invoices.invoice_q(self.principal), id__in=list(ids)
        ).select_related("customer", "issuer")
        found = {row.id: row for row in rows}
        return [found.get(pk) for pk in ids]


_LOADERS: WeakKeyDictionary[Loaders, InvoiceLoaders] = WeakKeyDictionary()


def loaders(info: Info) -> InvoiceLoaders:
    request_loaders = info.context.loaders
    found = _LOADERS.get(request_loaders)
    if found is None:
        found = _LOADERS[request_loaders] = InvoiceLoaders()
        found.principal = info.context.require_principal()
    return found


# --- types ----------------------------------------------------------------------------------


@strawberry.type(name="InvoiceLine", description="One billed item (per location when DETAILED).")
class InvoiceLineType:
    position: int
    item: BillingItemEnum  # type: ignore[valid-type]
    description: str
    unit: str
    location_id: strawberry.ID | None
    quantity: str = strawberry.field(description="Measured (negative on a credit note).")
    free_allowance: str = strawberry.field(description="The part of the allowance it used.")
    billable_quantity: str
    rate: str | None = strawberry.field(description="Per unit; null on quota usage reports.")
    amount: str

    @classmethod
    def from_row(cls, row: InvoiceLine, currency: str) -> InvoiceLineType:
        location = row.location_id  # type: ignore[attr-defined]
        return cls(
            position=row.position,
            item=row.item,
            description=row.description,
            unit=row.unit,
            location_id=gid("Location", location) if location else None,
            quantity=number(row.quantity),
            free_allowance=number(row.free_allowance),
            billable_quantity=number(row.billable_quantity),
            rate=None if row.rate is None else number(row.rate),
            amount=money(row.amount, currency),
        )


@strawberry.type(name="Invoice", description="An invoice, credit note or chargeback report.")
class InvoiceGQL(Node):
    _row: strawberry.Private[Invoice]
    id: strawberry.ID
    customer_id: strawberry.ID
    customer_name: str
    issuer_id: strawberry.ID
    issuer_name: str
    kind: InvoiceKindEnum  # type: ignore[valid-type]
    type: InvoiceTypeEnum  # type: ignore[valid-type]
    number: str
    revision: int = strawberry.field(description="0; n+1 for a correction's two documents.")
    period_start: date
    period_end: date = strawberry.field(description="Inclusive.")
    issued_on: date
    due_on: date | None
    currency: str
    subtotal: str
    discount: str
    tax: str
    total: str
    state: InvoiceStateEnum  # type: ignore[valid-type]
    generated: bool
    paid_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    pdf_url: str = strawberry.field(description="The PDF document (bearer auth).")

    @classmethod
    def from_row(cls, row: Invoice) -> InvoiceGQL:
        customer, issuer, currency = row.customer, row.issuer, row.currency
        global_id = to_global_id("Invoice", row.id)
        return cls(
            _row=row,
            id=strawberry.ID(global_id),
            customer_id=gid(ORG_TYPE_NAMES[customer.kind], customer.id),
            customer_name=customer.name,
            issuer_id=gid(ORG_TYPE_NAMES[issuer.kind], issuer.id),
            issuer_name=issuer.name,
            kind=row.kind,
            type=row.type,
            number=row.number,
            revision=row.revision,
            period_start=row.period_start,
            period_end=row.period_end,
            issued_on=row.issued_on,
            due_on=row.due_on,
            currency=currency,
            subtotal=money(row.subtotal, currency),
            discount=money(row.discount, currency),
            tax=money(row.tax, currency),
            total=money(row.total, currency),
            state=row.state,
            generated=row.generated,
            paid_at=row.paid_at,
            sent_at=row.sent_at,
            created_at=row.created_at,
            pdf_url=f"/invoices/{global_id}.pdf",
        )

    @strawberry.field(description="In the plan's order of items.")
    async def lines(self, info: Info) -> list[InvoiceLineType]:
        rows = await loaders(info).lines.load(self._row.id)
        return [InvoiceLineType.from_row(r, self._row.currency) for r in rows]

    @strawberry.field(description="What a credit note or replacement invoice corrects.")
    async def corrects(self, info: Info) -> InvoiceGQL | None:
        pk = self._row.corrects_id  # type: ignore[attr-defined]
        row = await loaders(info).by_id.load(pk) if pk else None
        return InvoiceGQL.from_row(row) if row else None

    async def _correction(self, info: Info, kind: InvoiceKind | None) -> InvoiceGQL | None:
        for row in await loaders(info).corrections.load(self._row.id):
            if (row.kind is InvoiceKind.CREDIT_NOTE) == (kind is InvoiceKind.CREDIT_NOTE):
                return InvoiceGQL.from_row(row)
        return None

    @strawberry.field(description="The credit note that cancelled this invoice, if corrected.")
    async def credit_note(self, info: Info) -> InvoiceGQL | None:
        return await self._correction(info, InvoiceKind.CREDIT_NOTE)

    @strawberry.field(description="The invoice that replaced this one, if corrected.")
    async def replaced_by(self, info: Info) -> InvoiceGQL | None:
        return await self._correction(info, None)

    def _may_update(self, info: Info) -> bool:
        return viewer_can(info, INVOICES, Action.UPDATE, invoices.target(self._row))

    @strawberry.field(description="UNPAID or OVERDUE, and you may mark it paid.")
    def viewer_can_mark_paid(self, info: Info) -> bool:
        return (
            self._row.kind is not InvoiceKind.CREDIT_NOTE
            and self._row.state in invoices.PAYABLE
            and self._may_update(info)
        )

    @strawberry.field(description="PAID, and you may mark it unpaid again.")
    def viewer_can_mark_unpaid(self, info: Info) -> bool:
        return self._row.state is InvoiceState.PAID and self._may_update(info)

    @strawberry.field(description="You may send its notification again.")
    def viewer_can_resend(self, info: Info) -> bool:
        return self._may_update(info)

    @strawberry.field(description="Not a credit note, not corrected yet, and you may correct it.")
    def viewer_can_correct(self, info: Info) -> bool:
        return (
            self._row.kind is not InvoiceKind.CREDIT_NOTE
            and self._row.state is not InvoiceState.CREDITED
            and self._may_update(info)
        )
