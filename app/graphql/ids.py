"""Opaque global ids: base64 of "TypeName:pk"."""

from __future__ import annotations

import base64

from app.errors import BadInput
from app.models.tenancy import OrgKind

# The GraphQL type name of each kind of organization: the names `node(id:)` knows them by.
ORG_TYPE_NAMES: dict[OrgKind, str] = {
    OrgKind.PROVIDER: "ServiceProvider",
    OrgKind.RESELLER: "Reseller",
    OrgKind.COMPANY: "Company",
}


def to_global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode()


def from_global_id(global_id: str, field: str = "id") -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(global_id.encode()).decode()
        type_name, _, pk = raw.partition(":")
        return type_name, int(pk)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("not a valid id", field=field) from None


def pk_of(global_id: str, expected: str, field: str = "id") -> int:
    type_name, pk = from_global_id(global_id, field)
    if type_name != expected:
        raise BadInput(f"expected the id of a {expected}", field=field)
    return pk
