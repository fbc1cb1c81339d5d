"""Migrations applied to a database that already holds rows (an upgrade, not a fresh
install): a column a migration adds to a non-empty table needs a database default, and a
column it drops must not cost the table its indexes.

- 0013 on cloud gateways: the probe columns are added, the error text empty.
- 0014 on subscriptions and replicas: the rows stay, the typed-in usage columns go, the
  replicas start at size 0, and the subscription keeps its one-per-(tenant account, plan)
  unique index (the SQLite table rebuild used to drop it).
- 0015 on sessions and restore points, on SQLite and (when the tests run on PostgreSQL) on a
  PostgreSQL database of its own: the rows stay, with no report time (NULL).
- 0016 on managed computers, backup agents and backup servers, the same way: the rows stay,
  with no report time (NULL)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import ON_POSTGRES, PG_URL

ROOT = Path(__file__).resolve().parents[1]


def migrate(url: str, *target: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    tortoise = Path(sys.executable).with_name("tortoise")
    done = subprocess.run(
        [str(tortoise), "-c", "app.db.TORTOISE_ORM", "migrate", *target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}


def sqlite_run(path: Path, *statements: str) -> list[list[tuple]]:
    """Runs the statements on the SQLite file and commits; returns each one's rows."""
    con = sqlite3.connect(path)
    try:
        out = [con.execute(sql).fetchall() for sql in statements]
        con.commit()
        return out
    finally:
        con.close()


def test_0013_adds_the_probe_columns_to_existing_gateways(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    url = f"sqlite://{path}"
    migrate(url, "models", "0012_alarms")
    sqlite_run(
        path,
        "INSERT INTO cloud_gateways (id, name, address, port, enabled, redirector_capacity,"
        " created_at) VALUES (1, 'gw1', 'gw1.example', 6180, 1, 10,"
        " '2026-01-01 00:00:00+00:00')",
    )
    migrate(url, "models", "0013_gateway_probes")
    assert sqlite_run(
        path, "SELECT id, reachable, last_probe_error, probe_latency_ms FROM cloud_gateways"
    ) == [[(1, None, "", None)]]


def test_0014_keeps_the_rows_and_the_unique_subscription(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    url = f"sqlite://{path}"
    migrate(url, "models", "0013_gateway_probes")
    con = sqlite3.connect(path)
    try:
        # Foreign keys are not enforced by this connection: the rows only need their columns.
        con.execute(
            "INSERT INTO hardware_plan_subscriptions (id, tenant_account_id, plan_id, created_at,"
            " cpu_used_mhz, memory_used_mb, storage_used_gb)"
            " VALUES (7, 3, 5, '2026-01-01 00:00:00+00:00', 100, 200, 300)"
        )
        con.execute(
            "INSERT INTO vm_replicas (id, tenant_account_id, name, source_vm, kind,"
            " subscription_id, state, restore_points, created_at)"
            " VALUES (9, 3, 'dc01', 'dc01', 'SNAPSHOT', 7, 'FAILOVER', '[]',"
            " '2026-01-01 00:00:00+00:00')"
        )
        con.commit()
    finally:
        con.close()

    migrate(url)
    con = sqlite3.connect(path)
    try:
        assert "cpu_used_mhz" not in columns(con, "hardware_plan_subscriptions")
        assert {"cpu_mhz", "memory_mb", "storage_gb"} <= columns(con, "vm_replicas")
        assert con.execute(
            "SELECT id, tenant_account_id, plan_id FROM hardware_plan_subscriptions"
        ).fetchall() == [(7, 3, 5)]
        assert con.execute(
            "SELECT id, subscription_id, state, cpu_mhz, memory_mb, storage_gb FROM vm_replicas"
        ).fetchall() == [(9, 7, "FAILOVER", 0, 0, 0)]
        try:
            con.execute(
                "INSERT INTO hardware_plan_subscriptions (tenant_account_id, plan_id, created_at)"
                " VALUES (3, 5, '2026-01-02 00:00:00+00:00')"
            )
        except sqlite3.IntegrityError:
            pass
        else:
            raise AssertionError("a second subscription of the same account and plan was stored")
    finally:
        con.close()


# Rows as 0014 left them (the foreign keys are not checked: the rows only need their columns).
ROWS_0014 = (
    "INSERT INTO backup_job_sessions (id, job_id, uid, company_id, location_id, computer_id,"
    " subtenant_id, functionality, result, started_at, ended_at, processed_bytes,"
    " transferred_bytes, warnings, messages) VALUES (11, 4, 's-1', 2, 3, NULL, NULL, 'x',"
    " 'FAILED', '2026-01-01 00:00:00+00:00', '2026-01-01 01:00:00+00:00', 20, 10, 0, '[]')",
    "INSERT INTO restore_points (id, computer_id, job_id, uid, company_id, created_at,"
    " size_bytes, target_kind) VALUES (12, 5, 4, 'rp-1', 2, '2026-01-01 00:00:00+00:00', 300,"
    " 'LOCAL')",
)
READ_0015 = (
    "SELECT id, result, processed_bytes, reported_at FROM backup_job_sessions",
    "SELECT id, size_bytes, reported_at FROM restore_points",
)
EXPECTED_0015 = [[(11, "FAILED", 20, None)], [(12, 300, None)]]


def test_0015_adds_the_report_times_to_existing_sessions_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    url = f"sqlite://{path}"
    migrate(url, "models", "0014_replica_sizes")
    sqlite_run(path, *ROWS_0014)
    migrate(url, "models", "0015_session_report_times")
    assert sqlite_run(path, *READ_0015) == EXPECTED_0015


def _pg_url(database: str) -> str:
    parts = urlsplit(PG_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _pg(database: str, *statements: str) -> list[list[tuple]]:
    import asyncpg

    con = await asyncpg.connect(_pg_url(database))
    try:
        return [[tuple(r) for r in await con.fetch(sql)] for sql in statements]
    finally:
        await con.close()


@pytest.mark.skipif(not ON_POSTGRES, reason="the PostgreSQL pass (TENANTRY_TEST_DATABASE_URL)")
def test_0015_adds_the_report_times_to_existing_sessions_on_postgres() -> None:
    database = f"tenantry_mig_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg("postgres", f'CREATE DATABASE "{database}"'))
    try:
        migrate(_pg_url(database), "models", "0014_replica_sizes")
        # replica: the session does not check foreign keys (postgres is a superuser here).
        asyncio.run(_pg(database, "SET session_replication_role = replica", *ROWS_0014))
        migrate(_pg_url(database), "models", "0015_session_report_times")
        assert asyncio.run(_pg(database, *READ_0015)) == EXPECTED_0015
    finally:
        asyncio.run(_pg("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


# Inventory rows as 0015 left them (the foreign keys are not checked, as above).
ROWS_0015 = (
    "INSERT INTO managed_computers (id, company_id, location_id, uid, hostname, os_family,"
    " os_name, ip_addresses, agent_status, last_heartbeat_at, subtenant_id,"
    " last_restore_point_at, restore_point_count, discovered_by_id, created_at, updated_at)"
    " VALUES (21, 2, 3, 'pc-1', 'sql01', 'WINDOWS', 'Windows Server 2022', '[\"10.0.0.1\"]',"
    " 'HEALTHY', '2026-01-01 00:00:00+00:00', NULL, NULL, 0, NULL,"
    " '2026-01-01 00:00:00+00:00', '2026-01-01 00:00:00+00:00')",
    "INSERT INTO backup_agents (id, computer_id, platform, edition, version, policy, status,"
    " updated_at) VALUES (22, 21, 'WINDOWS', 'SERVER', '6.1', 'daily', 'HEALTHY',"
    " '2026-01-01 00:00:00+00:00')",
    "INSERT INTO backup_servers (id, company_id, location_id, uid, kind, name, version, status,"
    " last_heartbeat_at, created_at, updated_at) VALUES (23, 2, 3, 'srv-1',"
    " 'BACKUP_AND_REPLICATION', 'vbr01', '12.3', 'UNKNOWN', NULL, '2026-01-01 00:00:00+00:00',"
    " '2026-01-01 00:00:00+00:00')",
)
READ_0016 = (
    "SELECT id, hostname, reported_at FROM managed_computers",
    "SELECT id, computer_id, version, reported_at FROM backup_agents",
    "SELECT id, name, version, reported_at FROM backup_servers",
)
EXPECTED_0016 = [[(21, "sql01", None)], [(22, 21, "6.1", None)], [(23, "vbr01", "12.3", None)]]


def test_0016_adds_the_report_times_to_existing_inventory_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite3"
    url = f"sqlite://{path}"
    migrate(url, "models", "0015_session_report_times")
    sqlite_run(path, *ROWS_0015)
    migrate(url, "models", "0016_inventory_report_times")
    assert sqlite_run(path, *READ_0016) == EXPECTED_0016


@pytest.mark.skipif(not ON_POSTGRES, reason="the PostgreSQL pass (TENANTRY_TEST_DATABASE_URL)")
def test_0016_adds_the_report_times_to_existing_inventory_on_postgres() -> None:
    database = f"tenantry_mig_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg("postgres", f'CREATE DATABASE "{database}"'))
    try:
        migrate(_pg_url(database), "models", "0015_session_report_times")
        asyncio.run(_pg(database, "SET session_replication_role = replica", *ROWS_0015))
        migrate(_pg_url(database), "models", "0016_inventory_report_times")
        assert asyncio.run(_pg(database, *READ_0016)) == EXPECTED_0016
    finally:
        asyncio.run(_pg("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
