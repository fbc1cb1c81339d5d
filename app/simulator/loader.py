"""Write a generated fleet straight into the tables, fast: rows built in Python with the ids
assigned here, written in chunks (PostgreSQL: `COPY` through the asyncpg connection; SQLite:
`executemany`), in one transaction, then the rollups rebuilt by one set-based statement.

Every denormalised column is filled as ingestion fills it: a session's company, location,
computer, subtenant and functionality (`capabilities.JOB_FUNCTIONALITY`) from its job; a
job's last run and result from its latest session; a computer's subtenant from its agent
job's cloud target, its last restore point and restore point count, its agent status and last
heartbeat; the batch's report time on computers, agents, servers and jobs. The loader is for companies without inventory (the demo, the benchmarks): natural
keys that exist already fail the unique constraints and nothing is written.

Each batch must hold whole computers and servers (their jobs, sessions and restore points
with them), as `fleet.generate` yields them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from app.authz.capabilities import JOB_FUNCTIONALITY
from app.db import column, connection_name
from app.models import BackupResource, Subtenant
from app.services.rollups import rebuild_rollups
from app.simulator.fleet import FleetBatch

CHUNK = 5_000

COLUMNS: dict[str, tuple[str, ...]] = {
    "managed_computers": (
        "id", "company_id", "location_id", "uid", "hostname", "os_family", "os_name",
        "ip_addresses", "agent_status", "last_heartbeat_at", "subtenant_id",
        "last_restore_point_at", "restore_point_count", "discovered_by_id", "reported_at",
        "created_at", "updated_at",
    ),
    "backup_agents": (
        "id", "computer_id", "platform", "edition", "version", "policy", "status", "reported_at",
        "updated_at",
    ),
    "backup_servers": (
        "id", "company_id", "location_id", "uid", "kind", "name", "version", "status",
        "last_heartbeat_at", "reported_at", "created_at", "updated_at",
    ),
    "backup_jobs": (
        "id", "company_id", "location_id", "uid", "name", "kind", "functionality",
        "computer_id", "server_id", "target_kind", "target_resource_id", "target_subtenant_id",
        "target_name", "assigned_by_provider", "schedule", "enabled", "run_state",
        "pending_command", "last_result", "last_run_at", "reported_at", "created_at",
        "updated_at",
    ),
    "backup_job_sessions": (
        "id", "job_id", "uid", "company_id", "location_id", "computer_id", "subtenant_id",
        "functionality", "result", "started_at", "ended_at", "processed_bytes",
        "transferred_bytes", "warnings", "messages",
    ),
    "restore_points": (
        "id", "computer_id", "job_id", "uid", "company_id", "created_at", "size_bytes",
        "target_kind",
    ),
    "veeam_one_records": (
        "id", "company_id", "location_id", "server_id", "uid", "object_name", "metric", "value",
        "severity", "message", "recorded_at",
    ),
}  # fmt: skip
# Parents first: the order rows are written in.
TABLES = tuple(COLUMNS)
PARENTS = ("managed_computers", "backup_servers", "backup_jobs")


@dataclass
class LoadStats:
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    rollups: int = 0
    company_ids: set[int] = field(default_factory=set)
    seconds: float = 0.0  # in all: generating, writing, rebuilding the rollups
    rollup_seconds: float = 0.0

    @property
    def sessions(self) -> int:
        return self.rows["backup_job_sessions"]


class _Writer:
    """Buffers rows per table; flushes a table's buffer in one COPY / executemany."""

    def __init__(self, conn: BaseDBAsyncClient, stats: LoadStats) -> None:
        self.conn = conn
        self.postgres = conn.capabilities.dialect == "postgres"
        self.stats = stats
        self.buffers: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        self.next_id: dict[str, int] = {}
        self.targets: dict[tuple[int, str, str, str], tuple[int | None, int | None]] = {}
        self.analyzed: dict[str, int] = {}

    async def start(self) -> None:
        for table in TABLES:
            _, rows = await self.conn.execute_query(
                f"SELECT COALESCE(MAX(id), 0) AS m FROM {table}"
            )
            self.next_id[table] = int(rows[0]["m"]) + 1

    async def resolve(
        self, company_id: int, target: dict[str, Any]
    ) -> tuple[int | None, int | None]:
        """(backup resource id, Subtenant id) of a job's target, named as ingestion names it:
        the company's tenant account, the repository, the Subtenant's e-mail."""
        if target["kind"] != "CLOUD":
            return None, None
        key = (
            company_id,
            target["tenantAccount"],
            target.get("repository", ""),
            target.get("subtenant", ""),
        )
        if key not in self.targets:
            self.targets[key] = await _resolve_target(self.conn, *key)
        return self.targets[key]

    def new_id(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] = value + 1
        return value

    async def add(self, table: str, row: tuple[Any, ...]) -> None:
        buffer = self.buffers[table]
        buffer.append(row)
        if len(buffer) >= CHUNK:
            await self.flush_all()

    async def flush_all(self) -> None:
        for table in TABLES:  # parents first, for the foreign keys
            await self._flush(table)
        if self.postgres:
            await self._analyze_parents()

    async def _analyze_parents(self) -> None:
        """PostgreSQL checks each child row's foreign keys with a plan it keeps for the
        connection; planned while a parent table looked empty, it scans the parent for every
        row (a 1,000,000-session load would take hours). ANALYZE (it sees this transaction's
        rows) replans them; done each time a parent has doubled, so a few times per load."""
        for table in PARENTS:
            rows = self.stats.rows[table]
            if rows >= 2 * self.analyzed.get(table, 0) and rows > self.analyzed.get(table, -1):
                await self.conn.execute_script(f"ANALYZE {table}")
                self.analyzed[table] = rows

    async def _flush(self, table: str) -> None:
        rows = self.buffers[table]
        if not rows:
            return
        columns = COLUMNS[table]
        if self.postgres:
            async with self.conn.acquire_connection() as raw:
                await raw.copy_records_to_table(table, records=rows, columns=columns)
        else:
            marks = ", ".join("?" for _ in columns)
            await self.conn.execute_many(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                [list(row) for row in rows],
            )
        self.stats.rows[table] += len(rows)
        self.buffers[table] = []

    async def finish(self) -> None:
        await self.flush_all()
        if self.postgres:  # ids were given explicitly: move the sequences past them
            for table in TABLES:
                await self.conn.execute_query(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"GREATEST((SELECT MAX(id) FROM {table}), 1))"
                )


async def _resolve_target(
    conn: BaseDBAsyncClient, company_id: int, account: str, repository: str, subtenant: str
) -> tuple[int | None, int | None]:
    resources = BackupResource.filter(
        tenant_account__company_id=company_id, tenant_account__name=account
    ).using_db(conn)
    if repository:
        resources = resources.filter(repository__name=repository)
    if subtenant:
        row = (
            await Subtenant.filter(
                resource_id__in=Subquery(resources.values("id")), user__email=subtenant
            )
            .using_db(conn)
            .values("id", "resource_id")
        )
        if not row:
            raise ValueError(f"no Subtenant {subtenant!r} under tenant account {account!r}")
        return row[0]["resource_id"], row[0]["id"]
    if not repository:
        return None, None
    ids = await column(resources, "id")
    if not ids:
        raise ValueError(f"tenant account {account!r} has no resource on {repository!r}")
    return int(ids[0]), None


async def _load_batch(w: _Writer, batch: FleetBatch, now: datetime) -> None:
    recs = batch.records
    company, location = batch.company_id, batch.location_id
    heartbeats = {
        (h.get("computer"), h.get("server")): (h["at"], h["status"]) for h in recs["heartbeats"]
    }
    targets = {j["uid"]: await w.resolve(company, j["target"]) for j in recs["jobs"]}
    agent_jobs = {j["computer"]: j["uid"] for j in recs["jobs"] if j.get("computer")}
    rps_by_computer: dict[str, list[dict[str, Any]]] = {}
    for rp in recs["restorePoints"]:
        rps_by_computer.setdefault(rp["computer"], []).append(rp)
    last_run: dict[str, dict[str, Any]] = {}
    last_session: dict[str, dict[str, Any]] = {}
    for s in recs["sessions"]:
        newest = last_run.get(s["job"])
        if newest is None or s["startedAt"] >= newest["startedAt"]:
            last_run[s["job"]] = s
        if s["result"] == "NONE":
            continue  # a job's last result is its latest finished session's
        seen = last_session.get(s["job"])
        if seen is None or s["startedAt"] >= seen["startedAt"]:
            last_session[s["job"]] = s

    computer_ids: dict[str, int] = {}
    for c in recs["computers"]:
        cid = computer_ids[c["uid"]] = w.new_id("managed_computers")
        beat, status = heartbeats.get((c["uid"], None), (None, "UNKNOWN"))
        job = agent_jobs.get(c["uid"])
        rps = rps_by_computer.get(c["uid"], [])
        await w.add(
            "managed_computers",
            (
                cid, company, location, c["uid"], c["hostname"], c["osFamily"], c["osName"],
                json.dumps(c["ipAddresses"]), status, beat,
                targets[job][1] if job else None,
                max((rp["createdAt"] for rp in rps), default=None), len(rps), None,
                batch.reported_at, now, now,
            ),
        )  # fmt: skip
    for a in recs["agents"]:
        await w.add(
            "backup_agents",
            (
                w.new_id("backup_agents"), computer_ids[a["computer"]], a["platform"],
                a["edition"], a["version"], a["policy"], a["status"], batch.reported_at, now,
            ),
        )  # fmt: skip
    server_ids: dict[str, int] = {}
    for s in recs["servers"]:
        sid = server_ids[s["uid"]] = w.new_id("backup_servers")
        beat, status = heartbeats.get((None, s["uid"]), (None, "UNKNOWN"))
        await w.add(
            "backup_servers",
            (sid, company, location, s["uid"], s["kind"], s["name"], s["version"], status, beat,
             batch.reported_at, now, now),
        )  # fmt: skip
    jobs: dict[str, tuple[int, int | None, int | None, str]] = {}
    for j in recs["jobs"]:
        jid = w.new_id("backup_jobs")
        functionality = JOB_FUNCTIONALITY[j["kind"]].value
        computer_id = computer_ids[j["computer"]] if j.get("computer") else None
        server_id = server_ids[j["server"]] if j.get("server") else None
        resource_id, subtenant_id = targets[j["uid"]]
        jobs[j["uid"]] = (jid, computer_id, subtenant_id, functionality)
        runs = last_run.get(j["uid"])
        last = last_session.get(j["uid"])
        await w.add(
            "backup_jobs",
            (
                jid, company, location, j["uid"], j["name"], j["kind"], functionality,
                computer_id, server_id, j["target"]["kind"], resource_id, subtenant_id,
                j["target"].get("name", ""), j["assignedByProvider"], j["schedule"], j["enabled"],
                "RUNNING" if runs and runs["result"] == "NONE" else "IDLE", None,
                last["result"] if last else "NONE", runs["startedAt"] if runs else None,
                batch.reported_at, now, now,
            ),
        )  # fmt: skip
    for s in recs["sessions"]:
        jid, computer_id, subtenant_id, functionality = jobs[s["job"]]
        await w.add(
            "backup_job_sessions",
            (
                w.new_id("backup_job_sessions"), jid, s["uid"], company, location, computer_id,
                subtenant_id, functionality, s["result"], s["startedAt"], s["endedAt"],
                s["processedBytes"], s["transferredBytes"], s["warnings"],
                json.dumps(s["messages"]),
            ),
        )  # fmt: skip
    for rp in recs["restorePoints"]:
        await w.add(
            "restore_points",
            (
                w.new_id("restore_points"), computer_ids[rp["computer"]],
                jobs[rp["job"]][0] if rp.get("job") else None, rp["uid"], company,
                rp["createdAt"], rp["sizeBytes"], rp["targetKind"],
            ),
        )  # fmt: skip
    for v in recs["veeamOne"]:
        await w.add(
            "veeam_one_records",
            (
                w.new_id("veeam_one_records"), company, location, server_ids[v["server"]],
                v["uid"], v["objectName"], v["metric"], v["value"], v["severity"], v["message"],
                v["recordedAt"],
            ),
        )  # fmt: skip


async def load_fleet(batches: Iterable[FleetBatch]) -> LoadStats:
    """Write the batches and rebuild the rollups of their companies, in one transaction."""
    started = time.perf_counter()
    stats = LoadStats()
    now = datetime.now(UTC).replace(microsecond=0)
    async with in_transaction(connection_name()) as conn:
        writer = _Writer(conn, stats)
        await writer.start()
        for batch in batches:
            stats.company_ids.add(batch.company_id)
            await _load_batch(writer, batch, now)
        await writer.finish()
        written = time.perf_counter()
        stats.rollups = await rebuild_rollups(stats.company_ids, connection=conn)
        stats.rollup_seconds = time.perf_counter() - written
    stats.seconds = time.perf_counter() - started
    return stats
