"""Test harness: an isolated database per test, on the embedded default (in-memory SQLite) or,
when TENANTRY_TEST_DATABASE_URL is set (CI's second pass), on a real PostgreSQL database that
is created once per run, truncated between tests and dropped at the end."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import httpx
import pytest
from tortoise.context import TortoiseContext
from tortoise.fields.relational import ManyToManyFieldInstance

from app.db import tortoise_config
from app.settings import Settings, override_settings

PG_URL = os.environ.get("TENANTRY_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("TENANTRY_TEST_REDIS_URL", "")
ON_POSTGRES = PG_URL.startswith("postgres")

TEST_SETTINGS = Settings(
    database_url=PG_URL if ON_POSTGRES else "sqlite://:memory:",
    redis_url=REDIS_URL or None,
    # Cheap hashes for tests only; production settings refuse these.
    argon2_time_cost=1,
    argon2_memory_cost=1024,
    argon2_parallelism=1,
    seed_demo=False,
    login_window_seconds=900,
)


def pytest_configure(config: pytest.Config) -> None:
    override_settings(TEST_SETTINGS)
    if ON_POSTGRES:
        asyncio.run(_create_pg_schema())


def pytest_unconfigure(config: pytest.Config) -> None:
    if ON_POSTGRES and not hasattr(config, "workerinput"):
        asyncio.run(_drop_pg())


async def _create_pg_schema() -> None:
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(TEST_SETTINGS), _create_db=True)
        await ctx.generate_schemas(safe=True)


async def _drop_pg() -> None:
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(TEST_SETTINGS))
        conn = ctx.db()
        await conn.close()
        await conn.db_delete()


async def _truncate(ctx: TortoiseContext) -> None:
    conn = ctx.db()
    models = list(ctx.apps.get_models_iterable())  # type: ignore[union-attr]
    tables = {m._meta.db_table for m in models}
    # Many-to-many link tables, read from the models so a new one is never forgotten.
    tables |= {
        f.through
        for m in models
        for f in m._meta.fields_map.values()
        if isinstance(f, ManyToManyFieldInstance)
    }
    quoted = ", ".join(f'"{t}"' for t in sorted(tables))
    await conn.execute_script(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")


@pytest.fixture
def settings() -> Settings:
    return TEST_SETTINGS


@pytest.fixture
def use_settings():
    """Run a test with other settings: `use_settings(edition="enterprise")`."""

    def apply(**changes: object) -> Settings:
        new = replace(TEST_SETTINGS, **changes)  # type: ignore[arg-type]
        override_settings(new)
        return new

    yield apply
    override_settings(TEST_SETTINGS)


@pytest.fixture
async def db() -> AsyncIterator[TortoiseContext]:
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(TEST_SETTINGS), _enable_global_fallback=True)
        if ON_POSTGRES:
            await _truncate(ctx)
        else:
            await ctx.generate_schemas(safe=False)
        yield ctx


@pytest.fixture
async def client(db: TortoiseContext) -> AsyncIterator[httpx.AsyncClient]:
    from app.main import create_app

    app = create_app(TEST_SETTINGS, manage_orm=False)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def gql(client: httpx.AsyncClient):
    """`await gql(query, variables, token=...)` → the JSON body (data and errors)."""

    async def run(query: str, variables: dict | None = None, token: str | None = None, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers, **kw
        )
        return resp.json()

    return run


@pytest.fixture
async def world(db: TortoiseContext):
    from tests.factories import build_world

    return await build_world()


@pytest.fixture
def dispatched() -> Iterator[list[int]]:
    """A dispatcher that records the ids of the jobs created instead of reaching a broker."""
    from app.services import jobs

    sent: list[int] = []
    previous = jobs._dispatcher
    jobs.set_dispatcher(lambda job_id, delay_ms: sent.append(job_id))
    yield sent
    jobs.set_dispatcher(previous)
