"""Portal user management mutations, named noun-first; every one is audited."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz.capabilities import USERS
from app.authz.matrix import Action
from app.graphql.common import actor
from app.graphql.context import Context
from app.graphql.identity.types import UserType
from app.graphql.identity.user_queries import org_of
from app.graphql.ids import pk_of
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.services import user_admin
from app.services.users import NewUser

Info = strawberry.Info[Context, Any]


def _pks(ids: list[strawberry.ID] | None, type_name: str, field: str) -> list[int] | None:
    if ids is None:
        return None
    return [pk_of(i, type_name, field) for i in ids]


@strawberry.input
class UserCreateInput:
    organization_id: strawberry.ID = strawberry.field(
        description="Global id of a Company, Reseller or ServiceProvider."
    )
    email: str
    name: str
    password: str
    role: str = strawberry.field(description="The seed's role name, e.g. 'Location User'.")
    company_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Roles limited to companies: null = all companies."
    )
    location_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Roles limited to locations: null = all locations."
    )


@strawberry.input
class UserUpdateInput:
    id: strawberry.ID
    name: str | None = None
    email: str | None = None
    role: str | None = None
    company_ids: list[strawberry.ID] | None = None
    location_ids: list[strawberry.ID] | None = None
    scope_all: bool | None = strawberry.field(
        default=None, description="True: lift the restriction to companies or locations."
    )


@strawberry.input
class UserPasswordResetInput:
    id: strawberry.ID
    new_password: str


@strawberry.type
class UserMutation:
    @strawberry.mutation(extensions=guard(USERS, Action.CREATE))
    async def user_create(self, info: Info, input: UserCreateInput) -> UserType:
        org_id, kind = org_of(input.organization_id, "organizationId")
        row = await user_admin.create_user(
            actor(info),
            org_id,
            kind,
            NewUser(email=input.email, name=input.name, password=input.password),
            input.role,
            _pks(input.company_ids, "Company", "companyIds"),
            _pks(input.location_ids, "Location", "locationIds"),
        )
        return UserType.from_row(row)

    @strawberry.mutation(extensions=guard(USERS, Action.UPDATE))
    async def user_update(self, info: Info, input: UserUpdateInput) -> UserType:
        row = await user_admin.update_user(
            actor(info),
            pk_of(input.id, "User"),
            name=input.name,
            email=input.email,
            role_name=input.role,
            company_ids=_pks(input.company_ids, "Company", "companyIds"),
            location_ids=_pks(input.location_ids, "Location", "locationIds"),
            scope_all=input.scope_all,
        )
        return UserType.from_row(row)

    @strawberry.mutation(
        extensions=guard(USERS, Action.UPDATE), description="Disabling ends the user's sessions."
    )
    async def user_disable(self, info: Info, id: strawberry.ID) -> UserType:
        return UserType.from_row(
            await user_admin.set_user_enabled(actor(info), pk_of(id, "User"), False)
        )

    @strawberry.mutation(extensions=guard(USERS, Action.UPDATE))
    async def user_enable(self, info: Info, id: strawberry.ID) -> UserType:
        return UserType.from_row(
            await user_admin.set_user_enabled(actor(info), pk_of(id, "User"), True)
        )

    @strawberry.mutation(extensions=guard(USERS, Action.DELETE))
    async def user_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await user_admin.delete_user(actor(info), pk_of(id, "User"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(USERS, Action.UPDATE),
        description="Sets another user's password (policy checked) and ends their sessions.",
    )
    async def user_password_reset(self, info: Info, input: UserPasswordResetInput) -> UserType:
        row = await user_admin.reset_password(
            actor(info), pk_of(input.id, "User"), input.new_password
        )
        return UserType.from_row(row)
