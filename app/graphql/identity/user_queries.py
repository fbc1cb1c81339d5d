"""Portal users: the list and one user, both within the viewer's scope (SQL)."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz.capabilities import USERS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import BadInput
from app.graphql.common import principal, register_node
from app.graphql.context import Context
from app.graphql.identity.types import ORG_TYPE_NAMES, UserType
from app.graphql.ids import from_global_id
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.models import OrgKind, User
from app.services.user_admin import user_in_scope, visible_users_q

Info = strawberry.Info[Context, Any]

ORG_KINDS: dict[str, OrgKind] = {name: kind for kind, name in ORG_TYPE_NAMES.items()}


def org_of(global_id: str, field: str) -> tuple[int, OrgKind]:
    """A Company, Reseller or ServiceProvider global id → (pk, kind)."""
    type_name, pk = from_global_id(global_id, field)
    kind = ORG_KINDS.get(type_name)
    if kind is None:
        raise BadInput("expected the id of a Company, Reseller or ServiceProvider", field=field)
    return pk, kind


@strawberry.input
class UserFilter:
    organization_id: strawberry.ID | None = None
    role: str | None = None
    enabled: bool | None = None
    email_contains: str | None = None


async def _user(p: Principal, pk: int) -> UserType:
    return UserType.from_row(await user_in_scope(p, pk))


register_node("User", USERS, _user)


@strawberry.type
class UserQuery:
    @strawberry.field(
        extensions=guard(USERS, Action.READ), description="Portal users in your scope."
    )
    async def users(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: UserFilter | None = None,
    ) -> Connection[UserType] | None:
        query = User.filter(visible_users_q(principal(info)))
        if filter is not None:
            if filter.organization_id:
                pk, kind = org_of(filter.organization_id, "filter.organizationId")
                query = query.filter(organization_id=pk, organization__kind=kind.value)
            if filter.role:
                query = query.filter(role=filter.role)
            if filter.enabled is not None:
                query = query.filter(enabled=filter.enabled)
            if filter.email_contains:
                query = query.filter(email__icontains=filter.email_contains.strip())
        return await paginate(query, first, after, UserType.from_row)

    @strawberry.field(
        extensions=guard(USERS, Action.READ), description="NOT_FOUND outside your scope."
    )
    async def user(self, info: Info, id: strawberry.ID) -> UserType | None:
        type_name, pk = from_global_id(id)
        if type_name != "User":
            raise BadInput("expected the id of a User", field="id")
        return await _user(principal(info), pk)
