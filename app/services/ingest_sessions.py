"""Ingestion of backup job sessions (after `app.services.ingest_jobs` loaded the batch's jobs).

Sessions carry their job's company, location, computer, Subtenant and functionality. A report
of a running session never undoes a finished one. A session keeps the `reportedAt` of the batch
that last wrote it (`app.services.ingest_rows`): an older batch changes nothing. The job's last
run (time, result, run state) follows the newest session written by the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.authz.capabilities import JOB_FUNCTIONALITY
from app.models import BackupJobSession
from app.models.backups import JobRunState, SessionResult
from app.services import rollup_counts
from app.services.bulk_sql import execute_many
from app.services.ingest_rows import confirms, differs, stored, update_rows

if TYPE_CHECKING:
    from app.services.ingestion import Row, Run

SESSION_FIELDS = (
    "location_id",
    "computer_id",
    "subtenant_id",
    "functionality",
    "result",
    "started_at",
    "ended_at",
    "processed_bytes",
    "transferred_bytes",
    "warnings",
    "messages",
)


def _contribution(run: Run, s: Row) -> rollup_counts.Contribution | None:
    return rollup_counts.contribution(
        company_id=run.company_id,
        location_id=s["location_id"],
        subtenant_id=s["subtenant_id"],
        functionality=s["functionality"],
        started_at=s["started_at"],
        result=s["result"],
        processed_bytes=s["processed_bytes"],
    )


async def sessions(run: Run) -> None:
    kept = []
    for index, r in run.records("sessions"):
        if r["job"] in run.jobs:
            kept.append((index, r))
        else:
            run.reject("sessions", index, r, f"unknown job '{r['job']}'")
    run.keep("sessions", kept)
    if not kept:
        return
    job_ids = {run.jobs[r["job"]]["id"] for _, r in kept}
    existing = await stored(
        BackupJobSession, "job_id", job_ids, kept, (*SESSION_FIELDS, "reported_at")
    )
    deltas = rollup_counts.RollupDeltas()
    new: list[BackupJobSession] = []
    updates: list[tuple[int, dict[str, Any]]] = []
    newest: dict[int, Row] = {}
    reported_at = run.batch.reported_at
    for _, r in kept:
        job = run.jobs[r["job"]]
        values = {
            "location_id": job["location_id"], "computer_id": job["computer_id"],
            "subtenant_id": job["target_subtenant_id"],
            "functionality": JOB_FUNCTIONALITY[str(job["kind"])].value,
            **{f: r[f] for f in SESSION_FIELDS[4:]}, "reported_at": reported_at,
        }  # fmt: skip
        row = existing.get((job["id"], r["uid"]))
        if row is None:
            new.append(
                BackupJobSession(
                    job_id=job["id"], uid=r["uid"], company_id=run.company_id, **values
                )
            )
            deltas.add(_contribution(run, values))
        elif run.stale(row):
            continue  # older than the report that wrote the session: a newer word stands
        elif (
            r["result"] is SessionResult.NONE
            and SessionResult(row["result"]) is not SessionResult.NONE
        ):
            continue  # a late "running" report of a finished session
        elif differs(row, {f: values[f] for f in SESSION_FIELDS}):
            updates.append((row["id"], values))
            deltas.change(_contribution(run, row), _contribution(run, values))
        else:
            if confirms(run, row):  # the same values, written with the newer report time
                updates.append((row["id"], values))
            continue
        best = newest.get(job["id"])
        if best is None or values["started_at"] >= best["started_at"]:
            newest[job["id"]] = values
    if new:
        await BackupJobSession.bulk_create(new)
    await update_rows("backup_job_sessions", (*SESSION_FIELDS, "reported_at"), updates)
    await rollup_counts.apply(deltas)
    await _last_runs(run, newest)


async def _last_runs(run: Run, newest: dict[int, Row]) -> None:
    """A job's last run follows the newest session the batch wrote, never an older one."""
    by_id = {j["id"]: j for j in run.jobs.values()}
    updates = []
    for job_id, s in newest.items():
        job = by_id[job_id]
        if job["last_run_at"] is not None and s["started_at"] < job["last_run_at"]:
            continue
        result = SessionResult(s["result"])
        if result is SessionResult.NONE:
            last_result, state = SessionResult(job["last_result"]), JobRunState.RUNNING
        else:
            last_result, state = result, JobRunState.IDLE
        updates.append([s["started_at"], last_result.value, state.value, run.at, job_id])
    await execute_many(
        "UPDATE backup_jobs SET last_run_at = ?, last_result = ?, run_state = ?, updated_at = ?"
        " WHERE id = ?",
        updates,
    )
