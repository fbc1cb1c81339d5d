"""Running failover plans: start a failover, a test, an undo or a retry, cancel a run, and end
the runs of a disabled company or tenant account. The worker side (the steps, one at a time)
is app/services/failover_executor.py.

Transitions (anything else is CONFLICT, naming the plan's state):

    FAILOVER  READY              → IN_PROGRESS       → COMPLETED | FAILED
    TEST      READY              → TEST_IN_PROGRESS  → READY (with the measured recovery time)
    UNDO      COMPLETED | FAILED → UNDO_IN_PROGRESS  → READY | FAILED
    RETRY     FAILED             → IN_PROGRESS       → COMPLETED | FAILED (VMs already up kept)

One action at a time per plan, decided by the database: a single conditional UPDATE of the
plan's state (and current session) wins or loses; the session, its steps (all planned upfront)
and its job are written in the same transaction, so two concurrent starts make one run.

Cancellation is cooperative, at the next step boundary (a step already started is finished):
- a cancelled FAILOVER or RETRY leaves the VMs that are up running and the plan FAILED (retry
  or undo possible);
- a cancelled TEST powers off what it booted and leaves the plan READY;
- a cancelled UNDO leaves the plan COMPLETED (undo can be run again).
A run whose job had not started yet ends at once in the same state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import Q

from app.authz.capabilities import FAILOVER_SESSIONS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import BadInput, Conflict, NotFound
from app.models.cloud import (
    PublicIpAllocation,
    ReplicaState,
    TenantAccount,
    TenantAccountType,
    VmReplica,
)
from app.models.failover import (
    FailoverLogEntry,
    FailoverPlan,
    FailoverPlanVm,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    PlanState,
    PlanType,
    PointChoice,
    SessionKind,
    StepKind,
    StepState,
)
from app.models.jobs import Job, JobState
from app.models.tenancy import Organization
from app.services import events, jobs
from app.services.actor import Actor
from app.services.audit import audited
from app.services.failover_plans import plan_in_scope, plan_q, plan_target
from app.services.failover_progress import finish, session_channel
from app.services.failover_readiness import readiness
from app.services.failover_steps import select_point
from app.services.guards import require

RUN_KIND = "failover.run"

# kind → (states it starts from, the state while it runs)
STARTS: dict[SessionKind, tuple[frozenset[PlanState], PlanState]] = {
    SessionKind.FAILOVER: (frozenset({PlanState.READY}), PlanState.IN_PROGRESS),
    SessionKind.TEST: (frozenset({PlanState.READY}), PlanState.TEST_IN_PROGRESS),
    SessionKind.UNDO: (
        frozenset({PlanState.COMPLETED, PlanState.FAILED}),
        PlanState.UNDO_IN_PROGRESS,
    ),
    SessionKind.RETRY: (frozenset({PlanState.FAILED}), PlanState.IN_PROGRESS),
}
ACTIONS = {
    SessionKind.FAILOVER: "failoverPlanStart",
    SessionKind.TEST: "failoverPlanTest",
    SessionKind.UNDO: "failoverPlanUndo",
    SessionKind.RETRY: "failoverPlanRetry",
}


def session_q(p: Principal) -> Q:
    """Sessions of the plans in scope."""
    return plan_q(p, "plan")


async def session_in_scope(p: Principal, pk: int, field: str = "id") -> FailoverSession:
    row = await FailoverSession.filter(session_q(p), id=pk).first()
    if row is None:
        raise NotFound("failover session", field=field)
    return row


# --- restore points --------------------------------------------------------------------------


def _point_in_time(choice: PointChoice, at: datetime | None) -> datetime | None:
    if choice is PointChoice.LATEST:
        return None
    if at is None:
        raise BadInput("a point in time is required", field="input.pointInTime")
    if at.tzinfo is None:
        raise BadInput("the point in time needs a time zone", field="input.pointInTime")
    return at.astimezone(UTC)


# --- retry -----------------------------------------------------------------------------------


async def _up_replicas(plan: FailoverPlan) -> set[int]:
    """Replicas up since the plan's last failover: failed over and healthy in it or a retry."""
    last = (
        await FailoverSession.filter(plan_id=plan.id, kind=SessionKind.FAILOVER)
        .order_by("-id")
        .first()
    )
    if last is None:
        return set()
    healthy = await FailoverStep.filter(
        session__plan_id=plan.id,
        session_id__gte=last.id,
        session__kind__in=[SessionKind.FAILOVER, SessionKind.RETRY],
        kind=StepKind.WAIT_HEALTHY,
        state=StepState.DONE,
    ).values_list("replica_id", flat=True)
    failed_over = await VmReplica.filter(
        id__in=list(healthy), state=ReplicaState.FAILOVER
    ).values_list("id", flat=True)
    return {int(pk) for pk in failed_over}  # type: ignore[call-overload]


# --- planning --------------------------------------------------------------------------------


async def _has_public_ips(plan: FailoverPlan) -> bool:
    if plan.type is not PlanType.CLOUD or plan.tenant_account_id is None:  # type: ignore[attr-defined]
        return False
    return await PublicIpAllocation.filter(
        tenant_account_id=plan.tenant_account_id,  # type: ignore[attr-defined]
        tenant_account__type=TenantAccountType.STANDALONE,
    ).exists()


def _boot_steps(vms: list[FailoverPlanVm]) -> list[tuple[StepKind, int | None]]:
    planned: list[tuple[StepKind, int | None]] = []
    for i, vm in enumerate(vms):
        rid = vm.replica_id  # type: ignore[attr-defined]
        planned += [(StepKind.SELECT_POINT, rid), (StepKind.POWER_ON, rid)]
        planned.append((StepKind.WAIT_HEALTHY, rid))
        if vm.delay_seconds > 0 and i < len(vms) - 1:
            planned.append((StepKind.DELAY, rid))
    return planned


async def plan_steps(
    plan: FailoverPlan, kind: SessionKind, vms: list[FailoverPlanVm], kept: set[int]
) -> list[tuple[StepKind, int | None]]:
    """The session's steps, in order: (kind, replica id or None)."""
    if kind is SessionKind.UNDO:
        back = [v for v in reversed(vms) if v.replica.state is not ReplicaState.READY]
        return [
            (k, v.replica_id)  # type: ignore[attr-defined]
            for v in back
            for k in (StepKind.POWER_OFF, StepKind.RELEASE)
        ]
    if kind is SessionKind.TEST:
        off = [(StepKind.POWER_OFF, v.replica_id) for v in vms]  # type: ignore[attr-defined]
        return [*_boot_steps(vms), *off]
    planned: list[tuple[StepKind, int | None]] = []
    if plan.pre_failover_script:
        planned.append((StepKind.PRE_SCRIPT, None))
    planned += _boot_steps([v for v in vms if v.replica_id not in kept])  # type: ignore[attr-defined]
    if await _has_public_ips(plan):
        planned += [(StepKind.NETWORK_APPLIANCE, None), (StepKind.MAP_PUBLIC_IPS, None)]
    if plan.post_failover_script:
        planned.append((StepKind.POST_SCRIPT, None))
    return planned


# --- start -----------------------------------------------------------------------------------


async def _check_company(plan: FailoverPlan) -> None:
    company = await Organization.get(id=plan.company_id)  # type: ignore[attr-defined]
    if not company.enabled:
        raise Conflict("the plan's company is disabled")
    account_id = plan.tenant_account_id  # type: ignore[attr-defined]
    if account_id is not None:
        account = await TenantAccount.get_or_none(id=account_id)
        if account is not None and not account.enabled:
            raise Conflict("the plan's tenant account is disabled")


async def start(
    actor: Actor,
    plan_id: int,
    kind: SessionKind,
    point_choice: PointChoice = PointChoice.LATEST,
    point_in_time: datetime | None = None,
) -> FailoverSession:
    p = actor.p
    plan = await plan_in_scope(p, plan_id, "input.planId")
    require(p, FAILOVER_SESSIONS, Action.CREATE, plan_target(plan, FAILOVER_SESSIONS.kind))
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    sources, running = STARTS[kind]
    async with audited(actor, ACTIONS[kind], "FailoverPlan", plan.id, company_id) as entry:
        entry.details.update(kind=kind.value, before=plan.state.value)
        if plan.state not in sources:
            raise Conflict(
                f"the plan is {plan.state.value}: a {kind.value.lower()} starts from"
                f" {' or '.join(sorted(s.value for s in sources))}"
            )
        if kind in (SessionKind.FAILOVER, SessionKind.TEST):
            reasons = await readiness(plan)
            if reasons:
                raise Conflict("the plan is not ready: " + "; ".join(reasons), reasons=reasons)
        elif kind is SessionKind.RETRY:  # its replicas are partly failed over already
            await _check_company(plan)
        at = _point_in_time(point_choice, point_in_time) if kind is not SessionKind.UNDO else None
        vms = await FailoverPlanVm.filter(plan_id=plan.id).select_related("replica")
        vms.sort(key=lambda v: v.position)
        if kind in (SessionKind.FAILOVER, SessionKind.TEST, SessionKind.RETRY):
            for v in vms:
                if select_point(v.replica.restore_points, point_choice, at) is None:
                    raise BadInput(
                        f"{v.replica.name} has no restore point before {at.isoformat() if at else ''}",
                        field="input.pointInTime",
                    )
        kept = await _up_replicas(plan) if kind is SessionKind.RETRY else set()
        planned = await plan_steps(plan, kind, vms, kept)
        # The decision: whoever moves the state first runs; the other one changes nothing.
        moved = await FailoverPlan.filter(
            id=plan.id, state=plan.state, current_session_id=plan.current_session_id
        ).update(state=running)
        if not moved:
            now_state = await FailoverPlan.filter(id=plan.id).values_list("state", flat=True)
            raise Conflict(
                f"the plan is {now_state[0] if now_state else 'gone'}: another action started first"
            )
        session = await FailoverSession.create(
            plan=plan,
            company_id=company_id,
            kind=kind,
            point_choice=point_choice,
            point_in_time=at,
            requested_by_id=p.user_id,
            vms_total=len(vms) if kind is not SessionKind.UNDO else len(planned) // 2,
            vms_up=len(kept),
        )
        await FailoverStep.bulk_create(
            [
                FailoverStep(
                    session_id=session.id,
                    seq=seq,
                    kind=step_kind,
                    replica_id=replica_id,
                    idempotency_key=f"failover:{session.id}:{seq}",
                )
                for seq, (step_kind, replica_id) in enumerate(planned, start=1)
            ],
            batch_size=500,
        )
        company = await Organization.get(id=company_id)
        job, _ = await jobs.create(actor, RUN_KIND, company, {"session_id": session.id}, send=False)
        session.job = job
        await session.save(update_fields=["job_id"])
        await FailoverPlan.filter(id=plan.id).update(current_session_id=session.id)
        choice = (
            f"the closest restore point before {at.isoformat()}"
            if at is not None
            else "the latest restore point"
        )
        await FailoverLogEntry.create(
            session=session,
            message=f"{kind.value.lower()} requested by {p.email or 'the system'}"
            + (f", {choice}" if kind is not SessionKind.UNDO else "")
            + f"; {len(planned)} steps"
            + (f", {len(kept)} VM(s) already up kept" if kept else ""),
        )
        entry.details.update(session=session.id, job=job.id, steps=len(planned))
        if kind is not SessionKind.UNDO:
            entry.details.update(pointChoice=point_choice.value)
    await jobs.dispatch(job.id)
    await _publish(session)
    return session


async def _publish(session: FailoverSession) -> None:
    await events.publish(session_channel(session.id), {"id": session.id})


# --- cancel and terminate --------------------------------------------------------------------


async def _stop(actor: Actor | None, session: FailoverSession, reason: str) -> str:
    """Ask the session's run to stop (inside the caller's transaction). Returns what happened:
    "ended" (its job had not started or is gone: the session ended here) or "requested"."""
    job = await Job.get_or_none(id=session.job_id) if session.job_id else None  # type: ignore[attr-defined]
    await FailoverLogEntry.create(session=session, level="WARN", message=f"cancel: {reason}")
    if job is not None and job.state is JobState.RUNNING:
        await Job.filter(id=job.id, state=JobState.RUNNING).update(cancel_requested=True)
        return "requested"
    if job is not None and job.state is JobState.QUEUED:
        queued = await Job.filter(id=job.id, state=JobState.QUEUED).update(
            state=JobState.CANCELLED, cancel_requested=True, finished_at=jobs.now()
        )
        if not queued:  # claimed meanwhile: the worker stops at its next step
            await Job.filter(id=job.id).update(cancel_requested=True)
            return "requested"
    # Not started, or its job ended without ending the session: nothing else will.
    await finish(session.id, FailoverSessionState.CANCELLED, reason)
    return "ended"


async def cancel(actor: Actor, session_id: int) -> FailoverSession:
    p = actor.p
    session = await session_in_scope(p, session_id)
    plan = await FailoverPlan.get(id=session.plan_id)  # type: ignore[attr-defined]
    require(p, FAILOVER_SESSIONS, Action.UPDATE, plan_target(plan, FAILOVER_SESSIONS.kind))
    async with audited(
        actor, "failoverSessionCancel", "FailoverSession", session.id, session.company_id
    ) as entry:
        entry.details.update(plan=plan.id, kind=session.kind.value)
        if session.state is not FailoverSessionState.RUNNING:
            raise Conflict(f"the session is already {session.state.value}")
        entry.details["outcome"] = await _stop(actor, session, f"by {p.email}")
    await _publish(session)
    if entry.details["outcome"] == "requested":  # a run waiting for a boot hears it now
        await jobs.wake_now(session.job_id)  # type: ignore[attr-defined]
    return await FailoverSession.get(id=session.id)


async def terminate(
    reason: str,
    company_ids: list[int] | None = None,
    tenant_account_id: int | None = None,
) -> dict[str, Any]:
    """End the running failover work of companies (disabled) or of a tenant account's plans
    (disabled). Inside the caller's transaction and audit entry: returns what to record."""
    query = FailoverSession.filter(state=FailoverSessionState.RUNNING)
    if company_ids is not None:
        query = query.filter(company_id__in=company_ids)
    if tenant_account_id is not None:
        query = query.filter(plan__tenant_account_id=tenant_account_id)
    ended: list[int] = []
    for session in await query.order_by("id"):
        await _stop(None, session, reason)
        ended.append(session.id)
    return {"failoverSessionsCancelled": ended} if ended else {}
