"""audit_log_export: the audit log a user may read, as a CSV file under the data directory.

The requesting user's principal decides which entries (`audit_q`, the same SQL scope as the
`auditLog` query), narrowed to the job's organization and the organizations below it. Rows go
out in chunks of 1,000 ordered by id, up to the newest id at the first run (a snapshot). After
each chunk the checkpoint records the last id written and the file's byte length: a re-run
after a crash truncates the file to that length and continues after that id, so no row is ever
written twice. Params: optional "from" / "to" (ISO 8601 times, inclusive).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from tortoise.expressions import Q, Subquery

from app.authz.capabilities import AUDIT_LOG
from app.authz.matrix import Action, Functionality
from app.authz.principal import Principal
from app.csv_cells import safe_cell as _cell
from app.jobs.context import JobContext, JobFailed
from app.jobs.registry import JobKind, register
from app.jobs.requester import requester_principal
from app.models import AuditEntry, Organization
from app.services.audit import audit_q
from app.settings import data_dir

CHUNK = 1000
COLUMNS = (
    "id",
    "at",
    "actor_id",
    "actor_email",
    "actor_organization_id",
    "organization_id",
    "action",
    "object_type",
    "object_id",
    "outcome",
    "client_address",
    "request_id",
    "details",
)


def export_path(job_id: int) -> Path:
    folder = data_dir() / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"job-{job_id}.csv"


def _time(params: dict[str, Any], name: str) -> datetime | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(raw))
    except ValueError:
        raise JobFailed(f"params.{name} is not an ISO 8601 time: {raw!r}") from None


def _csv(rows: list[dict[str, Any]], header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    for row in rows:
        at = row["at"]
        writer.writerow(
            [
                row["id"],
                at.isoformat() if at else "",
                row["actor_id"] if row["actor_id"] is not None else "",
                _cell(row["actor_email"]),
                row["actor_organization_id"] or "",
                row["organization_id"] or "",
                _cell(row["action"]),
                _cell(row["object_type"]),
                _cell(row["object_id"]),
                row["outcome"],
                _cell(row["client_address"]),
                _cell(row["request_id"]),
                _cell(json.dumps(row["details"], sort_keys=True, default=str)),
            ]
        )
    return buffer.getvalue().encode("utf-8")


def _append(path: Path, offset: int, data: bytes) -> int:
    """Cut the file back to `offset` (what the checkpoint vouches for), append, sync; the new
    length."""
    with path.open("ab") as f:
        f.truncate(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def _entries(principal: Principal, ctx: JobContext) -> Any:
    query = AuditEntry.filter(audit_q(principal))
    org_id = ctx.job.organization_id  # type: ignore[attr-defined]
    if org_id is not None:
        subtree = Organization.filter(
            Q(id=org_id) | Q(parent_id=org_id) | Q(parent__parent_id=org_id)
        ).values("id")
        query = query.filter(organization_id__in=Subquery(subtree))
    params = ctx.params
    start, end = _time(params, "from"), _time(params, "to")
    if start is not None:
        query = query.filter(at__gte=start)
    if end is not None:
        query = query.filter(at__lte=end)
    return query


async def export(ctx: JobContext) -> dict[str, Any]:
    principal = await requester_principal(
        ctx.job.requested_by_id,  # type: ignore[attr-defined]
        AUDIT_LOG,
        Action.READ,
        "read the audit log",
    )
    entries = _entries(principal, ctx)
    path = export_path(ctx.id)
    point = dict(ctx.checkpoint)
    if "upto_id" not in point:
        newest = await entries.order_by("-id").limit(1).values_list("id", flat=True)
        point = {"upto_id": newest[0] if newest else 0, "last_id": 0, "offset": 0, "rows": 0}
        header = _csv([], header=True)
        point["offset"] = await asyncio.to_thread(_append, path, 0, header)
        point["total"] = await entries.filter(id__lte=point["upto_id"]).count()
        await ctx.save_checkpoint(point, "export started")
    total = max(int(point.get("total", 0)), 1)
    while True:
        await ctx.step(f"rows after id {point['last_id']}")
        rows = (
            await entries.filter(id__gt=point["last_id"], id__lte=point["upto_id"])
            .order_by("id")
            .limit(CHUNK)
            .values(*COLUMNS)
        )
        if not rows:
            break
        data = _csv(rows, header=False)
        offset = await asyncio.to_thread(_append, path, int(point["offset"]), data)
        point = {
            **point,
            "last_id": rows[-1]["id"],
            "offset": offset,
            "rows": int(point["rows"]) + len(rows),
        }
        await ctx.progress(
            min(99, 100 * point["rows"] / total), f"{point['rows']} rows exported", point
        )
    return {"path": str(path), "rows": int(point["rows"])}


AUDIT_LOG_EXPORT = register(
    JobKind(
        name="audit_log_export",
        label="Export the audit log (CSV)",
        functionality=Functionality.LOGS,
        handler=export,
        time_limit_seconds=3600,
        max_attempts=3,
    )
)
