"""File-level restore requests: some files or folders of a managed computer, from one of its
restore points (the latest by default), to a destination on the computer. The restore itself
runs as a background job (`file_restore.run`, app/jobs/file_restore.py) through the agents'
driver.

    REQUESTED → IN_PROGRESS → COMPLETED | FAILED
    REQUESTED | IN_PROGRESS → CANCELLED   (cancelling also cancels the background job)

Every transition is one conditional UPDATE from its allowed sources (`transition`), so the
worker and a user's cancel racing each other leave one outcome; anything else is CONFLICT.

Permission: FILE_RESTORES (the "File-level restore" row). The Subtenant's Full* cell is
decided by the engine on the computer's Subtenant user; rows are scoped by `workload_q`
through the computer (a Subtenant sees the restores of their own computers only).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import Q

from app.authz import scope
from app.authz.capabilities import FILE_RESTORES
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import BadInput, Conflict, NotFound
from app.models import (
    FileRestoreRequest,
    Job,
    ManagedComputer,
    Organization,
    RestorePoint,
    RestoreState,
)
from app.models.jobs import FINISHED
from app.models.tenancy import OrgKind
from app.services import jobs
from app.services.actor import Actor
from app.services.audit import audited
from app.services.backup_jobs import subtenant_user_id
from app.services.guards import require
from app.services.workloads import computer_in_scope

RUN_KIND = "file_restore.run"
MAX_PATHS = 100
PATH_MAX = 1000
DESTINATION_MAX = 500

TRANSITIONS: dict[RestoreState, frozenset[RestoreState]] = {
    RestoreState.REQUESTED: frozenset({RestoreState.IN_PROGRESS, RestoreState.CANCELLED}),
    RestoreState.IN_PROGRESS: frozenset(
        {RestoreState.COMPLETED, RestoreState.FAILED, RestoreState.CANCELLED}
    ),
}
OPEN = frozenset(TRANSITIONS)

_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


def restore_q(p: Principal) -> Q:
    return scope.workload_q(p, location="computer__location_id", subtenant="computer__subtenant_id")


async def restore_in_scope(p: Principal, pk: int) -> FileRestoreRequest:
    row = await FileRestoreRequest.filter(restore_q(p), id=pk).first()
    if row is None:
        raise NotFound("file restore request")
    return row


async def target(computer: ManagedComputer) -> Target:
    """The computer's company and, when it backs up to a Subtenant's account, that Subtenant's
    user: the engine's `subtenant_own_computers` rule decides the Full* cell on it."""
    return Target(
        kind=FILE_RESTORES.kind,
        organization_id=computer.company_id,  # type: ignore[attr-defined]
        organization_kind=OrgKind.COMPANY,
        subtenant_user_id=await subtenant_user_id(computer.subtenant_id),  # type: ignore[attr-defined]
    )


def is_absolute(path: str) -> bool:
    return path.startswith("/") or path.startswith("\\\\") or bool(_WINDOWS_ABSOLUTE.match(path))


def clean_paths(paths: list[str]) -> list[str]:
    """Absolute paths (POSIX, `C:\\…`, `\\\\server\\share`), 1 to MAX_PATHS, no `..`,
    duplicates dropped (first one kept)."""
    if not paths:
        raise BadInput("name at least one file or folder to restore", field="input.paths")
    if len(paths) > MAX_PATHS:
        raise BadInput(f"at most {MAX_PATHS} paths per request", field="input.paths")
    cleaned: list[str] = []
    for i, raw in enumerate(paths):
        path = raw.strip()
        field = f"input.paths.{i}"
        if not path or len(path) > PATH_MAX or "\x00" in path:
            raise BadInput(f"a path of 1 to {PATH_MAX} characters is required", field=field)
        if not is_absolute(path):
            raise BadInput(f"{path!r} is not an absolute path", field=field)
        if ".." in re.split(r"[\\/]", path):
            raise BadInput(f"{path!r} climbs out with '..'", field=field)
        if path not in cleaned:
            cleaned.append(path)
    return cleaned


def clean_destination(destination: str) -> str:
    destination = destination.strip()
    if not destination:
        raise BadInput("a destination is required", field="input.destination")
    if len(destination) > DESTINATION_MAX or not is_absolute(destination):
        raise BadInput(
            f"the destination must be an absolute path of at most {DESTINATION_MAX} characters",
            field="input.destination",
        )
    return destination


async def _restore_point(computer: ManagedComputer, restore_point_id: int | None) -> RestorePoint:
    if restore_point_id is not None:
        point = await RestorePoint.filter(id=restore_point_id, computer_id=computer.id).first()
        if point is None:
            raise BadInput(
                "the restore point is not one of this computer's", field="input.restorePointId"
            )
        return point
    latest = await RestorePoint.filter(computer_id=computer.id).order_by("-created_at").first()
    if latest is None:
        raise Conflict("the computer has no restore point to restore from")
    return latest


async def transition(restore_id: int, to: RestoreState, **changes: Any) -> bool:
    """Move the request to `to` from any state allowed to go there; False when it was in
    none of them (someone else moved it first)."""
    sources = [state for state, targets in TRANSITIONS.items() if to in targets]
    updated = await FileRestoreRequest.filter(id=restore_id, state__in=sources).update(
        state=to, **changes
    )
    return bool(updated)


async def request(
    actor: Actor,
    computer_id: int,
    paths: list[str],
    destination: str,
    restore_point_id: int | None = None,
    overwrite: bool = False,
) -> FileRestoreRequest:
    p = actor.p
    require(p, FILE_RESTORES, Action.CREATE)
    computer = await computer_in_scope(p, computer_id)
    require(p, FILE_RESTORES, Action.CREATE, await target(computer))
    cleaned = clean_paths(paths)
    destination = clean_destination(destination)
    point = await _restore_point(computer, restore_point_id)
    company_id = computer.company_id  # type: ignore[attr-defined]
    async with audited(
        actor, "fileRestoreRequest", "FileRestoreRequest", organization_id=company_id
    ) as entry:
        restore = await FileRestoreRequest.create(
            company_id=company_id,
            computer=computer,
            restore_point=point,
            paths=cleaned,
            destination=destination,
            overwrite=overwrite,
            requested_by_id=p.user_id,
        )
        entry.bind(
            restore.id,
            computer=computer.hostname,
            restorePoint=point.uid,
            paths=len(cleaned),
            destination=destination,
            overwrite=overwrite,
        )
    # After the commit: the worker must find the request when the job reaches it.
    company = await Organization.get(id=company_id)
    job, _ = await jobs.create(
        actor, RUN_KIND, company, {"restore_id": restore.id}, dedup_key=f"{RUN_KIND}:{restore.id}"
    )
    await FileRestoreRequest.filter(id=restore.id).update(job=job)
    return await FileRestoreRequest.get(id=restore.id)


async def cancel(actor: Actor, restore_id: int) -> FileRestoreRequest:
    p = actor.p
    restore = await restore_in_scope(p, restore_id)
    computer = await ManagedComputer.get(id=restore.computer_id)  # type: ignore[attr-defined]
    require(p, FILE_RESTORES, Action.UPDATE, await target(computer))
    company_id = restore.company_id  # type: ignore[attr-defined]
    async with audited(
        actor, "fileRestoreCancel", "FileRestoreRequest", restore.id, company_id
    ) as entry:
        entry.details.update(before=restore.state.value)
        if restore.state not in OPEN:
            raise Conflict(f"the restore is already {restore.state.value.lower()}")
        if not await transition(restore.id, RestoreState.CANCELLED, finished_at=datetime.now(UTC)):
            raise Conflict("the restore has just finished: reload it")
    job_id = restore.job_id  # type: ignore[attr-defined]
    job = await Job.get_or_none(id=job_id) if job_id is not None else None
    if job is not None and job.state not in FINISHED:
        try:
            await jobs.request_cancel(actor, job)
        except Conflict:
            pass  # it finished meanwhile; the handler sees the request CANCELLED
    return await FileRestoreRequest.get(id=restore.id)
