"""A generic harness for permission tests: principals built from the matrix, and (below) the
table of GraphQL operations whose expected outcome is computed from the engine's data."""

from __future__ import annotations

from app.authz.engine import grants_for
from app.authz.matrix import Portal, load_matrix
from app.authz.principal import Principal
from app.models import OrgKind


def make_principal(
    portal: Portal,
    role: str,
    *,
    user_id: int = 1,
    org: int = 1,
    org_kind: OrgKind | None = None,
    parent: int | None = None,
    company_ids: frozenset[int] | set[int] | None = None,
    location_ids: frozenset[int] | set[int] | None = None,
) -> Principal:
    """A principal as `build_principal` makes one, without a database."""
    r = load_matrix().role(portal, role)
    if org_kind is None:
        org_kind = OrgKind.PROVIDER if portal is Portal.RESELLER else OrgKind.COMPANY
    return Principal(
        user_id=user_id,
        email=f"user{user_id}@example.test",
        name=f"user {user_id}",
        role=r,
        organization_id=org,
        organization_kind=org_kind,
        parent_organization_id=parent,
        grants=grants_for(r),
        company_ids=frozenset(company_ids) if company_ids is not None else None,
        location_ids=frozenset(location_ids) if location_ids is not None else None,
    )
