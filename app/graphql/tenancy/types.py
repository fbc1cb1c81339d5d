"""GraphQL types of the tenant tree."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from app.authz import scope
from app.authz.capabilities import COMPANIES, LOCATIONS, RESELLERS, USERS
from app.authz.matrix import Action
from app.authz.principal import Target
from app.graphql.common import Node, principal, viewer_can
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.models import Location, Organization
from app.services.tenancy import capability_for, location_target, org_target

if TYPE_CHECKING:
    from app.graphql.identity.types import UserType

Info = strawberry.Info[Context, Any]


_can = viewer_can


@strawberry.type(name="Location")
class LocationType(Node):
    _row: strawberry.Private[Location]
    id: strawberry.ID
    name: str
    is_default: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: Location) -> LocationType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("Location", row.id)),
            name=row.name,
            is_default=row.is_default,
            created_at=row.created_at,
        )

    @strawberry.field(extensions=guard(COMPANIES, Action.READ))
    async def company(
        self, info: Info
    ) -> Annotated[CompanyType, strawberry.lazy("app.graphql.tenancy.types")] | None:
        org = await info.context.loaders.organization.load(self._row.company_id)  # type: ignore[attr-defined]
        return CompanyType.from_row(org) if org else None

    @strawberry.field
    def viewer_can_update(self, info: Info) -> bool:
        return _can(info, LOCATIONS, Action.UPDATE, location_target(self._row))

    @strawberry.field
    def viewer_can_delete(self, info: Info) -> bool:
        return not self._row.is_default and _can(
            info, LOCATIONS, Action.DELETE, location_target(self._row)
        )


@strawberry.interface(name="Organization", description="A reseller or a company.")
class OrganizationType(Node):
    _row: strawberry.Private[Organization]
    id: strawberry.ID
    name: str
    email: str
    enabled: bool = strawberry.field(description="The organization's own switch.")
    created_at: datetime
    baas: bool = strawberry.field(
        description="Backup as a Service: the provider manages the tenant-side configuration."
    )

    @classmethod
    def from_row(cls, row: Organization) -> Any:
        type_name = cls.__strawberry_definition__.name  # type: ignore[attr-defined]
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id(type_name, row.id)),
            name=row.name,
            email=row.email,
            enabled=row.enabled,
            created_at=row.created_at,
            baas=row.baas,
        )

    @strawberry.field(
        description="Enabled, and so is every organization above it: its users can log in."
    )
    async def active(self, info: Info) -> bool:
        if not self._row.enabled:
            return False
        return await info.context.loaders.tree_enabled.load(self._row.parent_id)  # type: ignore[attr-defined]

    @strawberry.field
    def viewer_can_update(self, info: Info) -> bool:
        return _can(info, capability_for(self._row), Action.UPDATE, org_target(self._row))

    @strawberry.field
    def viewer_can_delete(self, info: Info) -> bool:
        return _can(info, capability_for(self._row), Action.DELETE, org_target(self._row))


@strawberry.type(name="ServiceProvider", description="The root of the tree.")
class ServiceProviderType(OrganizationType):
    pass


@strawberry.type(name="Company")
class CompanyType(OrganizationType):
    @strawberry.field(
        description="The reseller the company belongs to; null when directly under the provider or when the reseller is outside your scope."
    )
    async def reseller(
        self, info: Info
    ) -> Annotated[ResellerType, strawberry.lazy("app.graphql.tenancy.types")] | None:
        parent = await info.context.loaders.organization.load(self._row.parent_id)  # type: ignore[attr-defined]
        if parent is None or parent.kind.value != "RESELLER":
            return None
        return ResellerType.from_row(parent)

    @strawberry.field(
        extensions=guard(LOCATIONS, Action.READ), description="Locations in your scope."
    )
    async def locations(self, info: Info) -> list[LocationType] | None:
        rows = await info.context.loaders.locations_by_company.load(self._row.id)
        return [LocationType.from_row(r) for r in rows]

    @strawberry.field(
        extensions=guard(COMPANIES, Action.READ),
        description="The Company Owner (Department Owner).",
    )
    async def owner(
        self, info: Info
    ) -> Annotated[UserType, strawberry.lazy("app.graphql.identity.types")] | None:
        from app.graphql.identity.types import UserType

        user = await info.context.loaders.owner_by_org.load(self._row.id)
        return UserType.from_row(user) if user else None

    @strawberry.field
    def viewer_can_create_location(self, info: Info) -> bool:
        return _can(
            info, LOCATIONS, Action.CREATE, Target(kind="location", organization_id=self._row.id)
        )

    @strawberry.field
    def viewer_can_manage_users(self, info: Info) -> bool:
        return _can(
            info,
            USERS,
            Action.CREATE,
            Target(kind="user", organization_id=self._row.id, organization_kind=self._row.kind),
        )


@strawberry.type(name="Reseller")
class ResellerType(OrganizationType):
    @strawberry.field(extensions=guard(COMPANIES, Action.READ))
    async def companies(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[CompanyType] | None:
        query = Organization.filter(scope.company_q(principal(info)), parent_id=self._row.id)
        return await paginate(query, first, after, CompanyType.from_row)

    @strawberry.field(
        extensions=guard(RESELLERS, Action.READ),
        description="The Service Provider Global Administrator.",
    )
    async def global_administrator(
        self, info: Info
    ) -> Annotated[UserType, strawberry.lazy("app.graphql.identity.types")] | None:
        from app.graphql.identity.types import UserType

        user = await info.context.loaders.owner_by_org.load(self._row.id)
        return UserType.from_row(user) if user else None
