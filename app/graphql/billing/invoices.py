"""GraphQL for invoices: the list (newest first) and one invoice, generating them in the
background (billing.run), and their life cycle: paid, unpaid, resent, corrected.

Rows: `app.services.invoices.invoice_q` (the invoices the caller's organization issued or
received, of customers in scope; generated ones only for a role whose cell says so). The
Invoices row of the matrix guards every field (Chargeback Reports in the Department Portal).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import strawberry

from app.authz.capabilities import INVOICES
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import BadInput
from app.graphql.billing.invoice_types import (
    InvoiceGQL,
    InvoiceKindEnum,
    InvoiceStateEnum,
)
from app.graphql.common import actor, principal, register_node
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, from_global_id, pk_of
from app.graphql.jobs.types import JobType
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.models.billing import Invoice, InvoiceKind, InvoiceState
from app.services import invoices

Info = strawberry.Info[Context, Any]

CUSTOMER_TYPES = {ORG_TYPE_NAMES[k] for k in ORG_TYPE_NAMES} - {"ServiceProvider"}


def customer_pk(global_id: strawberry.ID, field: str) -> int:
    type_name, pk = from_global_id(global_id, field)
    if type_name not in CUSTOMER_TYPES:
        raise BadInput("expected the id of a Company or a Reseller", field=field)
    return pk


@strawberry.input
class InvoiceFilter:
    customer_id: strawberry.ID | None = None
    state: InvoiceStateEnum | None = None  # type: ignore[valid-type]
    kind: InvoiceKindEnum | None = None  # type: ignore[valid-type]
    from_: date | None = strawberry.field(
        default=None, name="from", description="Issued on or after this day."
    )
    to: date | None = strawberry.field(default=None, description="Issued on or before this day.")


@strawberry.input
class InvoiceGenerateInput:
    customer_id: strawberry.ID | None = strawberry.field(
        default=None, description="One customer (a company or reseller you bill); none: all."
    )
    as_of: date | None = strawberry.field(
        default=None, description="Generate what is due on this day (default: today)."
    )


@strawberry.type
class InvoiceCorrectPayload:
    corrected: InvoiceGQL = strawberry.field(description="The original, now CREDITED.")
    credit_note: InvoiceGQL
    invoice: InvoiceGQL = strawberry.field(description="The replacement (revision n+1).")


async def _invoice(p: Principal, pk: int) -> InvoiceGQL:
    await invoices.invoice_in_scope(p, pk)
    return await _reloaded(pk)


async def _reloaded(pk: int) -> InvoiceGQL:
    row = await Invoice.filter(id=pk).select_related("customer", "issuer").get()
    return InvoiceGQL.from_row(row)


register_node("Invoice", INVOICES, _invoice)


@strawberry.type
class InvoiceQuery:
    @strawberry.field(
        extensions=guard(INVOICES, Action.READ),
        description="Invoices, credit notes and chargeback reports you issued or received, "
        "newest first.",
    )
    async def invoices(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: InvoiceFilter | None = None,
    ) -> Connection[InvoiceGQL] | None:
        query = Invoice.filter(invoices.invoice_q(principal(info))).select_related(
            "customer", "issuer"
        )
        if filter is not None:
            if filter.customer_id:
                query = query.filter(
                    customer_id=customer_pk(filter.customer_id, "filter.customerId")
                )
            if filter.state is not None:
                query = query.filter(state=InvoiceState(filter.state).value)
            if filter.kind is not None:
                query = query.filter(kind=InvoiceKind(filter.kind).value)
            if filter.from_ is not None:
                query = query.filter(issued_on__gte=filter.from_)
            if filter.to is not None:
                query = query.filter(issued_on__lte=filter.to)
        return await paginate(query, first, after, InvoiceGQL.from_row, descending=True)

    @strawberry.field(extensions=guard(INVOICES, Action.READ))
    async def invoice(self, info: Info, id: strawberry.ID) -> InvoiceGQL | None:
        return await _invoice(principal(info), pk_of(id, "Invoice"))


@strawberry.type
class InvoiceMutation:
    @strawberry.mutation(
        extensions=guard(INVOICES, Action.CREATE),
        description="Generates the invoices that are due, for one customer or every customer "
        "you bill, in the background (a billing.run job). A repeated run bills nothing twice.",
    )
    async def invoice_generate(
        self, info: Info, input: InvoiceGenerateInput | None = None
    ) -> JobType:
        customer = input.customer_id if input else None
        job = await invoices.start_generation(
            actor(info),
            customer_pk(customer, "input.customerId") if customer else None,
            input.as_of if input else None,
        )
        return JobType.from_row(job)

    @strawberry.mutation(extensions=guard(INVOICES, Action.UPDATE))
    async def invoice_mark_paid(self, info: Info, id: strawberry.ID) -> InvoiceGQL:
        row = await invoices.mark_paid(actor(info), pk_of(id, "Invoice"))
        return await _reloaded(row.id)

    @strawberry.mutation(extensions=guard(INVOICES, Action.UPDATE))
    async def invoice_mark_unpaid(self, info: Info, id: strawberry.ID) -> InvoiceGQL:
        row = await invoices.mark_unpaid(actor(info), pk_of(id, "Invoice"))
        return await _reloaded(row.id)

    @strawberry.mutation(
        extensions=guard(INVOICES, Action.UPDATE),
        description="Sends the invoice's notification again.",
    )
    async def invoice_resend(self, info: Info, id: strawberry.ID) -> InvoiceGQL:
        row = await invoices.resend(actor(info), pk_of(id, "Invoice"))
        return await _reloaded(row.id)

    @strawberry.mutation(
        extensions=guard(INVOICES, Action.UPDATE),
        description="Issues a credit note cancelling the invoice and a new invoice for the "
        "same period, priced with the plan that priced the original (its stored snapshot: plan "
        "edits affect only future invoices; works even if the customer no longer has a plan), "
        "on period quantities summed from the ledger again and counts measured now; the "
        "original becomes CREDITED.",
    )
    async def invoice_correct(self, info: Info, id: strawberry.ID) -> InvoiceCorrectPayload:
        note, new = await invoices.correct(actor(info), pk_of(id, "Invoice"))
        return InvoiceCorrectPayload(
            corrected=await _reloaded(note.corrects_id),  # type: ignore[attr-defined]
            credit_note=await _reloaded(note.id),
            invoice=await _reloaded(new.id),
        )


__all__ = ["InvoiceMutation", "InvoiceQuery"]
