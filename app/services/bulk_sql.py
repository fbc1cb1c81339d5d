"""Raw statements for bulk writes, on both backends: `?` placeholders in the source, turned
into `$1, $2, …` for PostgreSQL. For the few hot paths (ingestion) where one pipelined
`executemany` beats building a model instance per row."""

from __future__ import annotations

import re
from typing import Any

from tortoise.connection import get_connection

from app.db import connection_name

_MARK = re.compile(r"\?")


def on_postgres() -> bool:
    return connection_name() == "postgres"


def numbered(sql: str) -> str:
    if not on_postgres():
        return sql
    counter = iter(range(1, 1_000_000))
    return _MARK.sub(lambda _: f"${next(counter)}", sql)


async def execute_many(sql: str, rows: list[list[Any]]) -> None:
    """One statement for many parameter rows (asyncpg pipelines them); the current
    transaction's connection when called inside `in_transaction`."""
    if rows:
        await get_connection(connection_name()).execute_many(numbered(sql), rows)
