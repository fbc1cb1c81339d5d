"""Set-based INSERTs from plain values, on both backends: no model instance per row (values
are converted by the model's fields as Tortoise would), one statement for all the rows.

Without RETURNING: one `executemany` (asyncpg pipelines it: one round trip; measured on
PostgreSQL 15, as fast as a multi-row VALUES or an `unnest` of arrays at a few hundred rows and
faster at thousands, where parsing a statement with tens of thousands of parameters costs).
With RETURNING: `INSERT … VALUES (…), (…), … RETURNING …`, one statement per chunk of
`MAX_PARAMETERS` values (under the limits of asyncpg, 32,767, and SQLite, 32,766).
`ignore_conflicts` adds ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise.connection import get_connection
from tortoise.models import Model

from app.db import connection_name
from app.services.bulk_sql import execute_many, numbered

MAX_PARAMETERS = 30_000


def rows_per_statement(columns: int) -> int:
    return max(1, MAX_PARAMETERS // max(columns, 1))


def defaults(model: type[Model], columns: Sequence[str]) -> dict[str, Any]:
    """The model's defaults for the fields left out of `columns` (Python-side defaults are
    not in the schema): `default` (called when callable), now for auto_now(_add) times."""
    out: dict[str, Any] = {}
    for name in model._meta.fields_db_projection:
        field = model._meta.fields_map[name]
        if name in columns or name in model._meta.generated_db_fields:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            out[name] = datetime.now(UTC)
        elif field.default is not None:
            out[name] = field.default() if callable(field.default) else field.default
    return out


async def insert_rows(
    model: type[Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    returning: Sequence[str] = (),
    ignore_conflicts: bool = False,
) -> list[dict[str, Any]]:
    """Insert `rows` (values in `columns` order; the other fields get their defaults) in the
    caller's transaction; the `returning` columns of the inserted rows (in no guaranteed
    order: match them on a unique key)."""
    if not rows:
        return []
    extra = defaults(model, columns)
    if extra:
        columns = [*columns, *extra]
        rows = [(*row, *extra.values()) for row in rows]
    fields = [model._meta.fields_map[c] for c in columns]
    names = ", ".join(f'"{model._meta.fields_map[c].source_field or c}"' for c in columns)
    head = f'INSERT INTO "{model._meta.db_table}" ({names}) VALUES '
    tail = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    marks = "(" + ", ".join("?" for _ in columns) + ")"

    def db_values(row: Sequence[Any]) -> list[Any]:
        return [field.to_db_value(v, model) for field, v in zip(fields, row, strict=True)]

    if not returning:
        await execute_many(head + marks + tail, [db_values(row) for row in rows])
        return []
    tail += " RETURNING " + ", ".join(f'"{c}"' for c in returning)
    conn = get_connection(connection_name())
    out: list[dict[str, Any]] = []
    step = rows_per_statement(len(columns))
    for at in range(0, len(rows), step):
        chunk = rows[at : at + step]
        sql = numbered(head + ", ".join(marks for _ in chunk) + tail)
        out += await conn.execute_query_dict(sql, [v for row in chunk for v in db_values(row)])
    return out
