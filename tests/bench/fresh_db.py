"""A benchmark's own PostgreSQL database, created fresh and dropped afterwards (unless kept),
and the ORM opened on it with the benchmark's settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tortoise.context import TortoiseContext

from app.db import tortoise_config
from app.settings import Settings, override_settings
from tests.bench.seed_large import database_url, drop_database, recreate_database


@asynccontextmanager
async def fresh_database(name: str, keep: bool, query: str = "") -> AsyncIterator[str]:
    """Yields the database's URL (plus `query`, e.g. "?maxsize=50")."""
    await recreate_database(name)
    try:
        yield database_url(name) + query
    finally:
        if not keep:
            await drop_database(name)


@asynccontextmanager
async def orm(url: str) -> AsyncIterator[None]:
    settings = Settings(database_url=url, seed_demo=False)
    override_settings(settings)
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(settings), _enable_global_fallback=True)
        try:
            yield
        finally:
            await ctx.close_connections()
