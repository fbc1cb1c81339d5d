"""Who is asking: the authenticated user, resolved once per request."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.authz.matrix import Cell, Functionality, Portal, Role, RoleScope
from app.models.tenancy import OrgKind


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    name: str
    role: Role
    organization_id: int
    organization_kind: OrgKind
    parent_organization_id: int | None
    grants: dict[Functionality, Cell] = field(repr=False)
    # None: the whole organization tree; a set: only these companies / locations.
    company_ids: frozenset[int] | None = None
    location_ids: frozenset[int] | None = None
    auth_method: str = "session"
    credential_id: int | None = None

    @property
    def portal(self) -> Portal:
        return self.role.portal

    @property
    def is_staff(self) -> bool:
        """Provider or reseller staff (the Reseller Portal roles)."""
        return self.role.portal is Portal.RESELLER

    @property
    def scope_kind(self) -> RoleScope:
        return self.role.scope

    def cell(self, functionality: Functionality) -> Cell | None:
        return self.grants.get(functionality)


@dataclass(frozen=True)
class Target:
    """What the rules need to know of one object. Built by services from rows already in scope."""

    kind: str
    organization_id: int | None = None
    organization_kind: OrgKind | None = None
    user_id: int | None = None
    role: str | None = None
    primary: bool = False
    generated: bool | None = None
    subtenant_user_id: int | None = None
