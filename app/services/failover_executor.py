"""Executing a failover session, one persisted step at a time (the `failover.run` job).

For each PENDING step in order: a cancellation check (the step boundary), then a step that
calls the hypervisor or waits is marked RUNNING (attempts + 1) and committed *before* the
call; the driver gets the step's idempotency key; the outcome (DONE or FAILED, output, a log
line, the session's counters, the replica's state) is written in one transaction. A step found
RUNNING when a run resumes is issued again with the same key: the driver answers with the
first result, so a worker killed at any point never powers a VM on twice. A RUNNING step is
always finished before a cancellation is honoured.

Failure policy: STOP skips everything after a failed step; CONTINUE skips the rest of that
VM's steps and goes on (a step not tied to a VM, such as a script or the network appliance,
always stops the run). A test's POWER_OFF steps are its clean-up: they run for every VM it
tried to boot, after a failure or a cancellation too. The session ends FAILED if any step
failed. `finish` writes the session's end, the plan's state, and the
`failover_session.finished` domain event in one transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.integrations.hypervisor import (
    Health,
    HypervisorDriver,
    HypervisorFailed,
    HypervisorUnavailable,
    hypervisor,
    vm_ref,
)
from app.models.cloud import PublicIpAllocation, ReplicaState, VmReplica
from app.models.failover import (
    DomainEvent,
    FailoverLogEntry,
    FailoverPlan,
    FailoverPlanVm,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    PlanState,
    PointChoice,
    SessionKind,
    StepKind,
    StepState,
)
from app.services import events, usage_ledger

if TYPE_CHECKING:
    from app.jobs.context import JobContext

# Seconds a VM may take from power-on to healthy before its WAIT_HEALTHY step fails.
HEALTH_TIMEOUT_SECONDS = 600.0
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 0.01, 1.0
# An unavailable hypervisor is asked again (same key) this many times, then the step fails.
UNAVAILABLE_TRIES = 5
UNAVAILABLE_BACKOFF_SECONDS = 0.2

# Steps that call the hypervisor or wait: marked RUNNING and committed before they start.
MARKED = frozenset(StepKind) - {StepKind.SELECT_POINT, StepKind.RELEASE}
FINAL = frozenset({StepState.DONE, StepState.FAILED, StepState.SKIPPED})

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


def select_point(points: list[str], choice: PointChoice, at: datetime | None = None) -> str | None:
    """The latest restore point, or the closest one at or before `at` (None: there is none).
    `points` are ISO times (as VmReplica.restore_points holds them)."""
    if choice is PointChoice.LATEST:
        return max(points, key=datetime.fromisoformat) if points else None
    if at is None:
        return None
    before = [p for p in points if datetime.fromisoformat(p) <= at]
    return max(before, key=datetime.fromisoformat) if before else None


class StepFailed(Exception):
    """The step failed for a reason meant for the session log."""


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
            level="INFO" if state is StepState.DONE else "ERROR",
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


async def _call(make: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """A driver call; an unavailable hypervisor is asked again (the same key) with backoff."""
    last: Exception | None = None
    for attempt in range(UNAVAILABLE_TRIES):
        try:
            return await make()
        except HypervisorUnavailable as exc:
            last = exc
            await asyncio.sleep(min(UNAVAILABLE_BACKOFF_SECONDS * 2**attempt, 5.0))
    raise StepFailed(f"the hypervisor did not answer after {UNAVAILABLE_TRIES} tries: {last}")


class Run:
    def __init__(
        self,
        session: FailoverSession,
        plan: FailoverPlan,
        steps: list[FailoverStep],
        replicas: dict[int, VmReplica],
        delays: dict[int, int],
        driver: HypervisorDriver,
        ctx: JobContext | None,
    ) -> None:
        self.session, self.plan, self.steps = session, plan, steps
        self.replicas, self.delays, self.driver, self.ctx = replicas, delays, driver, ctx
        self.points: dict[int, str | None] = {
            s.replica_id: s.output.get("restorePoint")
            for s in steps
            if s.kind is StepKind.SELECT_POINT and s.state is StepState.DONE and s.replica_id
        }
        self.power_on = {s.replica_id: s for s in steps if s.kind is StepKind.POWER_ON}
        self.finished = sum(1 for s in steps if s.state in FINAL)
        self.percent = -1

    def name(self, step: FailoverStep) -> str:
        replica = self.replicas.get(step.replica_id or 0)
        return replica.name if replica is not None else "?"

    def ref(self, step: FailoverStep) -> str:
        return vm_ref(step.replica_id or 0, self.name(step))

    def is_cleanup(self, step: FailoverStep) -> bool:
        return self.session.kind is SessionKind.TEST and step.kind is StepKind.POWER_OFF

    def stops(self, step: FailoverStep) -> bool:
        return self.plan.failure_policy.value == "STOP" or step.replica_id is None

    async def cancel_requested(self, step: FailoverStep) -> bool:
        from app.jobs.context import JobCancelled

        if self.ctx is None:
            return False
        try:
            await self.ctx.step(f"{step.kind.value} {step.seq}")
        except JobCancelled:
            return True
        return False

    async def execute(self) -> FailoverSessionState:
        failed_vms = {
            s.replica_id for s in self.steps if s.state is StepState.FAILED and s.replica_id
        }
        stopped = any(s.state is StepState.FAILED and self.stops(s) for s in self.steps)
        cancelling = False
        for step in self.steps:
            if step.state in FINAL:
                continue
            if self.is_cleanup(step):
                booted = self.power_on.get(step.replica_id)
                if booted is not None and booted.attempts > 0:
                    await self.do(step, step.replica_id not in failed_vms)
                continue
            if step.state is StepState.PENDING:
                if stopped or cancelling or step.replica_id in failed_vms:
                    continue
                if await self.cancel_requested(step):
                    cancelling = True
                    await FailoverLogEntry.create(
                        session_id=self.session.id,
                        level="WARN",
                        step_seq=step.seq,
                        message=f"cancel requested: stopping before step {step.seq}",
                    )
                    continue
            # PENDING, or RUNNING from a run that died: always finished (same key).
            if not await self.do(step, step.replica_id not in failed_vms):
                if step.replica_id is not None:
                    failed_vms.add(step.replica_id)
                stopped = stopped or self.stops(step)
        if cancelling:
            return S.CANCELLED
        if failed_vms or any(s.state is StepState.FAILED for s in self.steps):
            return S.FAILED
        return S.SUCCEEDED

    async def do(self, step: FailoverStep, first_failure: bool) -> bool:
        if step.kind in MARKED:
            started = step.started_at or now()
            await FailoverStep.filter(id=step.id).update(
                state=StepState.RUNNING, attempts=F("attempts") + 1, started_at=started
            )
            step.state, step.started_at, step.attempts = (
                StepState.RUNNING,
                started,
                step.attempts + 1,
            )
            await publish(self.session.id, step=step.seq, stepState="RUNNING")
        try:
            output, message = await self.perform(step)
            state = StepState.DONE
        except (HypervisorFailed, StepFailed) as exc:
            output, message, state = {}, str(exc), StepState.FAILED
        await commit_step(self, step, state, output, message, first_failure)
        self.finished += 1
        await publish(self.session.id, step=step.seq, stepState=state.value)
        percent = 100 * self.finished // max(1, len(self.steps))
        if self.ctx is not None and percent != self.percent:
            self.percent = percent
            await self.ctx.progress(percent, message[:200])
        return state is StepState.DONE

    async def perform(self, step: FailoverStep) -> tuple[dict[str, Any], str]:
        key, kind = step.idempotency_key, step.kind
        if kind in (StepKind.PRE_SCRIPT, StepKind.POST_SCRIPT):
            pre = kind is StepKind.PRE_SCRIPT
            command = self.plan.pre_failover_script if pre else self.plan.post_failover_script
            out = await _call(lambda: self.driver.run_script(command, key))
            return out, f"{'pre' if pre else 'post'}-failover script ran"
        if kind is StepKind.SELECT_POINT:
            return self.select_point(step)
        if kind is StepKind.POWER_ON:
            isolated = self.session.kind is SessionKind.TEST
            point = self.points.get(step.replica_id or 0)
            out = await _call(lambda: self.driver.power_on(self.ref(step), point, isolated, key))
            return out, f"{self.name(step)}: powered on" + (" in isolation" if isolated else "")
        if kind is StepKind.WAIT_HEALTHY:
            return await self.wait_healthy(step)
        if kind is StepKind.DELAY:
            return await self.delay(step)
        if kind is StepKind.NETWORK_APPLIANCE:
            out = await _call(
                lambda: self.driver.start_network_appliance(f"plan/{self.plan.id}", False, key)
            )
            return out, "network extension appliance started"
        if kind is StepKind.MAP_PUBLIC_IPS:
            mapping = await self.public_ip_mapping()
            out = await _call(lambda: self.driver.map_public_ips(mapping, key))
            return out, f"{len(mapping)} public IP address(es) mapped"
        if kind is StepKind.POWER_OFF:
            out = await _call(lambda: self.driver.power_off(self.ref(step), key))
            return out, f"{self.name(step)}: powered off"
        if kind is StepKind.RELEASE:
            return {}, f"{self.name(step)}: failed back, replica ready"
        raise StepFailed(f"unknown step {kind}")  # pragma: no cover

    def select_point(self, step: FailoverStep) -> tuple[dict[str, Any], str]:
        replica = self.replicas[step.replica_id or 0]
        at = self.session.point_in_time
        point = select_point(list(replica.restore_points or []), self.session.point_choice, at)
        if point is None:
            raise StepFailed(f"{replica.name}: no restore point before {at}")
        self.points[replica.id] = point
        how = "latest" if at is None else f"closest before {at.isoformat()}"
        return {"restorePoint": point}, f"{replica.name}: restore point {point} ({how})"

    async def wait_healthy(self, step: FailoverStep) -> tuple[dict[str, Any], str]:
        started = step.started_at or now()
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS - (now() - started).total_seconds()
        pause = POLL_FIRST_SECONDS
        while True:
            health = await self.driver.health(self.ref(step))
            if health is Health.HEALTHY:
                seconds = round((now() - started).total_seconds(), 3)
                return {"seconds": seconds}, f"{self.name(step)}: healthy after {seconds} s"
            if health is Health.FAILED:
                raise StepFailed(f"{self.name(step)}: the VM reports failed health")
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"{self.name(step)}: not healthy within {HEALTH_TIMEOUT_SECONDS:g} s"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, POLL_MAX_SECONDS)

    async def delay(self, step: FailoverStep) -> tuple[dict[str, Any], str]:
        from app.services import jobs

        seconds = self.delays.get(step.replica_id or 0, 0)
        started = step.started_at or now()
        job_id = self.ctx.id if self.ctx is not None else None
        while (left := seconds - (now() - started).total_seconds()) > 0:
            await asyncio.sleep(min(left, 1.0))
            if job_id is not None and await jobs.cancel_requested(job_id):
                return {"seconds": seconds, "cut": True}, "delay cut short: cancel requested"
        return {"seconds": seconds}, f"waited {seconds} s after {self.name(step)}"

    async def public_ip_mapping(self) -> dict[str, str]:
        account_id = self.plan.tenant_account_id  # type: ignore[attr-defined]
        addresses = (
            await PublicIpAllocation.filter(tenant_account_id=account_id)
            .order_by("id")
            .values_list("address", flat=True)
        )
        up = (
            await FailoverPlanVm.filter(plan_id=self.plan.id, replica__state=ReplicaState.FAILOVER)
            .order_by("position")
            .values_list("replica_id", "replica__name")
        )
        return {
            str(address): vm_ref(rid, name)
            for address, (rid, name) in zip(addresses, up, strict=False)
        }


async def _note_resumption(
    session_id: int, steps: list[FailoverStep], ctx: JobContext | None
) -> None:
    """A run picked up again after its worker died says so in the session log: which attempt,
    and which step is re-issued with the same idempotency key."""
    started = [s for s in steps if s.state is not StepState.PENDING]
    if not started:
        return
    running = next((s for s in steps if s.state is StepState.RUNNING), None)
    attempt = f" (attempt {ctx.attempt})" if ctx is not None else ""
    again = (
        f"; step {running.seq} ({running.kind.value}) re-issued with the same idempotency key"
        if running is not None
        else ""
    )
    await FailoverLogEntry.create(
        session_id=session_id,
        level="WARN",
        step_seq=running.seq if running is not None else None,
        message=f"resumed after an interruption{attempt}: {len(started)} step(s) already "
        f"started{again}",
    )


async def execute(session_id: int, ctx: JobContext | None = None) -> dict[str, Any]:
    """Run (or resume) the session to its end; a finished session is left as it is. Raises
    JobCancelled after ending a cancelled session (the job ends CANCELLED)."""
    from app.jobs.context import JobCancelled, JobFailed

    session = await FailoverSession.get_or_none(id=session_id)
    if session is None:
        raise JobFailed(f"failover session {session_id} no longer exists")
    if session.state is S.RUNNING:
        plan = await FailoverPlan.get(id=session.plan_id)  # type: ignore[attr-defined]
        steps = list(await FailoverStep.filter(session_id=session_id).order_by("seq"))
        ids = {s.replica_id for s in steps if s.replica_id is not None}
        replicas = {r.id: r for r in await VmReplica.filter(id__in=list(ids))}
        delays = dict(
            await FailoverPlanVm.filter(plan_id=plan.id).values_list("replica_id", "delay_seconds")
        )
        run = Run(session, plan, steps, replicas, delays, hypervisor(), ctx)
        await _note_resumption(session_id, steps, ctx)
        state = await run.execute()
        await finish(session_id, state)
        session = await FailoverSession.get(id=session_id)
        if state is S.CANCELLED:
            raise JobCancelled(f"failover session {session_id} cancelled")
    return {
        "session": session.id,
        "state": session.state.value,
        "vmsUp": session.vms_up,
        "vmsFailed": session.vms_failed,
    }
