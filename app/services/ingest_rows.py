"""What the ingestion of jobs, sessions and restore points (`app.services.ingest_jobs`,
`app.services.ingest_sessions`, `app.services.ingest_restore_points`) share: raw statement
parameters, comparing a stored row with reported values, loading the stored rows a batch names
and writing the changed ones in one batched statement.

A session and a restore point keep the `reportedAt` of the batch that last wrote them: a batch
older than that changes nothing (a correction, FAILED then WARNING, is not turned back by the
FAILED batch delivered again later); a newer batch that reports the same values only moves that
time forward (`confirms`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tortoise.models import Model

from app.services.bulk_sql import execute_many
from app.services.ingest_records import Record

if TYPE_CHECKING:
    from app.services.ingestion import Row, Run


def db_value(value: Any) -> Any:
    """A Python value as a raw statement parameter (enums by value, lists as JSON text)."""
    if isinstance(value, list):
        return json.dumps(value)
    return getattr(value, "value", value)


def differs(row: Row, values: dict[str, Any]) -> bool:
    return any(db_value(row[f]) != db_value(v) for f, v in values.items())


async def stored(
    model: type[Model],
    parent: str,
    parent_ids: set[int],
    kept: list[tuple[int, Record]],
    fields: tuple[str, ...],
) -> dict[tuple[Any, Any], Row]:
    """The stored rows the kept records name, by (parent id, uid): a uid is unique under its
    parent (a session under its job, a restore point under its computer)."""
    rows = await model.filter(
        **{f"{parent}__in": parent_ids}, uid__in={r["uid"] for _, r in kept}
    ).values("id", parent, "uid", *fields)
    return {(row[parent], row["uid"]): row for row in rows}


def confirms(run: Run, row: Row) -> bool:
    """A newer batch reports the row as it is: only its report time moves."""
    return row["reported_at"] is None or run.batch.reported_at > row["reported_at"]


async def update_rows(
    table: str, fields: tuple[str, ...], changed: list[tuple[int, dict[str, Any]]]
) -> None:
    """Sets `fields` of each (id, values) in `changed`, in one batched statement."""
    sets = ", ".join(f"{f} = ?" for f in fields)
    await execute_many(
        f"UPDATE {table} SET {sets} WHERE id = ?",
        [[*(db_value(values[f]) for f in fields), row_id] for row_id, values in changed],
    )
