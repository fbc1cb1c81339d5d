"""The Strawberry ASGI app: context from the request, GraphiQL served from our own assets."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from app.graphql.context import Context, build_context


class TenantryGraphQL(GraphQL):
    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:  # type: ignore[override]
        return await build_context(request, response)
