"""GraphQL types of failover plan runs: the session, its steps and its log (read through
session_loaders)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import FAILOVER_SESSIONS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import Node, register_node, viewer_can
from app.graphql.context import Context
from app.graphql.failover.session_loaders import loaders
from app.graphql.failover.types import gid
from app.graphql.pagination import (
    Connection,
    Edge,
    PageInfo,
    decode_cursor,
    encode_cursor,
    page_size,
)
from app.models.failover import (
    FailoverLogEntry,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    PointChoice,
    SessionKind,
    StepKind,
    StepState,
)
from app.services import failover_runs
from app.services.failover_plans import company_target

Info = strawberry.Info[Context, Any]

SessionKindEnum = strawberry.enum(
    SessionKind,
    name="FailoverSessionKind",
    description="FAILOVER, TEST (isolated, powered off again), UNDO (fail back), RETRY (a "
    "failed failover again, VMs already up kept).",
)
SessionStateEnum = strawberry.enum(FailoverSessionState, name="FailoverSessionState")
PointChoiceEnum = strawberry.enum(
    PointChoice,
    name="FailoverPointChoice",
    description="LATEST restore point, or the closest one at or BEFORE `pointInTime`.",
)
StepKindEnum = strawberry.enum(StepKind, name="FailoverStepKind")
StepStateEnum = strawberry.enum(StepState, name="FailoverStepState")


@strawberry.type(name="FailoverStep", description="One persisted step of a session.")
class FailoverStepType:
    seq: int
    kind: StepKindEnum  # type: ignore[valid-type]
    state: StepStateEnum  # type: ignore[valid-type]
    replica_id: strawberry.ID | None
    vm_name: str | None = strawberry.field(description="The replica's name (VM steps).")
    attempts: int
    message: str
    restore_point: datetime | None = strawberry.field(
        description="SELECT_POINT: the restore point chosen."
    )
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: FailoverStep, names: dict[int, str]) -> FailoverStepType:
        point = (row.output or {}).get("restorePoint")
        return cls(
            seq=row.seq,
            kind=row.kind,
            state=row.state,
            replica_id=gid("VmReplica", row.replica_id) if row.replica_id else None,
            vm_name=names.get(row.replica_id) if row.replica_id else None,
            attempts=row.attempts,
            message=row.message,
            restore_point=datetime.fromisoformat(point) if point else None,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


@strawberry.type(name="FailoverLogEntry")
class FailoverLogEntryType:
    id: strawberry.ID
    at: datetime
    level: str = strawberry.field(description="INFO, WARN or ERROR.")
    step_seq: int | None
    message: str

    @classmethod
    def from_row(cls, row: FailoverLogEntry) -> FailoverLogEntryType:
        return cls(
            id=gid("FailoverLogEntry", row.id),
            at=row.at,
            level=row.level,
            step_seq=row.step_seq,
            message=row.message,
        )


@strawberry.type(name="FailoverSession")
class FailoverSessionType(Node):
    _row: strawberry.Private[FailoverSession]
    id: strawberry.ID
    plan_id: strawberry.ID
    company_id: strawberry.ID
    kind: SessionKindEnum  # type: ignore[valid-type]
    state: SessionStateEnum  # type: ignore[valid-type]
    point_choice: PointChoiceEnum  # type: ignore[valid-type]
    point_in_time: datetime | None
    job_id: strawberry.ID | None
    vms_total: int
    vms_up: int = strawberry.field(
        description="VMs through: up and healthy (failover, test, retry: kept VMs included), "
        "or failed back (undo)."
    )
    vms_failed: int
    recovery_seconds: float | None = strawberry.field(
        description="From the start to the last VM healthy."
    )
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: FailoverSession) -> FailoverSessionType:
        job = row.job_id  # type: ignore[attr-defined]
        return cls(
            _row=row,
            id=gid("FailoverSession", row.id),
            plan_id=gid("FailoverPlan", row.plan_id),  # type: ignore[attr-defined]
            company_id=gid("Company", row.company_id),
            kind=row.kind,
            state=row.state,
            point_choice=row.point_choice,
            point_in_time=row.point_in_time,
            job_id=gid("Job", job) if job else None,
            vms_total=row.vms_total,
            vms_up=row.vms_up,
            vms_failed=row.vms_failed,
            recovery_seconds=row.recovery_seconds,
            error=row.error,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )

    @strawberry.field(description="Every step, in order.")
    async def steps(self, info: Info) -> list[FailoverStepType]:
        found = loaders(info)
        rows = await found.steps.load(self._row.id)
        return [FailoverStepType.from_row(r, found.replica_names) for r in rows]

    @strawberry.field(description="The session log, oldest first.")
    async def log(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[FailoverLogEntryType]:
        size = page_size(first)
        after_id = decode_cursor(after) if after else None
        rows = await loaders(info).log.load((self._row.id, size, after_id))
        edges = [
            Edge(cursor=encode_cursor(r.id), node=FailoverLogEntryType.from_row(r))
            for r in rows[:size]
        ]
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > size, end_cursor=edges[-1].cursor if edges else None
            ),
            _count=lambda: loaders(info).log_count.load(self._row.id),
        )

    @strawberry.field(description="True while running and you may cancel it.")
    def viewer_can_cancel(self, info: Info) -> bool:
        target = company_target(self._row.company_id, FAILOVER_SESSIONS.kind)
        return self._row.state is FailoverSessionState.RUNNING and viewer_can(
            info, FAILOVER_SESSIONS, Action.UPDATE, target
        )


async def session_node(p: Principal, pk: int) -> FailoverSessionType:
    return FailoverSessionType.from_row(await failover_runs.session_in_scope(p, pk))


register_node("FailoverSession", FAILOVER_SESSIONS, session_node)
