"""GraphQL for failover plan runs: start, test, undo, retry and cancel; the sessions with their
steps and log (loaders: one query per level for a page of sessions); live progress with
`failoverSessionUpdated(id)`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

import strawberry
from strawberry.dataloader import DataLoader
from tortoise.functions import Count

from app.authz.capabilities import FAILOVER_SESSIONS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import first_ids_per_parent
from app.graphql.common import Node, actor, principal, register_node, viewer_can
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.loaders import Loaders
from app.graphql.pagination import (
    Connection,
    Edge,
    PageInfo,
    decode_cursor,
    encode_cursor,
    page_size,
    paginate,
)
from app.graphql.permissions import guard
from app.models.cloud import VmReplica
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
from app.models.tenancy import OrgKind
from app.services import events, failover_runs
from app.services.failover_progress import session_channel
from app.services.guards import require

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

# Without any event for this long, a followed session is read again.
QUIET_RECHECK_SECONDS = 15.0


def gid(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(to_global_id(type_name, pk))


# --- loaders ---------------------------------------------------------------------------------

LogKey = tuple[int, int, int | None]  # (session id, page size, after id)


class SessionLoaders:
    def __init__(self) -> None:
        self.steps: DataLoader[int, list[FailoverStep]] = DataLoader(self._steps)
        self.log: DataLoader[LogKey, list[FailoverLogEntry]] = DataLoader(self._log)
        self.log_count: DataLoader[int, int] = DataLoader(self._log_count)
        self.replica_names: dict[int, str] = {}

    async def _steps(self, session_ids: Sequence[int]) -> list[list[FailoverStep]]:
        grouped: dict[int, list[FailoverStep]] = defaultdict(list)
        rows = await FailoverStep.filter(session_id__in=list(session_ids)).order_by(
            "session_id", "seq"
        )
        for step in rows:
            grouped[step.session_id].append(step)  # type: ignore[attr-defined]
        wanted = {s.replica_id for s in rows if s.replica_id} - set(self.replica_names)
        if wanted:
            names = await VmReplica.filter(id__in=list(wanted)).values_list("id", "name")
            self.replica_names.update({int(pk): str(name) for pk, name in names})
        return [grouped.get(pk, []) for pk in session_ids]

    async def _log(self, keys: Sequence[LogKey]) -> list[list[FailoverLogEntry]]:
        # First pages of the page's sessions in one windowed statement (a 1,000-VM run logs
        # thousands of lines: never load them all); later pages are asked one at a time.
        firsts = [k for k in keys if k[2] is None]
        ids: dict[int, list[int]] = {}
        if firsts:
            size = max(k[1] for k in firsts) + 1
            ids = await first_ids_per_parent(
                FailoverLogEntry, "session_id", "id", [k[0] for k in firsts], size, descending=False
            )
        wanted = [pk for found in ids.values() for pk in found]
        rows = {r.id: r for r in await FailoverLogEntry.filter(id__in=wanted)} if wanted else {}
        out = []
        for session_id, size, after in keys:
            if after is None:
                out.append([rows[pk] for pk in ids.get(session_id, [])][: size + 1])
            else:
                out.append(
                    await FailoverLogEntry.filter(session_id=session_id, id__gt=after)
                    .order_by("id")
                    .limit(size + 1)
                )
        return out

    async def _log_count(self, session_ids: Sequence[int]) -> list[int]:
        counts = dict(
            await FailoverLogEntry.filter(session_id__in=list(session_ids))
            .annotate(n=Count("id"))
            .group_by("session_id")
            .values_list("session_id", "n")
        )
        return [int(counts.get(pk, 0)) for pk in session_ids]


_LOADERS: WeakKeyDictionary[Loaders, SessionLoaders] = WeakKeyDictionary()


def loaders(info: Info) -> SessionLoaders:
    found = _LOADERS.get(info.context.loaders)
    if found is None:
        found = _LOADERS[info.context.loaders] = SessionLoaders()
    return found


# --- types -----------------------------------------------------------------------------------


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
        target = Target(
            kind=FAILOVER_SESSIONS.kind,
            organization_id=self._row.company_id,
            organization_kind=OrgKind.COMPANY,
        )
        return self._row.state is FailoverSessionState.RUNNING and viewer_can(
            info, FAILOVER_SESSIONS, Action.UPDATE, target
        )


async def _session(p: Principal, pk: int) -> FailoverSessionType:
    return FailoverSessionType.from_row(await failover_runs.session_in_scope(p, pk))


register_node("FailoverSession", FAILOVER_SESSIONS, _session)


# --- queries and mutations -------------------------------------------------------------------


@strawberry.input
class FailoverSessionFilter:
    plan_id: strawberry.ID | None = None
    state: SessionStateEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class FailoverPlanRunInput:
    plan_id: strawberry.ID
    point_choice: PointChoiceEnum = PointChoice.LATEST  # type: ignore[valid-type]
    point_in_time: datetime | None = strawberry.field(
        default=None, description="With BEFORE: the closest restore point at or before it."
    )


@strawberry.type
class FailoverSessionQuery:
    @strawberry.field(extensions=guard(FAILOVER_SESSIONS, Action.READ), description="Newest first.")
    async def failover_sessions(
        self,
        info: Info,
        filter: FailoverSessionFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[FailoverSessionType] | None:
        query = FailoverSession.filter(failover_runs.session_q(principal(info)))
        if filter is not None:
            if filter.plan_id:
                query = query.filter(plan_id=pk_of(filter.plan_id, "FailoverPlan", "filter.planId"))
            if filter.state:
                query = query.filter(state=filter.state)
        return await paginate(query, first, after, FailoverSessionType.from_row, descending=True)

    @strawberry.field(extensions=guard(FAILOVER_SESSIONS, Action.READ))
    async def failover_session(self, info: Info, id: strawberry.ID) -> FailoverSessionType | None:
        return await _session(principal(info), pk_of(id, "FailoverSession"))


async def _run(info: Info, input: FailoverPlanRunInput, kind: SessionKind) -> FailoverSessionType:
    session = await failover_runs.start(
        actor(info),
        pk_of(input.plan_id, "FailoverPlan", "input.planId"),
        kind,
        PointChoice(input.point_choice),
        input.point_in_time,
    )
    return FailoverSessionType.from_row(session)


@strawberry.type
class FailoverSessionMutation:
    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.CREATE),
        description="Fails the plan over (READY → IN_PROGRESS): its VMs powered on in order "
        "from the chosen restore points, then the network appliance and public IPs.",
    )
    async def failover_plan_start(
        self, info: Info, input: FailoverPlanRunInput
    ) -> FailoverSessionType:
        return await _run(info, input, SessionKind.FAILOVER)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.CREATE),
        description="Tests the plan (READY → TEST_IN_PROGRESS → READY): VMs booted in "
        "isolation, checked, powered off; the recovery time is measured.",
    )
    async def failover_plan_test(
        self, info: Info, input: FailoverPlanRunInput
    ) -> FailoverSessionType:
        return await _run(info, input, SessionKind.TEST)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.CREATE),
        description="Runs a FAILED plan's failover again; the VMs already up are kept.",
    )
    async def failover_plan_retry(
        self, info: Info, input: FailoverPlanRunInput
    ) -> FailoverSessionType:
        return await _run(info, input, SessionKind.RETRY)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.CREATE),
        description="Fails back a COMPLETED or FAILED plan: its replicas powered off and "
        "returned to READY, the plan READY.",
    )
    async def failover_plan_undo(self, info: Info, plan_id: strawberry.ID) -> FailoverSessionType:
        session = await failover_runs.start(
            actor(info), pk_of(plan_id, "FailoverPlan", "planId"), SessionKind.UNDO
        )
        return FailoverSessionType.from_row(session)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SESSIONS, Action.UPDATE),
        description="Stops a running session at its next step boundary: a failover leaves "
        "the VMs up running and the plan FAILED; a test powers off what it booted (READY); "
        "an undo leaves the plan COMPLETED.",
    )
    async def failover_session_cancel(self, info: Info, id: strawberry.ID) -> FailoverSessionType:
        session = await failover_runs.cancel(actor(info), pk_of(id, "FailoverSession"))
        return FailoverSessionType.from_row(session)


# --- live progress ---------------------------------------------------------------------------


async def _snapshot(row: FailoverSession) -> tuple[Any, ...]:
    last_log = (
        await FailoverLogEntry.filter(session_id=row.id)
        .order_by("-id")
        .limit(1)
        .values_list("id", flat=True)
    )
    return (row.state, row.vms_up, row.vms_failed, row.finished_at, tuple(last_log))


async def follow(p: Principal, pk: int) -> AsyncIterator[FailoverSessionType]:
    """The session now, then after each step, until it has ended (re-read in scope)."""
    async with events.subscribe(session_channel(pk)) as subscription:
        row = await failover_runs.session_in_scope(p, pk)
        yield FailoverSessionType.from_row(row)
        seen = await _snapshot(row)
        while row.state is FailoverSessionState.RUNNING:
            await subscription.next(within=QUIET_RECHECK_SECONDS)
            row = await failover_runs.session_in_scope(p, pk)
            now = await _snapshot(row)
            if now == seen:
                continue
            seen = now
            yield FailoverSessionType.from_row(row)


@strawberry.type
class FailoverSessionSubscription:
    @strawberry.subscription(
        description="The session now, then after each step; completes once it has ended. "
        "NOT_FOUND outside your scope."
    )
    async def failover_session_updated(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[FailoverSessionType, None]:  # type: ignore[misc]
        # Checked before the stream starts, so a refusal is the protocol's `error` message.
        p = principal(info)
        pk = pk_of(id, "FailoverSession")
        if not info.context.bypass_authorization:
            require(p, FAILOVER_SESSIONS, Action.READ)
        await failover_runs.session_in_scope(p, pk)
        return follow(p, pk)  # type: ignore[return-value]
