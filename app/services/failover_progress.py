"""What a failover run writes as it goes (the `failover.run` job, failover_executor): each
step's outcome (`commit_step`: the step, the session's counters, the replica's state and the
log line in one transaction), the session's end (`finish`: the session, its plan's state and
the `failover_session.finished` domain event in one transaction), and the wake-ups that
subscribers follow on `session_channel`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.models.cloud import ReplicaState, VmReplica
from app.models.failover import (
    DomainEvent,
    FailoverLogEntry,
    FailoverPlan,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    PlanState,
    SessionKind,
    StepKind,
    StepState,
)
from app.services import events, usage_ledger

if TYPE_CHECKING:
    from app.services.failover_steps import Run

S = FailoverSessionState
# The plan's state once a session of this kind ends in that state (see failover_runs).
END_PLAN: dict[SessionKind, dict[FailoverSessionState, PlanState]] = {
    SessionKind.FAILOVER: {
        S.SUCCEEDED: PlanState.COMPLETED,
        S.FAILED: PlanState.FAILED,
        S.CANCELLED: PlanState.FAILED,
    },
    SessionKind.RETRY: {
        S.SUCCEEDED: PlanState.COMPLETED,
        S.FAILED: PlanState.FAILED,
        S.CANCELLED: PlanState.FAILED,
    },
    SessionKind.TEST: {s: PlanState.READY for s in (S.SUCCEEDED, S.FAILED, S.CANCELLED)},
    SessionKind.UNDO: {
        S.SUCCEEDED: PlanState.READY,
        S.FAILED: PlanState.FAILED,
        S.CANCELLED: PlanState.COMPLETED,
    },
}


def now() -> datetime:
    return datetime.now(UTC)


def session_channel(session_id: int) -> str:
    return f"failover_session:{session_id}"


async def publish(session_id: int, **payload: Any) -> None:
    try:
        await events.publish(session_channel(session_id), {"id": session_id, **payload})
    except Exception:  # a wake-up only: the rows are committed, subscribers re-read them
        pass


async def _recovery_seconds(session: FailoverSession) -> float | None:
    last = (
        await FailoverStep.filter(
            session_id=session.id, kind=StepKind.WAIT_HEALTHY, state=StepState.DONE
        )
        .order_by("-finished_at")
        .first()
    )
    if last is None or last.finished_at is None:
        return None
    return round((last.finished_at - session.started_at).total_seconds(), 3)


async def finish(session_id: int, state: FailoverSessionState, error: str | None = None) -> bool:
    """End a RUNNING session (steps not done → SKIPPED), move its plan, write the domain event,
    in one transaction. False when it had already ended."""
    session = await FailoverSession.get(id=session_id)
    if session.state is not S.RUNNING:
        return False
    at = now()
    recovery = None if session.kind is SessionKind.UNDO else await _recovery_seconds(session)
    plan_state = END_PLAN[session.kind][state]
    async with in_transaction(connection_name()):
        ended = await FailoverSession.filter(id=session_id, state=S.RUNNING).update(
            state=state, finished_at=at, error=error, recovery_seconds=recovery
        )
        if not ended:
            return False
        await FailoverStep.filter(
            session_id=session_id, state__in=[StepState.PENDING, StepState.RUNNING]
        ).update(state=StepState.SKIPPED)
        changes: dict[str, Any] = {"state": plan_state}
        if session.kind is SessionKind.TEST:
            changes["last_test_at"] = at
            changes["last_test_recovery_seconds"] = recovery if state is S.SUCCEEDED else None
        plan_id: int = session.plan_id  # type: ignore[attr-defined]
        await FailoverPlan.filter(id=plan_id, current_session_id=session_id).update(**changes)
        row = await FailoverSession.get(id=session_id)
        await DomainEvent.create(
            kind="failover_session.finished",
            organization_id=session.company_id,
            subject_type="FailoverSession",
            subject_id=session_id,
            payload={
                "state": state.value,
                "plan": plan_id,
                "kind": session.kind.value,
                "vms_up": row.vms_up,
                "vms_failed": row.vms_failed,
            },
        )
        await FailoverLogEntry.create(
            session_id=session_id,
            level="INFO" if state is S.SUCCEEDED else "WARN" if state is S.CANCELLED else "ERROR",
            message=f"{session.kind.value.lower()} {state.value.lower()}: {row.vms_up} of"
            f" {row.vms_total} VM(s) through, {row.vms_failed} failed; plan {plan_state.value}"
            + (f" ({error})" if error else ""),
        )
    await publish(session_id, state=state.value)
    from app.alarms.evaluation import request_evaluation

    await request_evaluation(session.company_id)
    return True


async def commit_step(
    run: Run,
    step: FailoverStep,
    state: StepState,
    output: dict[str, Any],
    message: str,
    first_failure: bool,
) -> None:
    """A step's outcome, in one transaction: the step, the session's counters, the replica's
    state, the log line. A step someone else already finished means this run lost the job."""
    from app.jobs.context import JobLost

    at = now()
    kind = run.session.kind
    async with in_transaction(connection_name()):
        written = await FailoverStep.filter(
            id=step.id, state__in=[StepState.PENDING, StepState.RUNNING]
        ).update(
            state=state,
            output=output,
            message=message[:1000],
            finished_at=at,
            started_at=step.started_at or at,
            attempts=max(step.attempts, 1),
        )
        if not written:
            raise JobLost(f"step {step.seq} of failover session {run.session.id} ended elsewhere")
        counters: dict[str, Any] = {}
        up_kind = StepKind.RELEASE if kind is SessionKind.UNDO else StepKind.WAIT_HEALTHY
        if state is StepState.DONE and step.kind is up_kind:
            counters["vms_up"] = F("vms_up") + 1
        if state is StepState.FAILED and first_failure:
            counters["vms_failed"] = F("vms_failed") + 1
        if counters:
            await FailoverSession.filter(id=run.session.id).update(**counters)
        replica_state = _replica_state(kind, step.kind) if state is StepState.DONE else None
        if replica_state is not None and step.replica_id is not None:
            await VmReplica.filter(id=step.replica_id).update(state=replica_state)
            if replica_state is ReplicaState.READY and kind is SessionKind.UNDO:
                # Billing: the compute hours it ran, once, with the release.
                await usage_ledger.record_failover_compute(run.session, step.replica_id, at)
        await FailoverLogEntry.create(
            session_id=run.session.id,
            level={StepState.DONE: "INFO", StepState.SKIPPED: "WARN"}.get(state, "ERROR"),
            step_seq=step.seq,
            message=message[:1000],
        )
    step.state, step.output, step.message, step.finished_at = state, output, message, at


def _replica_state(session_kind: SessionKind, step_kind: StepKind) -> ReplicaState | None:
    if step_kind is StepKind.POWER_ON and session_kind in (SessionKind.FAILOVER, SessionKind.RETRY):
        return ReplicaState.FAILOVER
    if step_kind is StepKind.POWER_OFF and session_kind is SessionKind.UNDO:
        return ReplicaState.FAILBACK
    if step_kind is StepKind.RELEASE:
        return ReplicaState.READY
    return None
