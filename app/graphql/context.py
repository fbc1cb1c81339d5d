"""Per-request context: who is asking (resolved once), loaders, request id, client address."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from app.auth.authenticate import principal_for_bearer
from app.authz.principal import Principal
from app.errors import TenantryError, Unauthenticated
from app.graphql.loaders import Loaders
from app.settings import get_settings


@dataclass
class Context:
    request: HTTPConnection | None
    response: Any
    principal: Principal | None = None
    auth_error: TenantryError | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_address: str = ""
    loaders: Loaders = field(default_factory=Loaders)
    # Authorization bypass, for the benchmark's "authorization off" comparison only.
    bypass_authorization: bool = False
    # WebSocket only: the graphql-transport-ws `connection_init` payload (Strawberry sets it).
    connection_params: dict[str, Any] | None = None

    def require_principal(self) -> Principal:
        if self.principal is not None:
            return self.principal
        raise self.auth_error or Unauthenticated(
            "log in first: send 'Authorization: Bearer <token>'"
        )


def bearer_from(
    conn: HTTPConnection, connection_params: dict[str, Any] | None = None
) -> str | None:
    header = conn.headers.get("authorization", "")
    if not header and connection_params:
        header = str(
            connection_params.get("Authorization") or connection_params.get("authorization") or ""
        )
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return None


async def build_context(conn: HTTPConnection | None, response: Any = None) -> Context:
    ctx = Context(request=conn, response=response)
    ctx.bypass_authorization = get_settings().bench_bypass_authorization
    if conn is None:
        return ctx
    state_rid = getattr(conn.state, "request_id", None)
    if state_rid:
        ctx.request_id = state_rid
    ctx.client_address = getattr(conn.state, "client_address", None) or (
        conn.client.host if conn.client else ""
    )
    await authenticate(ctx, bearer_from(conn))
    return ctx


async def authenticate(ctx: Context, credential: str | None) -> None:
    """Resolve the principal of a bearer credential (none: anonymous) and its loaders."""
    if credential:
        try:
            ctx.principal = await principal_for_bearer(credential)
            ctx.auth_error = None
        except TenantryError as exc:
            ctx.auth_error = exc
    ctx.loaders = Loaders(ctx.principal)


async def authenticate_connection(ctx: Context) -> None:
    """A WebSocket's credential: the upgrade request's Authorization header, else the
    `Authorization` entry of the connection_init payload (browsers cannot set headers)."""
    if ctx.principal is None and ctx.request is not None:
        await authenticate(ctx, bearer_from(ctx.request, ctx.connection_params))
