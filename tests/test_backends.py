"""CI runs the suite twice; the second pass must really be on PostgreSQL and reach Redis.
These tests fail (never skip) when CI asked for the services and they do not answer."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ON_POSTGRES, PG_URL, REDIS_URL

REQUIRED = os.environ.get("TENANTRY_REQUIRE_SERVICES") == "1"


async def test_database_backend_is_the_one_asked_for(db):
    conn = db.db()
    if ON_POSTGRES:
        _, rows = await conn.execute_query("SELECT version()")
        assert "PostgreSQL" in str(rows[0][0])
    else:
        assert not REQUIRED, (
            "CI asked for PostgreSQL (TENANTRY_TEST_DATABASE_URL) but it is not set"
        )
        _, rows = await conn.execute_query("SELECT sqlite_version()")
        assert rows


@pytest.mark.skipif(
    not (REQUIRED or REDIS_URL), reason="Redis is only required in CI's second pass"
)
async def test_redis_answers():
    import redis.asyncio as redis

    assert REDIS_URL, "CI asked for Redis (TENANTRY_TEST_REDIS_URL) but it is not set"
    client = redis.from_url(REDIS_URL)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


def test_postgres_url_is_a_fresh_test_database():
    if ON_POSTGRES:
        assert PG_URL.rsplit("/", 1)[-1] not in {"test", "postgres"}, (
            "tests drop their database at the end: never point them at a shared one"
        )
