"""The audit log: every mutation leaves one entry, in the same transaction as its change.

    async with audited(actor, "companyCreate", "Company") as entry:
        company = await Organization.create(...)
        entry.bind(company.id, organization_id=company.id)

On success the entry is written inside the transaction; when the block raises a domain
error, the change is rolled back and a FAILURE entry is written on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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


def _entry(
    actor: Actor, action: str, object_type: str, pending: PendingEntry, outcome: str
) -> AuditEntry:
    p = actor.principal
    return AuditEntry(
        actor_id=p.user_id if p else None,
        actor_email=p.email if p else "",
        actor_organization_id=p.organization_id if p else None,
        organization_id=pending.organization_id,
        action=action,
        object_type=object_type,
        object_id=pending.object_id,
        client_address=actor.client_address,
        request_id=actor.request_id,
        outcome=outcome,
        details=pending.details,
    )


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


def audit_q(p: Principal) -> Q:
    """Entries about organizations in the principal's scope (a subquery, not a Python filter)."""
    return Q(organization_id__in=Subquery(Organization.filter(scope.org_q(p)).values("id")))
