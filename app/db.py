"""Tortoise configuration and lifecycle. One config for the API, the CLI, workers and tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tortoise import Tortoise

from app.settings import Settings, get_settings

MODEL_MODULES = ["app.models"]


def connection_label(database_url: str) -> str:
    # STACK-NOTES: one process-wide SQL cache per label; each backend gets its own label.
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


def tortoise_config(
    settings: Settings | None = None, database_url: str | None = None
) -> dict[str, Any]:
    settings = settings or get_settings()
    url = database_url or settings.database_url
    if url.startswith("sqlite://") and not url.startswith("sqlite://:memory:"):
        Path(url.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)
    label = connection_label(url)
    return {
        "connections": {label: url},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": label,
                "migrations": "app.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# Used by the `tortoise` command line: `tortoise -c app.db.TORTOISE_ORM makemigrations`.
TORTOISE_ORM = tortoise_config()


async def migrate(settings: Settings | None = None) -> None:
    """Apply the committed migrations (both backends)."""
    from tortoise.migrations.api import migrate as run_migrations

    try:
        await run_migrations(config=tortoise_config(settings))
    finally:
        await Tortoise.close_connections()


async def init(settings: Settings | None = None) -> None:
    await Tortoise.init(config=tortoise_config(settings), _enable_global_fallback=True)


async def close() -> None:
    await Tortoise.close_connections()


def connection_name(settings: Settings | None = None) -> str:
    return connection_label((settings or get_settings()).database_url)


async def column(queryset: Any, field: str) -> list[Any]:
    """One column as a flat list (Tortoise types `values_list(flat=True)` as tuples)."""
    return list(await queryset.values_list(field, flat=True))


async def serialize(key: str) -> None:
    """Inside a transaction: wait for, then hold until commit, a lock named `key`, so that a
    check-then-insert on rows that do not exist yet (no row to lock) runs one at a time.
    PostgreSQL: a transaction-level advisory lock. SQLite: writes are serialized already."""
    if connection_name() != "postgres":
        return
    from tortoise.connection import get_connection

    await get_connection(connection_name()).execute_query(
        "SELECT pg_advisory_xact_lock(hashtext($1))", [key]
    )


async def serialize_all(keys: Iterable[str]) -> None:
    """`serialize` for many keys in one statement. The locks are taken in the order of the
    lock ids (their hashes), so two transactions asking for overlapping sets never wait for
    each other in a cycle."""
    ordered = sorted(set(keys))
    if connection_name() != "postgres" or not ordered:
        return
    from tortoise.connection import get_connection

    await get_connection(connection_name()).execute_query(
        "SELECT pg_advisory_xact_lock(hashtext(k)) "
        "FROM unnest($1::text[]) AS t(k) ORDER BY hashtext(k)",
        [ordered],
    )


async def first_ids_per_parent(
    model: Any, parent: str, order: str, parents: Any, limit: int, *, descending: bool = True
) -> dict[int, list[int]]:
    """The ids of the first `limit` rows of `model` per parent id (ordered by `order`, then
    id; newest first unless `descending` is False), in one statement: a window function
    (SQLite ≥ 3.25 and PostgreSQL). Ids and the limit are integers, inlined."""
    from collections import defaultdict

    ids = sorted({int(pk) for pk in parents})
    out: dict[int, list[int]] = defaultdict(list)
    if not ids or limit <= 0:
        return out
    direction = "DESC" if descending else "ASC"
    table = model._meta.db_table
    sql = (
        f'SELECT "id", "{parent}" AS "parent" FROM ('
        f'SELECT "id", "{parent}", ROW_NUMBER() OVER ('
        f'PARTITION BY "{parent}" ORDER BY "{order}" {direction}, "id" {direction}) AS "rn" '
        f'FROM "{table}" WHERE "{parent}" IN ({", ".join(str(pk) for pk in ids)})'
        f') AS "ranked" WHERE "rn" <= {int(limit)} ORDER BY "rn"'
    )
    for row in await model._meta.db.execute_query_dict(sql):
        out[row["parent"]].append(row["id"])
    return out
