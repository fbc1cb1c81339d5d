"""Invoice documents over plain HTTP (GraphQL carries no files), with the API's bearer credential.

* `GET /invoices/{global id}.pdf`: the invoice's PDF. The matrix must let the caller read
  invoices (403 FORBIDDEN otherwise), the invoice must be in their scope (404 NOT_FOUND
  otherwise, whatever the reason), and the engine must let them read this one (403: e.g. an
  invoice still being generated for the Service Provider Invoice Auditor).
* `GET /invoices.csv?from=YYYY-MM-DD&to=YYYY-MM-DD`: the invoices in the caller's scope issued
  in that range (both ends inclusive, both optional), streamed (app.billing.csv_export).

401 UNAUTHENTICATED without a valid credential; errors are GraphQL-style JSON
(`{"errors": [{"message", "extensions": {"code"}}]}`) like /exports.
"""

from __future__ import annotations

from datetime import date

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.authz.capabilities import INVOICES
from app.authz.matrix import Action
from app.billing import csv_export
from app.billing.pdf import render_invoice
from app.downloads import error_response, request_principal
from app.errors import BadInput, TenantryError
from app.graphql.ids import pk_of
from app.models.billing import Invoice
from app.services.guards import require
from app.services.invoices import invoice_in_scope, invoice_q, target

INVOICE_TYPE = "Invoice"


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text) or "invoice"


async def invoice_pdf(request: Request) -> Response:
    try:
        principal = await request_principal(request)
        require(principal, INVOICES, Action.READ)
        invoice = await invoice_in_scope(
            principal, pk_of(request.path_params["invoice_id"], INVOICE_TYPE)
        )
        require(principal, INVOICES, Action.READ, target(invoice))
        data = await render_invoice(invoice.id)
    except TenantryError as exc:
        return error_response(exc)
    name = _safe_name(invoice.number)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )


def _day(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadInput("expected a date as YYYY-MM-DD", field=name) from None


async def invoices_csv(request: Request) -> Response:
    try:
        principal = await request_principal(request)
        require(principal, INVOICES, Action.READ)
        start, end = _day(request, "from"), _day(request, "to")
        if start and end and start > end:
            raise BadInput("'from' is after 'to'", field="from")
        invoices = Invoice.filter(invoice_q(principal))
        if start:
            invoices = invoices.filter(issued_on__gte=start)
        if end:
            invoices = invoices.filter(issued_on__lte=end)
    except TenantryError as exc:
        return error_response(exc)
    name = f"invoices-{start or 'all'}-{end or 'all'}.csv"
    return StreamingResponse(
        csv_export.stream(invoices),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private, no-store",
        },
    )


routes = [
    Route("/invoices.csv", invoices_csv, methods=["GET"]),
    Route("/invoices/{invoice_id}.pdf", invoice_pdf, methods=["GET"]),
]
