"""Rebuild what ingestion keeps current incrementally, from the rows themselves, each with one
set-based SQL statement: the daily session rollups the monitoring summary reads, the
computers' protected-data columns and the jobs' last result. A repair tool
(`tenantry rebuild-rollups`) and the last step of the fleet loader.

Definitions (the same as the incremental path's):
* a rollup row per (company, location, subtenant or 0, functionality, UTC day the session
  *started*), counting the finished sessions (SUCCESS, WARNING, FAILED; a running session is
  not counted) and summing their processed bytes;
* a computer's `last_restore_point_at` / `restore_point_count`: the newest and the number of
  its restore points;
* a job's `last_run_at`: its latest session's start; `last_result`: the result of its latest
  finished session by (started_at, id), `NONE` when it has none.

On PostgreSQL the rebuild locks the tables it reads in SHARE mode (and the rollups in
EXCLUSIVE mode), so an ingestion transaction in flight is waited for and the next one waits
for the rebuild: its increments land on top of the rebuilt rows, never lost or counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from app.db import connection_name

ROLLUPS = "backup_session_rollups"
SESSIONS = "backup_job_sessions"


def _is_postgres(conn: BaseDBAsyncClient) -> bool:
    return conn.capabilities.dialect == "postgres"


def _day(conn: BaseDBAsyncClient, column: str) -> str:
    if _is_postgres(conn):
        return f"(({column}) AT TIME ZONE 'UTC')::date"
    # SQLite keeps aware datetimes as ISO text: date() reads the offset and gives the UTC day.
    return f"date({column})"


def _where(column: str, company_ids: Iterable[int] | None) -> str:
    if company_ids is None:
        return "1 = 1"
    ids = sorted({int(i) for i in company_ids})
    if not ids:
        return "1 = 0"
    return f"{column} IN ({', '.join(str(i) for i in ids)})"


def rollup_select(conn: BaseDBAsyncClient, company_ids: Iterable[int] | None = None) -> str:
    """The rollup rows recomputed from the sessions (columns in the table's order)."""
    day = _day(conn, "started_at")
    return (
        "SELECT company_id, location_id, COALESCE(subtenant_id, 0), functionality, "
        f"{day}, "
        "SUM(CASE WHEN result = 'SUCCESS' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN result = 'WARNING' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN result = 'FAILED' THEN 1 ELSE 0 END), "
        "SUM(processed_bytes) "
        f"FROM {SESSIONS} "
        f"WHERE result IN ('SUCCESS', 'WARNING', 'FAILED') AND {_where('company_id', company_ids)} "
        f"GROUP BY company_id, location_id, COALESCE(subtenant_id, 0), functionality, {day}"
    )


async def _run(conn: BaseDBAsyncClient | None, statements: list[str]) -> list[int]:
    async def go(c: BaseDBAsyncClient) -> list[int]:
        counts = []
        for sql in statements:
            if _is_postgres(c):
                # Tortoise reads an INSERT's status ("INSERT 0 n") at the OID: read n here.
                async with c.acquire_connection() as raw:
                    c.log.debug("%s: %s", sql, None)
                    status = await raw.execute(sql)
                tail = status.rsplit(" ", 1)[-1]
                counts.append(int(tail) if tail.isdigit() else 0)
            else:
                count, _ = await c.execute_query(sql)
                counts.append(count)
        return counts

    if conn is not None:
        return await go(conn)
    async with in_transaction(connection_name()) as c:
        return await go(c)


def _conn_or_default(conn: BaseDBAsyncClient | None) -> BaseDBAsyncClient:
    from tortoise import connections

    return conn if conn is not None else connections.get(connection_name())


async def rebuild_rollups(
    company_ids: Iterable[int] | None = None, *, connection: BaseDBAsyncClient | None = None
) -> int:
    """Replace the rollups of these companies (None: all) by the ones their sessions give.
    Returns the number of rollup rows written. Pass `connection` to run inside a transaction
    the caller holds."""
    ids = None if company_ids is None else list(company_ids)
    conn = _conn_or_default(connection)
    statements = []
    if _is_postgres(conn):
        statements.append(f"LOCK TABLE {SESSIONS} IN SHARE MODE")
        statements.append(f"LOCK TABLE {ROLLUPS} IN EXCLUSIVE MODE")
    statements.append(f"DELETE FROM {ROLLUPS} WHERE {_where('company_id', ids)}")
    statements.append(
        f"INSERT INTO {ROLLUPS} (company_id, location_id, subtenant_id, functionality, day, "
        f"success, warning, failed, processed_bytes) {rollup_select(conn, ids)}"
    )
    counts = await _run(connection, statements)
    return counts[-1]


async def rebuild_protection(
    company_ids: Iterable[int] | None = None, *, connection: BaseDBAsyncClient | None = None
) -> tuple[int, int]:
    """Recompute the computers' last restore point and restore point count, and the jobs'
    last run and last result, for these companies (None: all). Returns (computers, jobs) updated."""
    ids = None if company_ids is None else list(company_ids)
    conn = _conn_or_default(connection)
    statements = []
    if _is_postgres(conn):
        statements.append(f"LOCK TABLE restore_points, {SESSIONS} IN SHARE MODE")
    statements.append(
        "UPDATE managed_computers SET "
        "last_restore_point_at = (SELECT MAX(rp.created_at) FROM restore_points rp "
        "WHERE rp.computer_id = managed_computers.id), "
        "restore_point_count = (SELECT COUNT(*) FROM restore_points rp "
        "WHERE rp.computer_id = managed_computers.id) "
        f"WHERE {_where('company_id', ids)}"
    )
    statements.append(
        "UPDATE backup_jobs SET "
        f"last_run_at = (SELECT MAX(s.started_at) FROM {SESSIONS} s "
        "WHERE s.job_id = backup_jobs.id), "
        f"last_result = COALESCE((SELECT s.result FROM {SESSIONS} s "
        "WHERE s.job_id = backup_jobs.id AND s.result <> 'NONE' "
        "ORDER BY s.started_at DESC, s.id DESC LIMIT 1), 'NONE') "
        f"WHERE {_where('company_id', ids)}"
    )
    counts = await _run(connection, statements)
    return counts[-2], counts[-1]
