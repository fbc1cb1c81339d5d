"""Migrations applied to a database that already holds rows (an upgrade, not a fresh
install): a column a migration adds to a non-empty table needs a database default, and a
column it drops must not cost the table its indexes.

- 0013 on cloud gateways: the probe columns are added, the error text empty.
- 0014 on subscriptions and replicas: the rows stay, the typed-in usage columns go, the
  replicas start at size 0, and the subscription keeps its one-per-(tenant account, plan)
  unique index (the SQLite table rebuild used to drop it)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

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


def test_0013_adds_the_probe_columns_to_existing_gateways(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    url = f"sqlite://{path}"
    migrate(url, "models", "0012_alarms")
    con = sqlite3.connect(path)
    try:
        con.execute(
            "INSERT INTO cloud_gateways (id, name, address, port, enabled, redirector_capacity,"
            " created_at) VALUES (1, 'gw1', 'gw1.example', 6180, 1, 10,"
            " '2026-01-01 00:00:00+00:00')"
        )
        con.commit()
    finally:
        con.close()
    migrate(url, "models", "0013_gateway_probes")
    con = sqlite3.connect(path)
    try:
        assert con.execute(
            "SELECT id, reachable, last_probe_error, probe_latency_ms FROM cloud_gateways"
        ).fetchall() == [(1, None, "", None)]
    finally:
        con.close()


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
