"""Login, logout, password change and personal API keys."""

from __future__ import annotations

from typing import Any

import strawberry

from app.graphql.common import actor
from app.graphql.context import Context
from app.graphql.identity.viewer import ApiKeyCreatePayload, ApiKeyType, LoginPayload
from app.graphql.ids import pk_of
from app.graphql.permissions import authenticated
from app.services import auth
from app.services.actor import Actor

Info = strawberry.Info[Context, Any]


@strawberry.input
class PasswordChangeInput:
    current_password: str
    new_password: str


@strawberry.input
class ApiKeyCreateInput:
    name: str
    expires_in_days: int = 90


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(
        description="Public. Wrong e-mail or password: UNAUTHENTICATED; too many failures: "
        "RATE_LIMITED with extensions.retryAfter seconds."
    )
    async def login(self, info: Info, email: str, password: str) -> LoginPayload:
        ctx = info.context
        anonymous = Actor(None, ctx.client_address, ctx.request_id)
        return LoginPayload.from_session(await auth.login(anonymous, email, password))

    @strawberry.mutation(extensions=authenticated(), description="Ends the current session.")
    async def logout(self, info: Info) -> bool:
        return await auth.logout(actor(info))

    @strawberry.mutation(
        extensions=authenticated(),
        description="Ends every session of the account and returns a new one. Sessions only.",
    )
    async def password_change(self, info: Info, input: PasswordChangeInput) -> LoginPayload:
        who = actor(info)
        session = await auth.change_password(who, input.current_password, input.new_password)
        return LoginPayload.from_session(session)

    @strawberry.mutation(
        extensions=authenticated(),
        description="A personal API key for automation; the secret is shown once. Sessions only.",
    )
    async def api_key_create(self, info: Info, input: ApiKeyCreateInput) -> ApiKeyCreatePayload:
        key, secret = await auth.create_api_key(actor(info), input.name, input.expires_in_days)
        return ApiKeyCreatePayload(api_key=ApiKeyType.from_row(key), secret=secret)

    @strawberry.mutation(extensions=authenticated(), description="Revokes one of your API keys.")
    async def api_key_revoke(self, info: Info, id: strawberry.ID) -> ApiKeyType:
        key = await auth.revoke_api_key(actor(info), pk_of(id, "ApiKey"))
        return ApiKeyType.from_row(key)
