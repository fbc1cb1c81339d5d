"""file_restore.run: carry out one file-level restore request through the agents' driver.

REQUESTED → IN_PROGRESS when the job starts; COMPLETED with the files and bytes restored, or
FAILED with the driver's reason. A cancel (app.services.file_restore.cancel) moves the request
to CANCELLED and asks the job to stop: the handler stops at its next path. After each path the
checkpoint records the paths done and the totals, so a re-run after a crash restores only the
rest. Params: {"restore_id": n}.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from app.authz.matrix import Functionality
from app.db import connection_name
from app.integrations import agents
from app.integrations.backup_agents import (
    AgentUnavailable,
    ComputerRef,
    DriverFailed,
    RestoredPath,
    RestorePointRef,
)
from app.jobs.context import (
    JobCancelled,
    JobContext,
    JobFailed,
    JobLost,
    TransientError,
    is_transient,
)
from app.jobs.registry import JobKind, register
from app.models import FileRestoreRequest, ManagedComputer, RestorePoint, RestoreState
from app.services import usage_ledger
from app.services.file_restore import transition


def _now() -> datetime:
    return datetime.now(UTC)


async def _fail(restore_id: int, message: str) -> JobFailed:
    await transition(restore_id, RestoreState.FAILED, error=message[:4000], finished_at=_now())
    return JobFailed(message)


async def run(ctx: JobContext) -> dict[str, Any]:
    restore = await FileRestoreRequest.get_or_none(id=int(ctx.params.get("restore_id", 0)))
    if restore is None:
        raise JobFailed("the file restore request no longer exists")
    try:
        return await _restore(ctx, restore)
    except (JobCancelled, JobFailed, JobLost):
        raise
    except Exception as exc:
        # The job fails for good (or gives up retrying): so does the request.
        if not is_transient(exc):
            await _fail(restore.id, "the restore stopped on an internal error")
        elif ctx.attempt >= ctx.job.max_attempts:
            await _fail(restore.id, f"gave up after {ctx.attempt} attempts: {exc}")
        raise


async def _restore(ctx: JobContext, restore: FileRestoreRequest) -> dict[str, Any]:
    if restore.state is RestoreState.CANCELLED:
        raise JobCancelled("the restore was cancelled")
    if restore.state in (RestoreState.COMPLETED, RestoreState.FAILED):
        return {"state": restore.state.value}  # finished by an earlier delivery
    if restore.state is RestoreState.REQUESTED and not await transition(
        restore.id, RestoreState.IN_PROGRESS, started_at=_now()
    ):
        raise JobCancelled("the restore was cancelled before it started")
    computer = await ManagedComputer.get(id=restore.computer_id)  # type: ignore[attr-defined]
    point_id = restore.restore_point_id  # type: ignore[attr-defined]
    point = await RestorePoint.get_or_none(id=point_id) if point_id is not None else None
    if point is None:
        raise await _fail(restore.id, "the restore point no longer exists")

    paths: list[str] = list(restore.paths)
    state = {"done": 0, "files": 0, "bytes": 0, **ctx.checkpoint}
    offset = int(state["done"])

    async def on_progress(done: int, total: int, restored: RestoredPath) -> None:
        state["done"] = offset + done
        state["files"] = int(state["files"]) + restored.files
        state["bytes"] = int(state["bytes"]) + restored.bytes
        await FileRestoreRequest.filter(id=restore.id).update(
            restored_files=state["files"], restored_bytes=state["bytes"]
        )
        await ctx.progress(
            100 * state["done"] / len(paths), f"restored {restored.path}", dict(state)
        )
        if state["done"] < len(paths):
            await ctx.step(paths[state["done"]])

    await ctx.step(paths[offset] if offset < len(paths) else "finish")
    try:
        await agents().restore_files(
            ComputerRef(computer.id, computer.company_id, computer.uid, computer.hostname),  # type: ignore[attr-defined]
            RestorePointRef(point.id, point.uid, point.created_at),
            paths[offset:],
            restore.destination,
            restore.overwrite,
            on_progress,
        )
    except DriverFailed as exc:
        raise await _fail(restore.id, str(exc)) from None
    except AgentUnavailable as exc:
        raise TransientError(f"the agent did not answer: {exc}") from exc
    except JobCancelled:
        await transition(restore.id, RestoreState.CANCELLED, finished_at=_now())
        raise
    at = _now()
    async with in_transaction(connection_name()):  # completed and billed together, once
        finished = await transition(
            restore.id,
            RestoreState.COMPLETED,
            restored_files=state["files"],
            restored_bytes=state["bytes"],
            finished_at=at,
        )
        if finished:
            await usage_ledger.record_restore_transfer(
                restore, computer, point, int(state["bytes"]), at
            )
    if not finished:
        raise JobCancelled("the restore was cancelled while it ran")
    return {"files": int(state["files"]), "bytes": int(state["bytes"]), "paths": len(paths)}


FILE_RESTORE_RUN = register(
    JobKind(
        name="file_restore.run",
        label="Restore files from a backup",
        functionality=Functionality.FILE_LEVEL_RESTORE,
        handler=run,
        time_limit_seconds=6 * 3600,
        max_attempts=3,
    )
)
