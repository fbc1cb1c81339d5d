"""Starlette app factory: /graphql (HTTP + WebSocket, GraphiQL), /healthz, /readyz, /metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from tortoise.connection import get_connection
from tortoise.contrib.starlette import RegisterTortoise

from app.billing_http import routes as billing_routes
from app.db import connection_name, tortoise_config
from app.downloads import download_export
from app.graphql.app import TenantryGraphQL
from app.graphql.schema import schema
from app.ingest_http import routes as ingest_routes
from app.middleware import RequestMiddleware
from app.observability import CONTENT_TYPE_LATEST, metrics_text, refresh_job_metrics
from app.services import events
from app.services import workloads as _workloads  # noqa: F401  (location-in-use check)
from app.settings import Settings, get_settings
from workers import runtime as worker_runtime
from workers.scheduler import start_embedded_scheduler, stop_embedded_scheduler

STATIC_DIR = Path(__file__).with_name("static")

log = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers. Never touches the database."""
    return JSONResponse({"status": "ok"})


def readyz_for(settings: Settings):
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the database answers `SELECT 1`."""
        try:
            await get_connection(connection_name(settings)).execute_query("SELECT 1")
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            reason = f"database unavailable: {type(exc).__name__}"
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    return readyz


async def metrics(request: Request) -> Response:
    try:
        await refresh_job_metrics()
    except Exception:  # the database may be down; HTTP metrics still answer
        log.exception("refreshing job metrics failed")
    return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings | None = None, *, manage_orm: bool = True) -> Starlette:
    settings = settings or get_settings()
    graphql = TenantryGraphQL(schema, graphql_ide="graphiql")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.install(settings)  # job events reach this process's subscribers
        try:
            if not manage_orm:
                yield
                return
            async with RegisterTortoise(app, config=tortoise_config(settings)):
                # The broker for dispatching; without REDIS_URL also the in-process worker.
                await worker_runtime.start_for_app(settings)
                # Embedded mode: the periodic work too (a no-op when Redis is set or disabled).
                start_embedded_scheduler(settings)
                try:
                    yield
                finally:
                    await stop_embedded_scheduler()
                    worker_runtime.stop_for_app()
        finally:
            await events.shutdown()

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz_for(settings), methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/exports/{job_id}", download_export, methods=["GET"]),
        *ingest_routes,
        *billing_routes,
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [
        Middleware(
            RequestMiddleware,
            max_body_bytes=settings.max_body_bytes,
            trusted_proxies=settings.trusted_proxies,
        )
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
