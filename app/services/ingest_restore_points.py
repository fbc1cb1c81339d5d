"""Ingestion of restore points (after `app.services.ingest_jobs` loaded the batch's jobs): each
under its computer, optionally naming its job; a computer's count and latest restore point
follow. A restore point keeps the `reportedAt` of the batch that last wrote it
(`app.services.ingest_rows`): an older batch changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.models import RestorePoint
from app.services.bulk_sql import execute_many
from app.services.ingest_rows import confirms, differs, stored, update_rows

if TYPE_CHECKING:
    from app.services.ingestion import Run

POINT_FIELDS = ("job_id", "created_at", "size_bytes", "target_kind")


async def restore_points(run: Run) -> None:
    kept = []
    for index, r in run.records("restorePoints"):
        if r["computer"] not in run.computers:
            run.reject("restorePoints", index, r, f"unknown computer '{r['computer']}'")
        elif r["job"] and r["job"] not in run.jobs:
            run.reject("restorePoints", index, r, f"unknown job '{r['job']}'")
        else:
            kept.append((index, r))
    run.keep("restorePoints", kept)
    if not kept:
        return
    computer_ids = {run.computers[r["computer"]]["id"] for _, r in kept}
    existing = await stored(
        RestorePoint, "computer_id", computer_ids, kept, (*POINT_FIELDS, "reported_at")
    )
    new: list[RestorePoint] = []
    updates: list[tuple[int, dict[str, Any]]] = []
    added: dict[int, int] = {}
    for _, r in kept:
        computer = run.computers[r["computer"]]
        values = {
            "job_id": run.jobs[r["job"]]["id"] if r["job"] else None,
            "created_at": r["created_at"], "size_bytes": r["size_bytes"], "target_kind": r["target_kind"],
            "reported_at": run.batch.reported_at,
        }  # fmt: skip
        row = existing.get((computer["id"], r["uid"]))
        if row is None:
            new.append(
                RestorePoint(
                    computer_id=computer["id"], uid=r["uid"], company_id=run.company_id, **values
                )
            )
            added[computer["id"]] = added.get(computer["id"], 0) + 1
        elif run.stale(row):
            continue  # older than the report that wrote the point: a newer word stands
        elif confirms(run, row) or differs(row, {f: values[f] for f in POINT_FIELDS}):
            updates.append((row["id"], values))
        latest = computer["last_restore_point_at"]
        if latest is None or r["created_at"] > latest:
            computer["last_restore_point_at"] = r["created_at"]
            added.setdefault(computer["id"], 0)
    if new:
        await RestorePoint.bulk_create(new)
    await update_rows("restore_points", (*POINT_FIELDS, "reported_at"), updates)
    by_id = {c["id"]: c for c in run.computers.values()}
    await execute_many(
        "UPDATE managed_computers SET restore_point_count = restore_point_count + ?,"
        " last_restore_point_at = ?, updated_at = ? WHERE id = ?",
        [[count, by_id[cid]["last_restore_point_at"], run.at, cid] for cid, count in added.items()],
    )
