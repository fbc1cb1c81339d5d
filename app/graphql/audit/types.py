"""GraphQL types of the audit log, and the per-request loader of organization kinds they need."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from app.graphql.common import Node
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, to_global_id
from app.models import AuditEntry, Organization, OrgKind

Info = strawberry.Info[Context, Any]


_LOADER_ATTR = "_audit_org_kinds"


async def _load_org_kinds(org_ids: Sequence[int]) -> list[OrgKind | None]:
    # Unscoped on purpose: only entries already in the principal's scope reach this loader.
    rows = await Organization.filter(id__in=list(org_ids)).values_list("id", "kind")
    kinds = {pk: OrgKind(kind) for pk, kind in rows}
    return [kinds.get(pk) for pk in org_ids]


def org_kind_loader(info: Info) -> DataLoader[int, OrgKind | None]:
    """One loader per request, kept on the request's context."""
    loader = getattr(info.context, _LOADER_ATTR, None)
    if loader is None:
        loader = DataLoader(_load_org_kinds)
        setattr(info.context, _LOADER_ATTR, loader)
    return loader


def object_global_id(object_type: str, object_id: str) -> strawberry.ID | None:
    """Services write the model's GraphQL type name and its numeric pk as text."""
    if not object_type or not object_id.isdigit():
        return None
    return strawberry.ID(to_global_id(object_type, int(object_id)))


@strawberry.type(
    name="AuditEntry",
    description="One audited change: who did what, to which object, when, from where.",
)
class AuditEntryType(Node):
    _row: strawberry.Private[AuditEntry]
    id: strawberry.ID
    at: datetime
    actor_email: str
    actor_id: strawberry.ID | None = strawberry.field(
        description="The acting user; null for the system."
    )
    action: str = strawberry.field(description="The mutation's name, e.g. 'companyCreate'.")
    object_type: str
    object_id: strawberry.ID | None = strawberry.field(
        description="Global id of the object, when it has one."
    )
    client_address: str
    request_id: str
    outcome: str = strawberry.field(description="SUCCESS or FAILURE.")
    details: JSON

    @classmethod
    def from_row(cls, row: AuditEntry) -> AuditEntryType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("AuditEntry", row.id)),
            at=row.at,
            actor_email=row.actor_email,
            actor_id=strawberry.ID(to_global_id("User", row.actor_id))
            if row.actor_id is not None
            else None,
            action=row.action,
            object_type=row.object_type,
            object_id=object_global_id(row.object_type, row.object_id),
            client_address=row.client_address,
            request_id=row.request_id,
            outcome=row.outcome,
            details=row.details,  # type: ignore[arg-type]
        )

    @strawberry.field(
        description=(
            "Global id of the organization the change belongs to "
            "(a Company, Reseller or ServiceProvider id)."
        )
    )
    async def organization_id(self, info: Info) -> strawberry.ID | None:
        org_id = self._row.organization_id
        if org_id is None:
            return None
        kind = await org_kind_loader(info).load(org_id)
        if kind is None:  # the organization has been removed since
            return None
        return strawberry.ID(to_global_id(ORG_TYPE_NAMES[kind], org_id))
