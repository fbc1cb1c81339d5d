"""Reading the audit log ("Logs"): newest first, scoped in SQL to the caller's organizations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from tortoise.queryset import QuerySet

from app.authz.capabilities import AUDIT_LOG
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import NotFound
from app.graphql.audit.types import AuditEntryType
from app.graphql.common import principal, register_node
from app.graphql.context import Context
from app.graphql.ids import from_global_id, pk_of
from app.graphql.pagination import (
    Connection,
    paginate,
)
from app.graphql.permissions import guard
from app.models import AuditEntry
from app.services.audit import audit_q

Info = strawberry.Info[Context, Any]


@strawberry.input(description="All conditions must hold; omitted ones do not filter.")
class AuditLogFilter:
    from_: datetime | None = strawberry.field(default=None, name="from", description="At or after.")
    to: datetime | None = strawberry.field(default=None, description="At or before.")
    actor_id: strawberry.ID | None = strawberry.field(
        default=None, description="A User's global id."
    )
    object_type: str | None = None
    object_id: strawberry.ID | None = strawberry.field(
        default=None, description="The object's global id."
    )
    action: str | None = None
    outcome: str | None = None


def apply_filter(query: QuerySet, f: AuditLogFilter | None) -> QuerySet:
    if f is None:
        return query
    if f.from_ is not None:
        query = query.filter(at__gte=f.from_)
    if f.to is not None:
        query = query.filter(at__lte=f.to)
    if f.actor_id:
        query = query.filter(actor_id=pk_of(f.actor_id, "User", "filter.actorId"))
    if f.object_type:
        query = query.filter(object_type=f.object_type)
    if f.object_id:
        type_name, pk = from_global_id(f.object_id, "filter.objectId")
        query = query.filter(object_type=type_name, object_id=str(pk))
    if f.action:
        query = query.filter(action=f.action)
    if f.outcome:
        query = query.filter(outcome=f.outcome)
    return query


async def _audit_entry(p: Principal, pk: int) -> AuditEntryType:
    row = await AuditEntry.filter(audit_q(p), id=pk).first()
    if row is None:
        raise NotFound("audit entry")
    return AuditEntryType.from_row(row)


register_node("AuditEntry", AUDIT_LOG, _audit_entry)


@strawberry.type
class AuditQuery:
    @strawberry.field(
        extensions=guard(AUDIT_LOG, Action.READ),
        description="The audit log of the organizations in your scope, newest first.",
    )
    async def audit_log(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AuditLogFilter | None = None,
    ) -> Connection[AuditEntryType] | None:
        query = apply_filter(AuditEntry.filter(audit_q(principal(info))), filter)
        return await paginate(query, first, after, AuditEntryType.from_row, descending=True)
