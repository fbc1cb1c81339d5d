"""The steps of a failover run: what each kind of step does (the hypervisor driver's calls
with the step's idempotency key, the health polling, the delays, the restore point choice, the
public IP mapping), and the order, failure policy and cancellation checks `Run.execute` applies
over a session's persisted steps. The whole job, resumption included, is failover_executor;
what a step writes is failover_progress.

Waiting (WAIT_HEALTHY, DELAY) goes through `JobContext.wait`: a wait of half a second or more
parks the job (ContinueLater) with the step left RUNNING, and the next delivery (`ctx.woken`)
picks the same step up where the clock says it is — the step's `started_at` is the checkpoint,
and it is neither marked again nor counted as another attempt. A health wait polls with a
pause as long as the VM has booted so far (10 ms doubling, at most POLL_MAX_SECONDS); a delay
sleeps at most CANCEL_CHECK_SECONDS at a time. Both look for a cancel request at every wake-up:
a cancelled health wait ends SKIPPED ("cancel requested while … was booting") and the session
CANCELLED; a cancelled delay ends DONE, cut short, and the run stops before its next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tortoise.expressions import F

from app.integrations.hypervisor import (
    Health,
    HypervisorDriver,
    HypervisorFailed,
    HypervisorUnavailable,
    vm_ref,
)
from app.models.cloud import PublicIpAllocation, ReplicaState, VmReplica
from app.models.failover import (
    FailoverLogEntry,
    FailoverPlan,
    FailoverPlanVm,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    PointChoice,
    SessionKind,
    StepKind,
    StepState,
)
from app.services.failover_progress import commit_step, now, publish

if TYPE_CHECKING:
    from app.jobs.context import JobContext

# Seconds a VM may take from power-on to healthy before its WAIT_HEALTHY step fails.
HEALTH_TIMEOUT_SECONDS = 600.0
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 0.01, 1.0
# A delay (and a run outside the job actor) looks for a cancel request this often.
CANCEL_CHECK_SECONDS = 5.0
# An unavailable hypervisor is asked again (same key) this many times, then the step fails.
UNAVAILABLE_TRIES = 5
UNAVAILABLE_BACKOFF_SECONDS = 0.2

# Steps that call the hypervisor or wait: marked RUNNING and committed before they start.
MARKED = frozenset(StepKind) - {StepKind.SELECT_POINT, StepKind.RELEASE}
FINAL = frozenset({StepState.DONE, StepState.FAILED, StepState.SKIPPED})

S = FailoverSessionState


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


class StepCancelled(Exception):
    """A cancel request ended the step's wait: the step is SKIPPED, the run stops."""


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
        # Woken after a wait: the step left RUNNING is the one that waited, and goes on as it
        # is (a RUNNING step found otherwise was cut by a lost worker and is issued again).
        woken = ctx is not None and ctx.woken
        self.continuing = {s.id for s in steps if woken and s.state is StepState.RUNNING}

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
            # PENDING, RUNNING from a run that died (always finished, same key), or RUNNING
            # from a wait this delivery continues.
            outcome = await self.do(step, step.replica_id not in failed_vms)
            if outcome is StepState.SKIPPED:  # its wait was cancelled
                cancelling = True
            elif outcome is StepState.FAILED:
                if step.replica_id is not None:
                    failed_vms.add(step.replica_id)
                stopped = stopped or self.stops(step)
        if cancelling:
            return S.CANCELLED
        if failed_vms or any(s.state is StepState.FAILED for s in self.steps):
            return S.FAILED
        return S.SUCCEEDED

    async def do(self, step: FailoverStep, first_failure: bool) -> StepState:
        if step.kind in MARKED and step.id not in self.continuing:
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
        except StepCancelled as exc:
            output, message, state = {"cut": True}, str(exc), StepState.SKIPPED
        await commit_step(self, step, state, output, message, first_failure)
        self.finished += 1
        await publish(self.session.id, step=step.seq, stepState=state.value)
        percent = 100 * self.finished // max(1, len(self.steps))
        if self.ctx is not None and percent != self.percent:
            self.percent = percent
            await self.ctx.progress(percent, message[:200])
        return state

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

    async def cancel_asked(self) -> bool:
        from app.services import jobs

        return self.ctx is not None and await jobs.cancel_requested(self.ctx.id)

    async def pause(self, seconds: float, message: str) -> None:
        """Sleep here, or park the job (ContinueLater) and go on in a later delivery."""
        if self.ctx is None:
            await asyncio.sleep(seconds)
        else:
            await self.ctx.wait(seconds, message)

    async def wait_healthy(self, step: FailoverStep) -> tuple[dict[str, Any], str]:
        started = step.started_at or now()
        while True:
            health = await self.driver.health(self.ref(step))
            elapsed = (now() - started).total_seconds()
            if health is Health.HEALTHY:
                seconds = round(elapsed, 3)
                return {"seconds": seconds}, f"{self.name(step)}: healthy after {seconds} s"
            if health is Health.FAILED:
                raise StepFailed(f"{self.name(step)}: the VM reports failed health")
            if elapsed >= HEALTH_TIMEOUT_SECONDS:
                raise StepFailed(
                    f"{self.name(step)}: not healthy within {HEALTH_TIMEOUT_SECONDS:g} s"
                )
            if await self.cancel_asked():
                raise StepCancelled(
                    f"{self.name(step)}: cancel requested while it was booting"
                    f" ({elapsed:.1f} s); the wait for its health stops here"
                )
            pause = min(max(elapsed, POLL_FIRST_SECONDS), POLL_MAX_SECONDS)
            pause = min(pause, HEALTH_TIMEOUT_SECONDS - elapsed)
            await self.pause(pause, f"{self.name(step)}: booting for {elapsed:.0f} s")

    async def delay(self, step: FailoverStep) -> tuple[dict[str, Any], str]:
        seconds = self.delays.get(step.replica_id or 0, 0)
        started = step.started_at or now()
        while (left := seconds - (now() - started).total_seconds()) > 0:
            if await self.cancel_asked():
                return {"seconds": seconds, "cut": True}, "delay cut short: cancel requested"
            await self.pause(
                min(left, CANCEL_CHECK_SECONDS), f"waiting {seconds} s after {self.name(step)}"
            )
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
