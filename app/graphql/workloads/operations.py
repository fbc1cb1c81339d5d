"""Mutations that operate backup jobs from the console (app.services.backup_jobs).

Start, stop and retry leave a command for the backup server (delivered with the answer to its
next report); enable and disable switch the job's schedule on and off. Jobs are governed per
kind and per "assigned by the provider": the field guard passes when some kind allows the
action, and the service decides on the job itself (FORBIDDEN for its kind, NOT_FOUND outside
scope, CONFLICT for a transition its state does not allow)."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz import capabilities
from app.authz.matrix import Action
from app.graphql.common import actor
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.permissions import guard_any
from app.graphql.tenancy.mutations import DeletePayload
from app.graphql.workloads.types import BackupJobType
from app.services import backup_jobs

Info = strawberry.Info[Context, Any]

OPERATE = guard_any(capabilities.BACKUP_JOBS.values(), Action.UPDATE, "backup jobs")
SETTINGS = capabilities.BACKUP_JOB_SETTINGS.values()


@strawberry.input(description="Only the fields given change.")
class BackupJobUpdateInput:
    id: strawberry.ID
    name: str | None = None
    schedule: str | None = strawberry.field(
        default=None, description='Cron expression of five fields; "" for manual runs only.'
    )


@strawberry.input
class BackupJobCreateInput:
    computer_id: strawberry.ID = strawberry.field(description="The managed computer to protect.")
    name: str
    schedule: str = strawberry.field(default="", description='Cron of five fields, or "".')
    enabled: bool = True


def _id(id: strawberry.ID) -> int:
    return pk_of(id, "BackupJob")


@strawberry.type
class BackupJobOperationMutation:
    @strawberry.mutation(
        extensions=OPERATE,
        description="Asks the backup server to start the job (run state STARTING). CONFLICT "
        "when the job is disabled or not idle.",
    )
    async def backup_job_start(self, info: Info, id: strawberry.ID) -> BackupJobType:
        return BackupJobType.from_row(await backup_jobs.start(actor(info), _id(id)))

    @strawberry.mutation(
        extensions=OPERATE,
        description="Asks the backup server to stop the job (run state STOPPING). CONFLICT "
        "when it is idle or already stopping.",
    )
    async def backup_job_stop(self, info: Info, id: strawberry.ID) -> BackupJobType:
        return BackupJobType.from_row(await backup_jobs.stop(actor(info), _id(id)))

    @strawberry.mutation(
        extensions=OPERATE,
        description="Runs a failed job again. CONFLICT unless its last result is FAILED and "
        "it is enabled and idle.",
    )
    async def backup_job_retry(self, info: Info, id: strawberry.ID) -> BackupJobType:
        return BackupJobType.from_row(await backup_jobs.retry(actor(info), _id(id)))

    @strawberry.mutation(extensions=OPERATE, description="Switches the job's schedule on.")
    async def backup_job_enable(self, info: Info, id: strawberry.ID) -> BackupJobType:
        return BackupJobType.from_row(await backup_jobs.enable(actor(info), _id(id)))

    @strawberry.mutation(
        extensions=OPERATE,
        description="Switches the job's schedule off (a run in progress finishes).",
    )
    async def backup_job_disable(self, info: Info, id: strawberry.ID) -> BackupJobType:
        return BackupJobType.from_row(await backup_jobs.disable(actor(info), _id(id)))

    @strawberry.mutation(
        extensions=guard_any(SETTINGS, Action.UPDATE, "backup job settings"),
        description="Changes the job's name or schedule. A company reads, but does not change, "
        "the settings of the jobs its provider assigned.",
    )
    async def backup_job_update(self, info: Info, input: BackupJobUpdateInput) -> BackupJobType:
        row = await backup_jobs.update(
            actor(info), pk_of(input.id, "BackupJob", "input.id"), input.name, input.schedule
        )
        return BackupJobType.from_row(row)

    @strawberry.mutation(
        extensions=guard_any(SETTINGS, Action.CREATE, "backup job settings"),
        description="Creates an agent job for a managed computer. Created by staff for a "
        "company, the job is assigned by the provider.",
    )
    async def backup_job_create(self, info: Info, input: BackupJobCreateInput) -> BackupJobType:
        row = await backup_jobs.create(
            actor(info),
            pk_of(input.computer_id, "ManagedComputer", "input.computerId"),
            input.name,
            input.schedule,
            input.enabled,
        )
        return BackupJobType.from_row(row)

    @strawberry.mutation(
        extensions=guard_any(SETTINGS, Action.DELETE, "backup job settings"),
        description="Removes the job with its sessions. CONFLICT while it runs.",
    )
    async def backup_job_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await backup_jobs.delete(actor(info), _id(id))
        return DeletePayload(deleted_id=id)
