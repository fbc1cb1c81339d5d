"""Writing invoices: numbered once, gap-free per issuer and year, and written whole in a
constant number of statements per batch.

Numbers. "<ISSUER>-<year>-<sequence>" (e.g. "R1-2026-000123"): the issuer's name in capitals
and digits, the year of issued_on, a sequence per issuer and year without gaps, assigned while
holding the lock `invoice-number:<issuer id>` (`app.db.serialize_all`, until commit), so numbers
are unique and sequential even with several workers; the unique key (issuer, number) is the
last guard. Within the lock, one issuer's invoices of a year are inserted in number order, so
the one with the highest id carries the year's last sequence.

Exactly once. A batch of drafts (any issuers) is one transaction: lock every issuer of the
batch (one statement, locks in a fixed order), skip the periods that already have an invoice
(a repeated run, or one that crashed after committing some), number the rest, then write them
set-based (`app.services.multirow_insert`): the invoices in a multi-row INSERT … RETURNING
their ids (one per 30,000 values), all their lines, the notifications (outbox: the recipients of
all the customers read once) and the audit entries. A batch of a few hundred invoices costs
the same eight statements as a batch of one. Numbers are only given to invoices that are
inserted. The unique key (customer, kind, type, period_start, revision) backs the check up:
should a batch still collide, the transaction rolls back whole (no number is lost) and the
batch is retried draft by draft, a collision meaning "already there". Invoices are written
whole inside their transaction, so they are `generated` when committed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Subquery
from tortoise.functions import Max
from tortoise.transactions import in_transaction

from app.billing.periods import Period
from app.billing.pricing import PricedLine, Totals
from app.db import connection_name, serialize_all
from app.models import Organization
from app.models.billing import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    InvoiceType,
    SubscriptionPlan,
)
from app.models.jobs import Job
from app.services.actor import Actor
from app.services.audit import PendingEntry, audit_many
from app.services.invoice_notifications import notify_issued_many
from app.services.multirow_insert import insert_rows

BILLED_KINDS = (InvoiceKind.INVOICE.value, InvoiceKind.CHARGEBACK.value)
GENERATE = "invoiceGenerate"


@dataclass
class Draft:
    """One invoice to write: everything decided before the transaction."""

    customer: Organization
    issuer: Organization
    plan: SubscriptionPlan | None
    kind: InvoiceKind
    type: InvoiceType
    period: Period
    issued_on: date
    due_on: date | None
    currency: str
    lines: list[PricedLine]
    totals: Totals
    snapshot: dict[str, Any]
    state: InvoiceState
    revision: int = 0
    corrects_id: int | None = None


# --- numbers ------------------------------------------------------------------------------


def issuer_code(issuer: Organization) -> str:
    return re.sub(r"[^A-Z0-9]", "", issuer.name.upper())[:12] or f"ORG{issuer.id}"


def _sequence(number: str) -> int:
    return int(number.rsplit("-", 1)[1])


async def last_sequences(issuer_ids: Iterable[int], year: int) -> dict[int, int]:
    """The issuers' highest sequences of `year` (absent: none yet), in one statement. Call
    while holding their number locks."""
    ids = sorted(set(issuer_ids))
    if not ids:
        return {}
    latest = (
        Invoice.filter(
            issuer_id__in=ids, issued_on__gte=date(year, 1, 1), issued_on__lte=date(year, 12, 31)
        )
        .annotate(latest=Max("id"))
        .group_by("issuer_id")
        .values("latest")
    )
    rows = await Invoice.filter(id__in=Subquery(latest)).values_list("issuer_id", "number")
    return {int(issuer): _sequence(str(number)) for issuer, number in rows}


class Numbering:
    """Numbers for the issuers of one transaction that holds their number locks."""

    def __init__(self, *issuers: Organization) -> None:
        self.codes = {issuer.id: issuer_code(issuer) for issuer in issuers}
        self.last: dict[tuple[int, int], int] = {}  # (issuer id, year) → last sequence

    async def lock(self) -> None:
        await serialize_all(f"invoice-number:{issuer_id}" for issuer_id in self.codes)

    async def load(self, keys: Iterable[tuple[int, int]]) -> None:
        """Read the last sequences of these (issuer id, year): one statement per year."""
        years: dict[int, list[int]] = defaultdict(list)
        for issuer_id, year in set(keys) - self.last.keys():
            years[year].append(issuer_id)
        for year, issuer_ids in sorted(years.items()):
            found = await last_sequences(issuer_ids, year)
            self.last.update({(i, year): found.get(i, 0) for i in issuer_ids})

    async def next(self, issued_on: date, issuer_id: int | None = None) -> str:
        """The next number of the issuer (the only one when not given) for `issued_on`."""
        issuer_id = next(iter(self.codes)) if issuer_id is None else issuer_id
        key = (issuer_id, issued_on.year)
        await self.load([key])
        self.last[key] += 1
        return f"{self.codes[issuer_id]}-{issued_on.year}-{self.last[key]:06d}"


# --- rows ---------------------------------------------------------------------------------

INVOICE_COLUMNS = (
    "customer_id",
    "issuer_id",
    "plan_id",
    "kind",
    "type",
    "revision",
    "corrects_id",
    "number",
    "period_start",
    "period_end",
    "issued_on",
    "due_on",
    "currency",
    "subtotal",
    "discount",
    "tax",
    "total",
    "plan_snapshot",
    "state",
    "generated",
    "job_id",
    "created_at",
    "updated_at",
)
LINE_COLUMNS = (
    "invoice_id",
    "position",
    "location_id",
    "item",
    "description",
    "unit",
    "quantity",
    "free_allowance",
    "billable_quantity",
    "rate",
    "amount",
)


def invoice_row(draft: Draft, number: str, job: Job | None, at: datetime) -> Invoice:
    return Invoice(
        customer=draft.customer,
        issuer=draft.issuer,
        plan=draft.plan,
        kind=draft.kind,
        type=draft.type,
        revision=draft.revision,
        corrects_id=draft.corrects_id,
        number=number,
        period_start=draft.period.start,
        period_end=draft.period.end,
        issued_on=draft.issued_on,
        due_on=draft.due_on,
        currency=draft.currency,
        subtotal=draft.totals.subtotal,
        discount=draft.totals.discount,
        tax=draft.totals.tax,
        total=draft.totals.total,
        plan_snapshot=draft.snapshot,
        state=draft.state,
        generated=True,
        job=job,
        created_at=at,
        updated_at=at,
    )


async def insert_invoices(invoices: Sequence[Invoice]) -> None:
    """Unsaved invoices in multi-row INSERTs … RETURNING (in their order: within an issuer
    and year, ids follow the numbers); sets their ids. Inside the caller's transaction."""
    rows = [[getattr(invoice, c) for c in INVOICE_COLUMNS] for invoice in invoices]
    returned = await insert_rows(
        Invoice, INVOICE_COLUMNS, rows, returning=("id", "issuer_id", "number")
    )
    ids = {(int(r["issuer_id"]), str(r["number"])): int(r["id"]) for r in returned}
    for invoice in invoices:
        invoice.id = ids[(invoice.issuer_id, invoice.number)]  # type: ignore[attr-defined]
        invoice._saved_in_db = True


async def insert_lines(pairs: Sequence[tuple[Invoice, Draft]]) -> None:
    """The lines of these (saved) invoices, as values: no model instance per line."""
    rows = [
        (
            invoice.id,
            position,
            line.location_id,
            line.item,
            line.description[:300],
            line.unit,
            line.quantity,
            line.free_allowance,
            line.billable_quantity,
            line.rate,
            line.amount,
        )
        for invoice, draft in pairs
        for position, line in enumerate(draft.lines, 1)
    ]
    await insert_rows(InvoiceLine, LINE_COLUMNS, rows)


async def _insert_numbered(
    numbered_drafts: Sequence[tuple[Draft, str]], actor: Actor, job: Job | None, action: str
) -> list[Invoice]:
    """Invoices, lines, notifications and audit entries of numbered drafts, in five statements
    whatever their number (up to 1,300 invoices; inside the caller's transaction)."""
    if not numbered_drafts:
        return []
    at = datetime.now(UTC)
    invoices = [invoice_row(draft, number, job, at) for draft, number in numbered_drafts]
    await insert_invoices(invoices)
    pairs = list(zip(invoices, (draft for draft, _ in numbered_drafts), strict=True))
    await insert_lines(pairs)
    await notify_issued_many([(invoice, draft.customer) for invoice, draft in pairs])
    entries = [
        PendingEntry(
            str(invoice.id),
            draft.customer.id,
            {
                "number": invoice.number,
                "kind": draft.kind.value,
                "periodStart": draft.period.start.isoformat(),
                "periodEnd": draft.period.end.isoformat(),
                "total": str(draft.totals.total),
                "currency": draft.currency,
            },
        )
        for invoice, draft in pairs
    ]
    await audit_many(actor, action, "Invoice", entries)
    return invoices


async def write(draft: Draft, number: str, actor: Actor, job: Job | None, action: str) -> Invoice:
    """Insert one numbered invoice, its lines and its notification, audited (atomically)."""
    async with in_transaction(connection_name()):
        (invoice,) = await _insert_numbered([(draft, number)], actor, job, action)
    return invoice


# --- batches ------------------------------------------------------------------------------


async def _existing_starts(drafts: Sequence[Draft]) -> set[tuple[int, date]]:
    rows = await Invoice.filter(
        customer_id__in=sorted({d.customer.id for d in drafts}),
        period_start__in=sorted({d.period.start for d in drafts}),
        kind__in=list(BILLED_KINDS),
    ).values_list("customer_id", "period_start")
    return {(int(c), s) for c, s in rows}


async def _write_batch(drafts: Sequence[Draft], actor: Actor, job: Job | None) -> list[Invoice]:
    numbering = Numbering(*{d.issuer.id: d.issuer for d in drafts}.values())
    async with in_transaction(connection_name()):
        await numbering.lock()
        there = await _existing_starts(drafts)
        fresh = [d for d in drafts if (d.customer.id, d.period.start) not in there]
        await numbering.load({(d.issuer.id, d.issued_on.year) for d in fresh})
        # Each issuer's invoices in date order: numbers follow the invoice dates.
        fresh.sort(key=lambda d: (d.issuer.id, d.issued_on, d.customer.id))
        numbers = [await numbering.next(d.issued_on, d.issuer.id) for d in fresh]
        return await _insert_numbered(list(zip(fresh, numbers, strict=True)), actor, job, GENERATE)


async def write_drafts(
    drafts: Sequence[Draft], actor: Actor, job: Job | None = None
) -> list[Invoice]:
    """Write the drafts once: the whole batch in one transaction, or, when it collides with
    invoices written meanwhile, one by one (a collision: already there). Returns the invoices
    written, per issuer in number order."""
    if not drafts:
        return []
    try:
        return await _write_batch(drafts, actor, job)
    except IntegrityError:
        pass
    written: list[Invoice] = []
    for draft in sorted(drafts, key=lambda d: (d.issuer.id, d.issued_on, d.customer.id)):
        try:
            written += await _write_batch([draft], actor, job)
        except IntegrityError:
            continue
    return written
