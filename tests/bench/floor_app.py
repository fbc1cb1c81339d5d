"""The floor: the benchmark's page served by hand, Starlette + asyncpg, no ORM, no GraphQL.

It answers `POST /page` (JSON body `{"first": 100}`) with exactly the body the GraphQL query
answers (`{"data": {"companies": {"nodes": [...]}}}`), so the two can be compared byte for
byte. Like the real app it checks the bearer token's SHA-256 against the session table (with
the user, their organization and its ancestors enabled) and applies the same row scope in SQL,
so the ratio measures what the ORM, GraphQL and the guards cost, not a missing login.

Run: `DATABASE_URL=postgres://... uvicorn --factory tests.bench.floor_app:create_app`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# The owner is the primary role of each portal; the runner passes their names (from the
# matrix) so that this module stays free of application imports.
OWNER_ROLES_ENV = "TENANTRY_BENCH_OWNER_ROLES"

PRINCIPAL_SQL = """
SELECT o.id AS org_id, o.kind AS org_kind
FROM session_tokens s
JOIN users u ON u.id = s.user_id
JOIN organizations o ON o.id = u.organization_id
LEFT JOIN organizations p1 ON p1.id = o.parent_id
LEFT JOIN organizations p2 ON p2.id = p1.parent_id
WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
  AND u.enabled AND o.enabled AND coalesce(p1.enabled, true) AND coalesce(p2.enabled, true)
"""

# $2: NULL for the provider (whole tree), the organization's id otherwise (a reseller sees
# itself and its children, a company itself): the same filter as app/authz/scope.py.
PAGE_SQL = """
SELECT c.id, c.name, r.name AS reseller
FROM organizations c
LEFT JOIN organizations r ON r.id = c.parent_id AND r.kind = 'RESELLER'
WHERE c.kind = 'COMPANY' AND ($2::int IS NULL OR c.id = $2 OR c.parent_id = $2)
ORDER BY c.id
LIMIT $1
"""

LOCATIONS_SQL = """
SELECT company_id, name FROM locations WHERE company_id = ANY($1::int[]) ORDER BY id
"""

OWNERS_SQL = """
SELECT organization_id, email FROM users
WHERE organization_id = ANY($1::int[]) AND role = ANY($2::text[])
ORDER BY id
"""


def global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode()


def unauthenticated() -> JSONResponse:
    return JSONResponse(
        {
            "data": None,
            "errors": [{"message": "unauthenticated", "extensions": {"code": "UNAUTHENTICATED"}}],
        }
    )


def create_app() -> Starlette:
    dsn = os.environ["DATABASE_URL"]
    owner_roles = json.loads(os.environ.get(OWNER_ROLES_ENV, "[]"))
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=4, max_size=16)
        try:
            yield
        finally:
            await state["pool"].close()

    async def page(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return unauthenticated()
        body = await request.json()
        first = min(int(body.get("first", 50)), 500)
        token_hash = hashlib.sha256(token.strip().encode()).hexdigest()
        async with state["pool"].acquire() as conn:
            who = await conn.fetchrow(PRINCIPAL_SQL, token_hash)
            if who is None:
                return unauthenticated()
            scope = None if who["org_kind"] == "PROVIDER" else who["org_id"]
            rows = await conn.fetch(PAGE_SQL, first, scope)
            ids = [r["id"] for r in rows]
            locations = await conn.fetch(LOCATIONS_SQL, ids)
            owners = await conn.fetch(OWNERS_SQL, ids, owner_roles)
        by_company: dict[int, list[dict[str, str]]] = {i: [] for i in ids}
        for loc in locations:
            by_company[loc["company_id"]].append({"name": loc["name"]})
        owner_of: dict[int, str] = {}
        for o in owners:
            owner_of.setdefault(o["organization_id"], o["email"])
        nodes = [
            {
                "id": global_id("Company", r["id"]),
                "name": r["name"],
                "reseller": {"name": r["reseller"]} if r["reseller"] is not None else None,
                "locations": by_company[r["id"]],
                "owner": {"email": owner_of[r["id"]]} if r["id"] in owner_of else None,
            }
            for r in rows
        ]
        return JSONResponse({"data": {"companies": {"nodes": nodes}}})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/page", page, methods=["POST"]), Route("/readyz", ready)],
        lifespan=lifespan,
    )
