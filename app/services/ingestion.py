"""Ingestion: what backup servers and agents report, in batches (`POST /ingest/v1/batch`).

A batch is authenticated by an agent key (`app.services.agent_keys`): everything in it belongs
to the key's company, and the computers, servers and jobs it reports for the first time land in
the key's location, except a computer a discovery rule registered: the report claims that row
(its uid becomes the reporter's; the rule is in `app.services.computer_match`). Records are
keyed by the reporter's own ids (natural keys): computer, server and job `uid` per company,
session `uid` per job, restore point `uid` per computer, Veeam ONE record `uid` per server.

* Strict: `app.services.ingest_records` checks every record; here, references are resolved
  (a session's job, a restore point's computer…, known already or accepted in the same batch).
  A bad record is rejected with `{list, index, uid, reason}`, the others are kept.
* All or nothing for the accepted set: one transaction, under a per-company lock
  (`app.db.serialize`), so two batches of one company never interleave (no duplicate rows, no
  rollup counted twice) while different companies ingest in parallel.
* Idempotent: a row is written only when the report changes it; heartbeats, job runs and Veeam
  ONE records never go back in time; computers, servers, agents, jobs, sessions and restore
  points keep the `reportedAt` of the batch that last wrote them and an older batch does not
  change them (`app.services.ingest_inventory`, `app.services.ingest_rows`); a running session
  never undoes a finished one; the daily rollups move by the difference
  (`app.services.rollup_counts`).
* Constant query count: one SELECT per list by natural keys, one bulk INSERT, one `executemany`
  UPDATE, whatever the number of records (and, when the batch reports computers new to the
  company, one SELECT of the discovered computers they may claim).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise.models import Model
from tortoise.transactions import in_transaction

from app.db import connection_name, serialize
from app.models import AgentKey, BackupJob
from app.models.inventory import ServerKind
from app.models.licensing import VeeamOneRecord
from app.services import (
    ingest_inventory,
    ingest_jobs,
    ingest_restore_points,
    ingest_sessions,
)
from app.services.bulk_sql import execute_many
from app.services.ingest_inventory import changed
from app.services.ingest_records import LISTS, Batch, Record, Rejection, parse_batch

Row = dict[str, Any]

VEEAM_ONE_FIELDS = ("object_name", "metric", "value", "severity", "message", "recorded_at")


def now() -> datetime:
    return datetime.now(UTC)


def lock_key(company_id: int) -> str:
    """The company's ingestion lock (`app.db.serialize`); discovery runs register under it too."""
    return f"ingest:{company_id}"


@dataclass
class IngestResult:
    accepted: dict[str, int]
    rejected: list[Rejection]
    commands: list[dict[str, str]]

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": [r.as_json() for r in self.rejected],
            "commands": self.commands,
        }


@dataclass
class Run:
    """One batch being written: the records still accepted, and the rows they refer to."""

    company_id: int
    location_id: int
    batch: Batch
    at: datetime = field(default_factory=now)
    servers: dict[str, Row] = field(default_factory=dict)
    computers: dict[str, Row] = field(default_factory=dict)
    jobs: dict[str, Row] = field(default_factory=dict)

    def records(self, name: str) -> list[tuple[int, Record]]:
        return self.batch.records.get(name, [])

    def refs(self, key: str, *lists: str) -> set[str]:
        return {r[key] for name in lists for _, r in self.records(name) if r.get(key)}

    def keep(self, name: str, kept: list[tuple[int, Record]]) -> None:
        self.batch.records[name] = kept

    def reject(self, name: str, index: int, record: Record, reason: str) -> None:
        self.batch.reject(name, index, record, reason)

    def stale(self, row: Row) -> bool:
        """The batch is older than the one that last wrote the stored row (a row without a
        report time takes any report)."""
        return row["reported_at"] is not None and self.batch.reported_at < row["reported_at"]


async def load_by_uid(
    model: type[Model], uids: set[str], fields: tuple[str, ...], **filters: Any
) -> dict[str, Row]:
    if not uids:
        return {}
    rows = await model.filter(uid__in=sorted(uids), **filters).values(*fields)
    return {row["uid"]: row for row in rows}


# --- Veeam ONE and commands ---------------------------------------------------------------------


async def veeam_one(run: Run) -> None:
    kept = []
    for index, r in run.records("veeamOne"):
        server = run.servers.get(r["server"])
        if server is None:
            run.reject("veeamOne", index, r, f"unknown server '{r['server']}'")
        elif ServerKind(server["kind"]) is not ServerKind.VEEAM_ONE:
            run.reject("veeamOne", index, r, f"server '{r['server']}' is not a VEEAM_ONE server")
        else:
            kept.append((index, r))
    run.keep("veeamOne", kept)
    if not kept:
        return
    rows = await VeeamOneRecord.filter(
        server_id__in={run.servers[r["server"]]["id"] for _, r in kept},
        uid__in={r["uid"] for _, r in kept},
    ).values("id", "server_id", "uid", *VEEAM_ONE_FIELDS)
    existing = {(row["server_id"], row["uid"]): row for row in rows}
    new, updates = [], []
    for _, r in kept:
        server = run.servers[r["server"]]
        values = {f: r[f] for f in VEEAM_ONE_FIELDS}
        row = existing.get((server["id"], r["uid"]))
        if row is None:
            new.append(
                VeeamOneRecord(
                    company_id=run.company_id,
                    location_id=server["location_id"],
                    server_id=server["id"],
                    uid=r["uid"],
                    **values,
                )
            )
        elif r["recorded_at"] >= row["recorded_at"] and changed(row, r, VEEAM_ONE_FIELDS):
            updates.append([*(getattr(v, "value", v) for v in values.values()), row["id"]])
    if new:
        await VeeamOneRecord.bulk_create(new)
    await execute_many(
        "UPDATE veeam_one_records SET object_name = ?, metric = ?, value = ?, severity = ?,"
        " message = ?, recorded_at = ? WHERE id = ?",
        updates,
    )


async def acks(run: Run) -> None:
    """An acknowledged command is cleared, when it is still the one pending."""
    kept, updates = [], []
    for index, r in run.records("acks"):
        job = run.jobs.get(r["job"])
        if job is None:
            run.reject("acks", index, r, f"unknown job '{r['job']}'")
            continue
        kept.append((index, r))
        updates.append([run.at, job["id"], r["command"].value])
    run.keep("acks", kept)
    await execute_many(
        "UPDATE backup_jobs SET pending_command = NULL, updated_at = ?"
        " WHERE id = ? AND pending_command = ?",
        updates,
    )


async def pending_commands(company_id: int) -> list[dict[str, str]]:
    rows = await (
        BackupJob.filter(company_id=company_id, pending_command__isnull=False)
        .order_by("id")
        .values_list("uid", "pending_command")
    )
    return [{"job": uid, "command": str(getattr(cmd, "value", cmd))} for uid, cmd in rows]


# --- the batch ---------------------------------------------------------------------------------


async def ingest(key: AgentKey, payload: Any) -> IngestResult:
    """Validates and writes one batch for the key's company (BAD_USER_INPUT when its shape is
    wrong); returns what was accepted, what was rejected and why, and the commands pending for
    the company's jobs."""
    batch = parse_batch(payload)
    company_id: int = key.company_id  # type: ignore[attr-defined]
    run = Run(company_id, key.location_id, batch)  # type: ignore[attr-defined]
    async with in_transaction(connection_name()):
        await serialize(lock_key(company_id))
        await ingest_inventory.servers(run)
        await ingest_inventory.computers(run)
        await ingest_inventory.agents(run)
        await ingest_jobs.jobs(run)
        await ingest_sessions.sessions(run)
        await ingest_restore_points.restore_points(run)
        await ingest_inventory.heartbeats(run)
        await veeam_one(run)
        await acks(run)
        commands = await pending_commands(company_id)
    order = {name: n for n, name in enumerate(LISTS)}
    rejected = sorted(batch.rejected, key=lambda r: (order[r.list], r.index))
    accepted = {name: len(run.records(name)) for name in LISTS}
    if any(accepted.values()):  # committed: the company's alarms, once per minute at most
        from app.alarms.evaluation import request_evaluation

        await request_evaluation(company_id)
    return IngestResult(accepted, rejected, commands)
