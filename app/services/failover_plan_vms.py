"""The VM list of a cloud failover plan (seed 000): an ordered list with a delay after each
VM. The delay after the last VM is stored (so a list round-trips as given) but ignored by the
runs. A replica is in at most one plan: the unique column says so, checked first for a clear
message and translated on a race. The list is edited only while the plan is READY (see
failover_plans).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.db import connection_name
from app.errors import BadInput, Conflict, NotFound
from app.models.cloud import ReplicaKind, VmReplica
from app.models.failover import FailoverPlan, FailoverPlanVm
from app.services.actor import Actor
from app.services.audit import audited
from app.services.failover_plans import lock_in_state, plan_to_change

MAX_VMS = 2000
MAX_DELAY_SECONDS = 3600


# --- editing the list ----------------------------------------------------------------------


@dataclass(frozen=True)
class VmInput:
    replica_id: int
    delay_seconds: int = 0


def _check_list(vms: Sequence[VmInput]) -> None:
    if len(vms) > MAX_VMS:
        raise BadInput(f"a plan holds at most {MAX_VMS} VMs", field="input.vms")
    seen: set[int] = set()
    for i, vm in enumerate(vms):
        if not 0 <= vm.delay_seconds <= MAX_DELAY_SECONDS:
            raise BadInput(
                f"the delay is 0 to {MAX_DELAY_SECONDS} seconds",
                field=f"input.vms.{i}.delaySeconds",
            )
        if vm.replica_id in seen:
            raise BadInput("the replica is listed twice", field=f"input.vms.{i}.replicaId")
        seen.add(vm.replica_id)


async def _check_replicas(p: Principal, plan: FailoverPlan, vms: Sequence[VmInput]) -> None:
    """Every prerequisite of the list, in one query for the replicas and one for the plans
    already holding them; the first failing VM (in list order) names its field."""
    ids = [vm.replica_id for vm in vms]
    rows = await VmReplica.filter(scope.tenant_account_q(p, "tenant_account"), id__in=ids).values(
        "id", "name", "kind", "restore_points", "tenant_account_id", "tenant_account__company_id"
    )
    replicas = {r["id"]: r for r in rows}
    kind: ReplicaKind | None = None
    for i, vm in enumerate(vms):
        field = f"input.vms.{i}.replicaId"
        r = replicas.get(vm.replica_id)
        if r is None:
            raise NotFound("VM replica", field=field)
        if r["tenant_account__company_id"] != plan.company_id:  # type: ignore[attr-defined]
            raise BadInput(f"the replica {r['name']} is not one of the plan's company", field=field)
        account_id = plan.tenant_account_id  # type: ignore[attr-defined]
        if account_id is not None and r["tenant_account_id"] != account_id:
            raise BadInput(
                f"the replica {r['name']} is not one of the plan's tenant account", field=field
            )
        if not r["restore_points"]:
            raise BadInput(
                f"the replica {r['name']} has not been replicated yet (no restore point)",
                field=field,
            )
        this_kind = ReplicaKind(r["kind"])
        if kind is not None and this_kind is not kind:
            raise BadInput(
                f"snapshot and CDP replicas cannot be mixed in one plan: {r['name']} is "
                f"{this_kind.value}, the VMs before it {kind.value}",
                field=field,
            )
        kind = this_kind
    await _check_other_plans(plan, vms)


async def _check_other_plans(plan: FailoverPlan, vms: Sequence[VmInput]) -> None:
    held = {
        row["replica_id"]: row
        for row in await FailoverPlanVm.filter(replica_id__in=[vm.replica_id for vm in vms])
        .exclude(plan_id=plan.id)
        .values("replica_id", "replica__name", "plan__name")
    }
    for i, vm in enumerate(vms):
        row = held.get(vm.replica_id)
        if row is not None:
            raise Conflict(
                f"the replica {row['replica__name']} is already in the failover plan "
                f"{row['plan__name']}: a VM is in at most one plan",
                field=f"input.vms.{i}.replicaId",
                plan=row["plan__name"],
            )


async def set_vms(actor: Actor, plan_id: int, vms: Sequence[VmInput]) -> FailoverPlan:
    """Replaces the plan's ordered VM list, all or nothing."""
    plan = await plan_to_change(actor, plan_id, Action.UPDATE)
    _check_list(vms)
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    async with audited(actor, "failoverPlanSetVms", "FailoverPlan", plan.id, company_id) as entry:
        plan = await lock_in_state(actor.p, plan_id)
        await _check_replicas(actor.p, plan, vms)
        await FailoverPlanVm.filter(plan_id=plan.id).delete()
        try:
            async with in_transaction(connection_name()):
                await FailoverPlanVm.bulk_create(
                    [
                        FailoverPlanVm(
                            plan_id=plan.id,
                            replica_id=vm.replica_id,
                            position=i,
                            delay_seconds=vm.delay_seconds,
                        )
                        for i, vm in enumerate(vms)
                    ],
                    batch_size=500,
                )
        except IntegrityError:
            # Another plan took one of the replicas since the check: name it.
            await _check_other_plans(plan, vms)
            raise Conflict("a replica was put into another plan meanwhile") from None
        entry.details.update(vms=len(vms), replicaIds=[vm.replica_id for vm in vms][:50])
    return plan


# --- reading ---------------------------------------------------------------------------------


async def vms_by_plan(plan_ids: Sequence[int]) -> dict[int, list[FailoverPlanVm]]:
    """The plans' VMs in order, each with its replica, in one query (callers pass plans they
    already found in scope: the replicas are of the same company)."""
    out: dict[int, list[FailoverPlanVm]] = defaultdict(list)
    rows = await FailoverPlanVm.filter(plan_id__in=list(plan_ids)).select_related("replica")
    for vm in sorted(rows, key=lambda v: (v.plan_id, v.position)):  # type: ignore[attr-defined]
        out[vm.plan_id].append(vm)  # type: ignore[attr-defined]
    return out
