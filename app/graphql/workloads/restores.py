"""GraphQL for file-level restores: requests in scope, requesting one and cancelling it
(app.services.file_restore). The restore runs as a background job; its progress is the
request's state and counters (and the job's, through `jobId`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import FILE_RESTORES, MANAGED_COMPUTERS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import Node, actor, principal, register_node, viewer_allows
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.workloads.types import Long, ManagedComputerType, gid
from app.models import FileRestoreRequest, RestoreState
from app.services import file_restore

Info = strawberry.Info[Context, Any]

RestoreStateEnum = strawberry.enum(RestoreState, name="FileRestoreState")


@strawberry.type(
    name="FileRestoreRequest",
    description="Files or folders of a managed computer restored from one of its restore "
    "points: REQUESTED → IN_PROGRESS → COMPLETED | FAILED, or CANCELLED before it ends.",
)
class FileRestoreRequestType(Node):
    id: strawberry.ID
    company_id: strawberry.ID
    computer_id: strawberry.ID
    restore_point_id: strawberry.ID | None = strawberry.field(
        description="Null when the restore point has since been removed."
    )
    paths: list[str]
    destination: str
    overwrite: bool
    state: RestoreStateEnum  # type: ignore[valid-type]
    job_id: strawberry.ID | None = strawberry.field(description="The background job doing it.")
    restored_files: int
    restored_bytes: Long  # type: ignore[valid-type]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    _row: strawberry.Private[FileRestoreRequest]

    @classmethod
    def from_row(cls, row: FileRestoreRequest) -> FileRestoreRequestType:
        return cls(
            id=strawberry.ID(to_global_id("FileRestoreRequest", row.id)),
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            computer_id=strawberry.ID(to_global_id("ManagedComputer", row.computer_id)),  # type: ignore[attr-defined]
            restore_point_id=gid("RestorePoint", row.restore_point_id),  # type: ignore[attr-defined]
            paths=[str(p) for p in row.paths or []],
            destination=row.destination,
            overwrite=row.overwrite,
            state=row.state,
            job_id=gid("Job", row.job_id),  # type: ignore[attr-defined]
            restored_files=row.restored_files,
            restored_bytes=row.restored_bytes,
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            _row=row,
        )

    @strawberry.field(description="True while it may still be cancelled and you may do so.")
    def viewer_can_cancel(self, info: Info) -> bool:
        # Rows are already the viewer's (row scope narrows a Subtenant to their computers).
        return self._row.state in file_restore.OPEN and viewer_allows(
            info, FILE_RESTORES, Action.UPDATE
        )

    @strawberry.field(description="The computer; null when you may not read managed computers.")
    async def computer(self, info: Info) -> ManagedComputerType | None:
        if not viewer_allows(info, MANAGED_COMPUTERS, Action.READ):
            return None
        row = await info.context.loaders.workloads.computer.load(self._row.computer_id)  # type: ignore[attr-defined]
        return ManagedComputerType.from_row(row) if row is not None else None


@strawberry.input
class FileRestoreFilter:
    computer_id: strawberry.ID | None = None
    state: RestoreStateEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class FileRestoreRequestInput:
    computer_id: strawberry.ID
    restore_point_id: strawberry.ID | None = strawberry.field(
        default=None, description="One of the computer's restore points; default: the latest."
    )
    paths: list[str] = strawberry.field(description="1 to 100 absolute paths.")
    destination: str = strawberry.field(description="An absolute path on the computer.")
    overwrite: bool = False


async def _restore(p: Principal, pk: int) -> FileRestoreRequestType:
    return FileRestoreRequestType.from_row(await file_restore.restore_in_scope(p, pk))


register_node("FileRestoreRequest", FILE_RESTORES, _restore)


@strawberry.type
class FileRestoreQuery:
    @strawberry.field(extensions=guard(FILE_RESTORES, Action.READ))
    async def file_restores(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: FileRestoreFilter | None = None,
    ) -> Connection[FileRestoreRequestType] | None:
        query = FileRestoreRequest.filter(file_restore.restore_q(principal(info)))
        if filter is not None:
            if filter.computer_id:
                query = query.filter(
                    computer_id=pk_of(filter.computer_id, "ManagedComputer", "filter.computerId")
                )
            if filter.state is not None:
                query = query.filter(state=RestoreState(filter.state))
        return await paginate(query, first, after, FileRestoreRequestType.from_row, descending=True)

    @strawberry.field(extensions=guard(FILE_RESTORES, Action.READ))
    async def file_restore(self, info: Info, id: strawberry.ID) -> FileRestoreRequestType | None:
        return await _restore(principal(info), pk_of(id, "FileRestoreRequest"))


@strawberry.type
class FileRestoreMutation:
    @strawberry.mutation(
        extensions=guard(FILE_RESTORES, Action.CREATE),
        description="Requests a file-level restore; it runs as a background job.",
    )
    async def file_restore_request(
        self, info: Info, input: FileRestoreRequestInput
    ) -> FileRestoreRequestType:
        row = await file_restore.request(
            actor(info),
            pk_of(input.computer_id, "ManagedComputer", "input.computerId"),
            input.paths,
            input.destination,
            restore_point_id=(
                pk_of(input.restore_point_id, "RestorePoint", "input.restorePointId")
                if input.restore_point_id
                else None
            ),
            overwrite=input.overwrite,
        )
        return FileRestoreRequestType.from_row(row)

    @strawberry.mutation(
        extensions=guard(FILE_RESTORES, Action.UPDATE),
        description="Cancels a requested or running restore (and its job). CONFLICT once it "
        "has ended.",
    )
    async def file_restore_cancel(self, info: Info, id: strawberry.ID) -> FileRestoreRequestType:
        row = await file_restore.cancel(actor(info), pk_of(id, "FileRestoreRequest"))
        return FileRestoreRequestType.from_row(row)
