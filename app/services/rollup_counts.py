"""Incremental upkeep of `SessionRollup`: per day and slice (company, location, subtenant,
functionality), how many sessions ended in SUCCESS, WARNING or FAILED, and their bytes.

A session counts once its final result is recorded: its *contribution* is one count in its
result's column on the UTC day it started, plus its processed bytes. When a session is written,
the caller adds `contribution(new) - contribution(old)` to a `RollupDeltas` (nothing when the
session was already final with the same result and bytes, so a re-reported session is not
counted twice), then `apply(deltas)` once: one upsert statement for all the touched rows
(`INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x`), in the caller's transaction.

Ingestion uses it for every batch; a bulk loader (the demo fleet's history) can feed it the
contributions of the sessions it inserts (`deltas.add(contribution(...))`) and apply once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from app.models.backups import SessionResult
from app.services.bulk_sql import execute_many

COLUMNS = {SessionResult.SUCCESS: 0, SessionResult.WARNING: 1, SessionResult.FAILED: 2}


@dataclass(frozen=True)
class Slice:
    company_id: int
    location_id: int
    subtenant_id: int  # 0: none, as stored
    functionality: str
    day: date


@dataclass(frozen=True)
class Contribution:
    slice: Slice
    column: int  # index into (success, warning, failed)
    processed_bytes: int


def contribution(
    *,
    company_id: int,
    location_id: int,
    subtenant_id: int | None,
    functionality: str,
    started_at: datetime,
    result: SessionResult | str,
    processed_bytes: int,
) -> Contribution | None:
    """What one session adds to the rollups; None while it runs (result NONE)."""
    column = COLUMNS.get(SessionResult(result))
    if column is None:
        return None
    day = started_at.date()  # started_at is aware UTC (Tortoise use_tz)
    return Contribution(
        Slice(company_id, location_id, subtenant_id or 0, str(functionality), day),
        column,
        processed_bytes,
    )


class RollupDeltas:
    """Net changes per slice and day, summed in memory before one upsert."""

    def __init__(self) -> None:
        self.rows: dict[Slice, list[int]] = {}

    def add(self, item: Contribution | None, sign: int = 1) -> None:
        if item is None:
            return
        row = self.rows.setdefault(item.slice, [0, 0, 0, 0])
        row[item.column] += sign
        row[3] += sign * item.processed_bytes

    def change(self, old: Contribution | None, new: Contribution | None) -> None:
        """A session went from `old` to `new` (either may be None)."""
        if old != new:
            self.add(old, -1)
            self.add(new, +1)

    def nonzero(self) -> list[list[Any]]:
        return [
            [s.company_id, s.location_id, s.subtenant_id, s.functionality, s.day, *counts]
            for s, counts in self.rows.items()
            if any(counts)
        ]


UPSERT = (
    "INSERT INTO backup_session_rollups (company_id, location_id, subtenant_id, functionality,"
    " day, success, warning, failed, processed_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (company_id, location_id, subtenant_id, functionality, day) DO UPDATE SET"
    " success = backup_session_rollups.success + excluded.success,"
    " warning = backup_session_rollups.warning + excluded.warning,"
    " failed = backup_session_rollups.failed + excluded.failed,"
    " processed_bytes = backup_session_rollups.processed_bytes + excluded.processed_bytes"
)


async def apply(deltas: RollupDeltas) -> int:
    """Adds the deltas to the rollup rows (creating missing ones); returns the rows touched."""
    rows = deltas.nonzero()
    await execute_many(UPSERT, rows)
    return len(rows)
