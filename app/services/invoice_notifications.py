"""E-mails about invoices, queued in the outbox inside the transaction that issues (or resends)
the invoice; a worker delivers them with the invoice's PDF, rendered at delivery.

Recipients, from the matrix data of the customer's portal (never role names in code):
* the primary user: the users holding the portal's primary role (Company Owner, Department
  Owner, the reseller's Global Administrator);
* the invoice auditors: the users of a role whose Invoices cell grants READ while its
  Configuration cell grants nothing (those who follow the money without running the
  organization: Company Invoice Auditor, Chargeback Auditor, Service Provider Invoice Auditor).
Disabled users get nothing.

Dedup keys: `invoice-issued:<invoice id>:<user id>` (a re-run of generation never notifies
twice) and `invoice-resent:<invoice id>:<n>:<user id>` with n the resend's number (1, 2, ...).
Cost: two queries per batch of invoices issued (`notify_issued_many`: the recipients of all
their customers, one INSERT of all the messages), a third for a resend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from app.authz.engine import portal_for
from app.authz.matrix import Action, Functionality, Portal, load_matrix
from app.billing.money import money
from app.models import Organization, User
from app.models.billing import Invoice, InvoiceKind, InvoiceType, OutboxChannel, OutboxMessage
from app.services.outbox import Outgoing, enqueue_many
from app.settings import get_settings

ISSUED = "invoice-issued"
RESENT = "invoice-resent"
_TITLES = {
    InvoiceKind.INVOICE: "Invoice",
    InvoiceKind.CREDIT_NOTE: "Credit note",
    InvoiceKind.CHARGEBACK: "Chargeback report",
}


@cache
def recipient_roles(portal: Portal) -> frozenset[str]:
    """The roles of `portal` that receive invoice e-mails (see the module's docstring)."""
    matrix = load_matrix().portals[portal]
    roles = {role.name for role in matrix.roles if role.primary}
    for role in matrix.roles:
        grants = matrix.grants(role.name)
        invoices = grants.get(Functionality.INVOICES)
        configuration = grants.get(Functionality.CONFIGURATION)
        if invoices is not None and Action.READ in invoices.actions:
            if configuration is None or not configuration.actions:
                roles.add(role.name)
    return frozenset(roles)


async def _customer(invoice: Invoice) -> Organization:
    customer = invoice.customer
    if isinstance(customer, Organization):
        return customer
    return await Organization.get(id=invoice.customer_id)  # type: ignore[attr-defined]


Recipient = tuple[int, str, str]  # user id, e-mail, name


async def _recipients(customers: Sequence[Organization]) -> dict[int, list[Recipient]]:
    """Each customer's recipients, in one query (ordered by user id)."""
    enterprise = get_settings().enterprise
    roles = {c.id: recipient_roles(portal_for(c.kind, enterprise)) for c in customers}
    if not roles:
        return {}
    rows = (
        await User.filter(
            organization_id__in=sorted(roles),
            enabled=True,
            role__in=sorted(set().union(*roles.values())),
        )
        .order_by("id")
        .values_list("organization_id", "role", "id", "email", "name")
    )
    out: dict[int, list[Recipient]] = {c: [] for c in roles}
    for org_id, role, user_id, email, name in rows:
        if role in roles[int(org_id)]:  # a role name of another portal
            out[int(org_id)].append((int(user_id), str(email), str(name)))
    return out


def _title(invoice: Invoice) -> str:
    if invoice.type is InvoiceType.QUOTA_USAGE and invoice.kind is InvoiceKind.INVOICE:
        return "Quota usage report"
    return _TITLES.get(invoice.kind, "Invoice")


def _body(invoice: Invoice, customer: Organization, name: str, resent: bool) -> str:
    title = _title(invoice)
    lines = [
        f"Hello {name},",
        "",
        f"{title} {invoice.number} for {customer.name} is attached"
        + (" again, as requested." if resent else "."),
        "",
        f"Period: {invoice.period_start.isoformat()} to {invoice.period_end.isoformat()}",
        f"Issued: {invoice.issued_on.isoformat()}",
    ]
    if invoice.type is not InvoiceType.QUOTA_USAGE:
        lines.append(f"Total: {money(invoice.total, invoice.currency)} {invoice.currency}")
    if invoice.due_on is not None:
        lines.append(f"Due: {invoice.due_on.isoformat()}")
    lines.append(f"State: {invoice.state.value}")
    return "\n".join(lines) + "\n"


def _messages(
    invoice: Invoice, customer: Organization, recipients: list[Recipient], key: str, resent: bool
) -> list[Outgoing]:
    subject = f"{_title(invoice)} {invoice.number}" + (" (sent again)" if resent else "")
    return [
        Outgoing(
            channel=OutboxChannel.EMAIL,
            recipient=email,
            subject=subject,
            body=_body(invoice, customer, name, resent),
            dedup_key=f"{key}:{user_id}",
            organization_id=customer.id,
            payload={"event": RESENT if resent else ISSUED, "invoice_id": invoice.id},
            attachments={"invoice_pdf": invoice.id},
        )
        for user_id, email, name in recipients
    ]


async def notify_issued_many(issued: Sequence[tuple[Invoice, Organization]]) -> int:
    """Queue the 'new invoice' e-mails of many invoices (invoice, its customer) inside the
    caller's transaction: one recipients query and one INSERT whatever their number; how many
    messages."""
    recipients = await _recipients([customer for _, customer in issued])
    messages = [
        message
        for invoice, customer in issued
        for message in _messages(
            invoice, customer, recipients[customer.id], f"{ISSUED}:{invoice.id}", resent=False
        )
    ]
    await enqueue_many(messages)
    return len(messages)


async def notify_issued(invoice: Invoice) -> int:
    """Queue the 'new invoice' e-mails (inside the caller's transaction); how many recipients."""
    return await notify_issued_many([(invoice, await _customer(invoice))])


async def notify_resent(invoice: Invoice) -> int:
    """Queue the invoice's e-mails once more, as resend number n+1."""
    prefix = f"{RESENT}:{invoice.id}:"
    keys = await OutboxMessage.filter(dedup_key__startswith=prefix).values_list(
        "dedup_key", flat=True
    )
    pattern = re.compile(re.escape(prefix) + r"(\d+):")
    done = [int(m.group(1)) for k in keys if (m := pattern.match(str(k)))]
    customer = await _customer(invoice)
    recipients = (await _recipients([customer]))[customer.id]
    key = f"{prefix}{max(done, default=0) + 1}"
    messages = _messages(invoice, customer, recipients, key, resent=True)
    await enqueue_many(messages)
    return len(messages)
