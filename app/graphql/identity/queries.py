"""Queries about the caller: who am I, my API keys."""

from __future__ import annotations

from typing import Any

import strawberry

from app.graphql.common import principal
from app.graphql.context import Context
from app.graphql.identity.viewer import ApiKeyType, Viewer
from app.graphql.permissions import authenticated
from app.services import auth

Info = strawberry.Info[Context, Any]


@strawberry.type
class IdentityQuery:
    @strawberry.field(
        extensions=authenticated(),
        description="The caller: user, role, portal, organization and the role's matrix row.",
    )
    async def me(self, info: Info) -> Viewer:
        p = principal(info)
        return Viewer.build(p, await auth.viewer_rows(p))

    @strawberry.field(extensions=authenticated(), description="Your own personal API keys.")
    async def api_keys(self, info: Info) -> list[ApiKeyType]:
        return [ApiKeyType.from_row(k) for k in await auth.own_api_keys(principal(info))]
