"""GraphQL types of background jobs, and the per-request loader of who requested them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from app.authz import engine, scope
from app.authz.capabilities import USERS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import Node
from app.graphql.context import Context
from app.graphql.identity.types import UserOrganization, UserType
from app.graphql.ids import to_global_id
from app.jobs import registry
from app.models import Job, JobState, User
from app.models.jobs import FINISHED

Info = strawberry.Info[Context, Any]

JobStateType = strawberry.enum(JobState, name="JobState")


# Actions beyond reading that let a principal cancel a job of a functionality.
def can_cancel(p: Principal, job: Job) -> bool:
    """Cancelling a job changes the work of its functionality: UPDATE, not only READ."""
    return engine.allows_on_functionality(p, job.functionality, Action.UPDATE)


_LOADER_ATTR = "_job_requesters"


def requester_loader(info: Info) -> DataLoader[int, User | None]:
    """Users by id, within the viewer's user scope: a requester outside it reads as null."""
    loader = getattr(info.context, _LOADER_ATTR, None)
    if loader is None:
        p = info.context.require_principal()

        async def load(ids: Sequence[int]) -> list[User | None]:
            found = {u.id: u for u in await User.filter(scope.user_q(p), id__in=list(ids))}
            return [found.get(i) for i in ids]

        loader = DataLoader(load)
        setattr(info.context, _LOADER_ATTR, loader)
    return loader


def kind_label(kind: str) -> str:
    found = registry.KINDS.get(kind)
    return found.label if found is not None else kind


@strawberry.type(name="Job", description="Background work: its state, progress and outcome.")
class JobType(Node):
    _row: strawberry.Private[Job]
    id: strawberry.ID
    kind: str
    label: str
    state: JobStateType  # type: ignore[valid-type]
    progress_percent: int
    progress_message: str
    params: JSON
    result: JSON | None
    error: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool = strawberry.field(
        description="Cancellation was asked for; a running job stops at its next step."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None = strawberry.field(
        description="The last sign of life of the worker running the job; while a running job "
        "waits (a planned pause), the time it is due to resume."
    )

    @classmethod
    def from_row(cls, row: Job) -> JobType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("Job", row.id)),
            kind=row.kind,
            label=kind_label(row.kind),
            state=JobState(row.state),
            progress_percent=row.progress_percent,
            progress_message=row.progress_message,
            params=row.params,  # type: ignore[arg-type]
            result=row.result,  # type: ignore[arg-type]
            error=row.error,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            cancel_requested=row.cancel_requested,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            heartbeat_at=row.heartbeat_at,
        )

    @strawberry.field(description="The organization the job works for; null for platform jobs.")
    async def organization(self, info: Info) -> UserOrganization | None:
        org_id = self._row.organization_id  # type: ignore[attr-defined]
        if org_id is None:
            return None
        org = await info.context.loaders.organization.load(org_id)
        return UserOrganization.from_row(org) if org is not None else None

    @strawberry.field(
        description="Who started it; null for scheduled work or a user outside your scope."
    )
    async def requested_by(self, info: Info) -> UserType | None:
        user_id = self._row.requested_by_id  # type: ignore[attr-defined]
        if user_id is None:
            return None
        p = info.context.require_principal()
        if not info.context.bypass_authorization and not engine.allows(p, USERS, Action.READ):
            return None
        user = await requester_loader(info).load(user_id)
        return UserType.from_row(user) if user is not None else None

    @strawberry.field(description="True when you may cancel it now (`jobCancel`).")
    def viewer_can_cancel(self, info: Info) -> bool:
        if self._row.state in FINISHED:
            return False
        if info.context.bypass_authorization:
            return True
        return can_cancel(info.context.require_principal(), self._row)

    @strawberry.field(
        description="Where to GET the file a finished job produced (same bearer token), if any."
    )
    def download_url(self) -> str | None:
        if self._row.state is not JobState.SUCCEEDED or not (self._row.result or {}).get("path"):
            return None
        return f"/exports/{self.id}"
