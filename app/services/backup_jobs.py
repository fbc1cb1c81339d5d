"""Operating backup jobs from the console: start, stop, retry, enable, disable; their settings
(name, schedule); agent jobs created for a computer, and removal.

A start, stop or retry does not reach the backup server directly: it sets the job's
`pending_command` (and run state STARTING / STOPPING), which the server picks up with the
answer to its next report and acknowledges (app.services.ingestion).

Permissions come from two capabilities per (kind, assigned by the provider):
`backup_job(kind, assigned)` UPDATE to operate a job, and
`backup_job(kind, assigned, settings=True)` CREATE / UPDATE / DELETE for its settings. The
Client Portal's "Jobs assigned by service provider" row governs the provider's jobs there,
read-only for settings: a company operates them (when its cell says Full) but does not
reconfigure them. Jobs outside the caller's scope are NOT_FOUND.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from croniter import croniter

from app.authz.capabilities import JOB_FUNCTIONALITY, backup_job
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import BadInput, Conflict
from app.models import BackupJob, BackupJobKind, JobRunState, PendingCommand, SessionResult
from app.models.cloud import Subtenant
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.workloads import computer_in_scope, job_in_scope

NAME_MAX = 255


def functionality_for(kind: str, assigned: bool = False) -> str:
    """The matrix row stored on a job (and its sessions): its product's row. Whether the
    provider assigned it is a column of its own (`assigned_by_provider`), which row scope
    (`scope.backup_job_q`) reads to apply "Jobs assigned by service provider"."""
    return JOB_FUNCTIONALITY[str(kind)].value


def cron_schedule(value: str, field: str) -> str:
    """A five-field cron expression, or "" (on demand only)."""
    value = " ".join(value.split())
    if not value:
        return ""
    if len(value) > 100 or len(value.split(" ")) != 5 or not croniter.is_valid(value):
        raise BadInput(
            "not a cron expression of five fields (minute hour day month weekday)", field=field
        )
    return value


def job_name(value: str, field: str = "input.name") -> str:
    value = value.strip()
    if not value:
        raise BadInput("a name is required", field=field)
    if len(value) > NAME_MAX:
        raise BadInput(f"longer than {NAME_MAX} characters", field=field)
    return value


async def subtenant_user_id(subtenant_id: int | None) -> int | None:
    """The user of a Subtenant account (what the Read* / Full* cells are decided on)."""
    if subtenant_id is None:
        return None
    users = await Subtenant.filter(id=subtenant_id).values_list("user_id", flat=True)
    return int(users[0]) if users else None  # type: ignore[call-overload]


async def target(job: BackupJob) -> Target:
    """What the engine's rules need of a job: its company and, for a job backing up to a
    Subtenant's account, that Subtenant's user (the Read* / Full* cells)."""
    return Target(
        kind="backup_job",
        organization_id=job.company_id,  # type: ignore[attr-defined]
        organization_kind=OrgKind.COMPANY,
        subtenant_user_id=await subtenant_user_id(job.target_subtenant_id),  # type: ignore[attr-defined]
    )


async def _job_for(p: Principal, job_id: int, action: Action, *, settings: bool) -> BackupJob:
    job = await job_in_scope(p, job_id)
    cap = backup_job(job.kind, job.assigned_by_provider, settings=settings)
    require(p, cap, action, await target(job))
    return job


def _state(job: BackupJob) -> str:
    return job.run_state.value.lower()


def _refuse_start(job: BackupJob) -> str | None:
    if not job.enabled:
        return "the job is disabled: enable it before starting it"
    if job.run_state is not JobRunState.IDLE:
        return f"the job is already {_state(job)}"
    return None


def _refuse_stop(job: BackupJob) -> str | None:
    if job.run_state is JobRunState.IDLE:
        return "the job is not running"
    if job.run_state is JobRunState.STOPPING:
        return "the job is already stopping"
    return None


def _refuse_retry(job: BackupJob) -> str | None:
    if not job.enabled:
        return "the job is disabled: enable it before retrying it"
    if job.run_state is not JobRunState.IDLE:
        return f"the job is {_state(job)}: only an idle job can be retried"
    if job.last_result is not SessionResult.FAILED:
        return f"only a failed job can be retried (its last result is {job.last_result.value})"
    return None


def _details(job: BackupJob) -> dict[str, Any]:
    return {"name": job.name, "kind": job.kind.value, "assigned": job.assigned_by_provider}


async def _operate(
    actor: Actor,
    job_id: int,
    mutation: str,
    refuse: Callable[[BackupJob], str | None],
    changes: dict[str, Any],
) -> BackupJob:
    job = await _job_for(actor.p, job_id, Action.UPDATE, settings=False)
    company_id = job.company_id  # type: ignore[attr-defined]
    async with audited(actor, mutation, "BackupJob", job.id, company_id) as entry:
        entry.details.update(_details(job), before=_state(job))
        reason = refuse(job)
        if reason is not None:
            raise Conflict(reason)
        # Conditional on what was checked: a concurrent change makes this one a CONFLICT.
        updated = await BackupJob.filter(
            id=job.id,
            run_state=job.run_state,
            enabled=job.enabled,
            last_result=job.last_result,
        ).update(**changes)
        if not updated:
            raise Conflict("the job changed meanwhile: reload it and try again")
        entry.details.update({k: str(v) if v is not None else None for k, v in changes.items()})
    return await BackupJob.get(id=job.id)


async def start(actor: Actor, job_id: int) -> BackupJob:
    changes = {"pending_command": PendingCommand.START, "run_state": JobRunState.STARTING}
    return await _operate(actor, job_id, "backupJobStart", _refuse_start, changes)


async def stop(actor: Actor, job_id: int) -> BackupJob:
    changes = {"pending_command": PendingCommand.STOP, "run_state": JobRunState.STOPPING}
    return await _operate(actor, job_id, "backupJobStop", _refuse_stop, changes)


async def retry(actor: Actor, job_id: int) -> BackupJob:
    changes = {"pending_command": PendingCommand.RETRY, "run_state": JobRunState.STARTING}
    return await _operate(actor, job_id, "backupJobRetry", _refuse_retry, changes)


async def enable(actor: Actor, job_id: int) -> BackupJob:
    """Idempotent: enabling an enabled job changes nothing (and is still audited)."""
    return await _operate(actor, job_id, "backupJobEnable", lambda job: None, {"enabled": True})


async def disable(actor: Actor, job_id: int) -> BackupJob:
    """Idempotent. A running job finishes its run; the schedule no longer starts it."""
    return await _operate(actor, job_id, "backupJobDisable", lambda job: None, {"enabled": False})


async def update(
    actor: Actor, job_id: int, name: str | None = None, schedule: str | None = None
) -> BackupJob:
    job = await _job_for(actor.p, job_id, Action.UPDATE, settings=True)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = job_name(name)
    if schedule is not None:
        changes["schedule"] = cron_schedule(schedule, "input.schedule")
    company_id = job.company_id  # type: ignore[attr-defined]
    async with audited(actor, "backupJobUpdate", "BackupJob", job.id, company_id) as entry:
        entry.details.update(_details(job), **changes)
        if changes:
            await BackupJob.filter(id=job.id).update(**changes)
    return await BackupJob.get(id=job.id)


async def create(
    actor: Actor, computer_id: int, name: str, schedule: str = "", enabled: bool = True
) -> BackupJob:
    """An agent job for a managed computer. Created by staff acting for the company (the
    caller's organization is not the computer's company), it is assigned by the provider."""
    p = actor.p
    computer = await computer_in_scope(p, computer_id)
    company_id = computer.company_id  # type: ignore[attr-defined]
    assigned = company_id != p.organization_id
    cap = backup_job(BackupJobKind.AGENT, assigned, settings=True)
    require(
        p,
        cap,
        Action.CREATE,
        Target(kind="backup_job", organization_id=company_id, organization_kind=OrgKind.COMPANY),
    )
    name = job_name(name)
    schedule = cron_schedule(schedule, "input.schedule")
    async with audited(actor, "backupJobCreate", "BackupJob", organization_id=company_id) as entry:
        job = await BackupJob.create(
            company_id=company_id,
            location_id=computer.location_id,  # type: ignore[attr-defined]
            uid=f"console-{uuid.uuid4().hex}",
            name=name,
            kind=BackupJobKind.AGENT,
            functionality=functionality_for(BackupJobKind.AGENT, assigned),
            computer=computer,
            assigned_by_provider=assigned,
            schedule=schedule,
            enabled=enabled,
        )
        entry.bind(job.id, computer=computer.hostname, schedule=schedule, **_details(job))
    return job


async def delete(actor: Actor, job_id: int) -> BackupJob:
    job = await _job_for(actor.p, job_id, Action.DELETE, settings=True)
    company_id = job.company_id  # type: ignore[attr-defined]
    async with audited(actor, "backupJobDelete", "BackupJob", job.id, company_id) as entry:
        entry.details.update(_details(job))
        if job.run_state is not JobRunState.IDLE:
            raise Conflict(f"the job is {_state(job)}: stop it before deleting it")
        deleted = await BackupJob.filter(id=job.id, run_state=JobRunState.IDLE).delete()
        if not deleted:
            raise Conflict("the job changed meanwhile: reload it and try again")
    return job
