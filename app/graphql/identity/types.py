"""GraphQL types of people."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader

from app.authz.matrix import Action
from app.graphql.common import Node
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, to_global_id
from app.models import Location, Organization, User

if TYPE_CHECKING:
    from app.graphql.tenancy.types import CompanyType, LocationType

Info = strawberry.Info[Context, Any]


class UserLoaders:
    """Per-request loaders for what hangs off a user row. Unscoped on purpose: they are only
    reached from user rows already fetched within the viewer's scope, and a user's own
    organization and scope belong to that user."""

    def __init__(self) -> None:
        self.organization: DataLoader[int, Organization | None] = DataLoader(self._organizations)
        self.scope_companies: DataLoader[int, list[Organization]] = DataLoader(self._companies)
        self.scope_locations: DataLoader[int, list[Location]] = DataLoader(self._locations)

    async def _organizations(self, ids: Sequence[int]) -> list[Organization | None]:
        found = {o.id: o for o in await Organization.filter(id__in=list(ids))}
        return [found.get(i) for i in ids]

    async def _companies(self, user_ids: Sequence[int]) -> list[list[Organization]]:
        pairs = await User.filter(
            id__in=list(user_ids), scope_companies__id__isnull=False
        ).values_list("id", "scope_companies__id")
        rows = {o.id: o for o in await Organization.filter(id__in=list({c for _, c in pairs}))}
        return _group(user_ids, pairs, rows)

    async def _locations(self, user_ids: Sequence[int]) -> list[list[Location]]:
        pairs = await User.filter(
            id__in=list(user_ids), scope_locations__id__isnull=False
        ).values_list("id", "scope_locations__id")
        rows = {loc.id: loc for loc in await Location.filter(id__in=list({c for _, c in pairs}))}
        return _group(user_ids, pairs, rows)


def _group(
    keys: Sequence[int], pairs: Sequence[tuple[int, int]], rows: dict[int, Any]
) -> list[list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for key, ref in sorted(pairs, key=lambda pair: (pair[0], pair[1])):
        if ref in rows:
            grouped[key].append(rows[ref])
    return [grouped.get(k, []) for k in keys]


def user_loaders(info: Info) -> UserLoaders:
    loaders = getattr(info.context, "_user_loaders", None)
    if loaders is None:
        loaders = UserLoaders()
        setattr(info.context, "_user_loaders", loaders)  # noqa: B010 - attached per request
    return loaders


@strawberry.type(name="UserOrganization", description="The organization a user belongs to.")
class UserOrganization:
    id: strawberry.ID = strawberry.field(
        description="Global id of a Company, Reseller or ServiceProvider."
    )
    name: str
    kind: str = strawberry.field(description="PROVIDER, RESELLER or COMPANY.")

    @classmethod
    def from_row(cls, row: Organization) -> UserOrganization:
        return cls(
            id=strawberry.ID(to_global_id(ORG_TYPE_NAMES[row.kind], row.id)),
            name=row.name,
            kind=row.kind.value,
        )


@strawberry.type(name="User")
class UserType(Node):
    _row: strawberry.Private[User]
    id: strawberry.ID
    email: str
    name: str
    role: str = strawberry.field(description="The seed's role name, e.g. 'Company Owner'.")
    enabled: bool
    scope_restricted: bool = strawberry.field(
        description="True when limited to selected companies or locations."
    )
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def from_row(cls, row: User) -> UserType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("User", row.id)),
            email=row.email,
            name=row.name,
            role=row.role,
            enabled=row.enabled,
            scope_restricted=row.scope_restricted,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )

    async def _organization(self, info: Info) -> Organization:
        org = await user_loaders(info).organization.load(self._row.organization_id)  # type: ignore[attr-defined]
        assert org is not None  # a foreign key with ON DELETE CASCADE
        return org

    @strawberry.field
    async def organization(self, info: Info) -> UserOrganization:
        return UserOrganization.from_row(await self._organization(info))

    @strawberry.field(description="True for the organization's Owner / Global Administrator.")
    async def primary(self, info: Info) -> bool:
        from app.services.user_admin import is_primary

        return is_primary(self._row, await self._organization(info))

    @strawberry.field(description="The companies the user is limited to; null when unrestricted.")
    async def scope_companies(
        self, info: Info
    ) -> list[Annotated[CompanyType, strawberry.lazy("app.graphql.tenancy.types")]] | None:
        from app.graphql.tenancy.types import CompanyType

        if not self._row.scope_restricted:
            return None
        rows = await user_loaders(info).scope_companies.load(self._row.id)
        return [CompanyType.from_row(r) for r in rows] if rows else None

    @strawberry.field(description="The locations the user is limited to; null when unrestricted.")
    async def scope_locations(
        self, info: Info
    ) -> list[Annotated[LocationType, strawberry.lazy("app.graphql.tenancy.types")]] | None:
        from app.graphql.tenancy.types import LocationType

        if not self._row.scope_restricted:
            return None
        rows = await user_loaders(info).scope_locations.load(self._row.id)
        return [LocationType.from_row(r) for r in rows] if rows else None

    async def _viewer_can(self, info: Info, action: Action) -> bool:
        from app.services.user_admin import viewer_can

        p = info.context.require_principal()
        if info.context.bypass_authorization:
            return True
        return viewer_can(p, action, self._row, await self._organization(info))

    @strawberry.field
    async def viewer_can_update(self, info: Info) -> bool:
        return await self._viewer_can(info, Action.UPDATE)

    @strawberry.field
    async def viewer_can_delete(self, info: Info) -> bool:
        return await self._viewer_can(info, Action.DELETE)

    @strawberry.field(description="False for yourself: change your own password with the old one.")
    async def viewer_can_reset_password(self, info: Info) -> bool:
        if self._row.id == info.context.require_principal().user_id:
            return False
        return await self._viewer_can(info, Action.UPDATE)
