"""Executing a failover session, one persisted step at a time (the `failover.run` job).

For each PENDING step in order: a cancellation check (the step boundary), then a step that
calls the hypervisor or waits is marked RUNNING (attempts + 1) and committed *before* the
call; the driver gets the step's idempotency key; the outcome (DONE or FAILED, output, a log
line, the session's counters, the replica's state) is written in one transaction. A step found
RUNNING when a run resumes is issued again with the same key: the driver answers with the
first result, so a worker killed at any point never powers a VM on twice. A RUNNING step is
always finished before a cancellation is honoured, except a wait: a cancel ends a health wait
(the step SKIPPED) or a delay (cut short) at its next wake-up.

Waiting does not hold a worker thread: a VM booting or a delay between VMs parks the job
(`JobContext.wait` → ContinueLater; the job stays RUNNING, the session too) and the job is
delivered again when the next health check or the end of the delay is due. That delivery
(`ctx.woken`) reloads the session and goes on with the step that was waiting; a delivery after
a lost worker (a new attempt) notes the resumption in the session log and issues the RUNNING
step again with its key.

Failure policy: STOP skips everything after a failed step; CONTINUE skips the rest of that
VM's steps and goes on (a step not tied to a VM, such as a script or the network appliance,
always stops the run). A test's POWER_OFF steps are its clean-up: they run for every VM it
tried to boot, after a failure or a cancellation too. The session ends FAILED if any step
failed. `failover_progress.finish` writes the session's end, the plan's state, and the
`failover_session.finished` domain event in one transaction.

This module is the job: load the session, note a resumption, run it, finish it. What each step
does is failover_steps (`Run`); what a step and the session's end write is failover_progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.integrations.hypervisor import hypervisor
from app.models.cloud import VmReplica
from app.models.failover import (
    FailoverLogEntry,
    FailoverPlan,
    FailoverPlanVm,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    StepState,
)
from app.services.failover_progress import finish
from app.services.failover_steps import Run

if TYPE_CHECKING:
    from app.jobs.context import JobContext

S = FailoverSessionState


async def _note_resumption(
    session_id: int, steps: list[FailoverStep], ctx: JobContext | None
) -> None:
    """A run picked up again after its worker died says so in the session log: which attempt,
    and which step is re-issued with the same idempotency key."""
    started = [s for s in steps if s.state is not StepState.PENDING]
    if not started or (ctx is not None and ctx.woken):  # a wait continued, not a resumption
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
