"""The audit log: every mutation leaves one entry, in the same transaction as its change.

    async with audited(actor, "companyCreate", "Company") as entry:
        company = await Organization.create(...)
        entry.bind(company.id, organization_id=company.id)

On success the entry is written inside the transaction; when the block raises a domain
error, the change is rolled back and a FAILURE entry is written on its own.

Set-based changes (an invoice run's batch) write their entries with `audit_many`: one INSERT
for the batch, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.principal import Principal
from app.db import connection_name
from app.errors import TenantryError
from app.models import AuditEntry, Organization
from app.services.actor import Actor
from app.services.multirow_insert import insert_rows


@dataclass
class PendingEntry:
    object_id: str = ""
    organization_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def bind(
        self, object_id: int | str, organization_id: int | None = None, **details: Any
    ) -> None:
        self.object_id = str(object_id)
        if organization_id is not None:
            self.organization_id = organization_id
        self.details.update(details)


ENTRY_COLUMNS = (
    "actor_id",
    "actor_email",
    "actor_organization_id",
    "organization_id",
    "action",
    "object_type",
    "object_id",
    "client_address",
    "request_id",
    "outcome",
    "details",
)


def _values(
    actor: Actor, action: str, object_type: str, pending: PendingEntry, outcome: str
) -> tuple[Any, ...]:
    """An entry's values in ENTRY_COLUMNS order."""
    p = actor.principal
    return (
        p.user_id if p else None,
        p.email if p else "",
        p.organization_id if p else None,
        pending.organization_id,
        action,
        object_type,
        pending.object_id,
        actor.client_address,
        actor.request_id,
        outcome,
        pending.details,
    )


def _entry(
    actor: Actor, action: str, object_type: str, pending: PendingEntry, outcome: str
) -> AuditEntry:
    values = _values(actor, action, object_type, pending, outcome)
    return AuditEntry(**dict(zip(ENTRY_COLUMNS, values, strict=True)))


@asynccontextmanager
async def audited(
    actor: Actor,
    action: str,
    object_type: str,
    object_id: int | str = "",
    organization_id: int | None = None,
) -> AsyncIterator[PendingEntry]:
    pending = PendingEntry(object_id=str(object_id), organization_id=organization_id)
    try:
        async with in_transaction(connection_name()):
            yield pending
            await _entry(actor, action, object_type, pending, "SUCCESS").save()
    except TenantryError as exc:
        pending.details = {**pending.details, "error": exc.code, "message": exc.message}
        await _entry(actor, action, object_type, pending, "FAILURE").save()
        raise
    except Exception:
        # Unexpected: the change is rolled back; the entry says so without internals.
        pending.details = {**pending.details, "error": "INTERNAL_SERVER_ERROR"}
        await _entry(actor, action, object_type, pending, "FAILURE").save()
        raise


async def audit_many(
    actor: Actor, action: str, object_type: str, entries: Sequence[PendingEntry]
) -> None:
    """The bulk form of `audited`, for a set-based change: one SUCCESS entry per object, in
    one INSERT statement (`insert_rows`) in the caller's transaction, which it does not
    open: the caller's rollback takes the entries with the change, and its failures are the
    caller's to report."""
    rows = [_values(actor, action, object_type, pending, "SUCCESS") for pending in entries]
    await insert_rows(AuditEntry, ENTRY_COLUMNS, rows)


def audit_q(p: Principal) -> Q:
    """Entries about organizations in the principal's scope (a subquery, not a Python filter)."""
    return Q(organization_id__in=Subquery(Organization.filter(scope.org_q(p)).values("id")))
