"""GraphQL types of cloud failover plans: the plan, its ordered VMs, its scripts and whether
it can start now. A page of plans costs one query per relation (loaders), whatever its size."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

import strawberry
from strawberry.dataloader import DataLoader

from app.authz.capabilities import FAILOVER_PLANS, FAILOVER_SCRIPTS, FAILOVER_SESSIONS
from app.authz.matrix import Action
from app.graphql.cloud.allocation_types import ReplicaKindEnum, ReplicaStateEnum
from app.graphql.common import Node, viewer_can
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.graphql.loaders import Loaders
from app.models.failover import FailoverPlan, FailoverPlanVm, FailurePolicy, PlanState, PlanType
from app.services import failover_plan_vms, failover_plans, failover_readiness

Info = strawberry.Info[Context, Any]

PlanTypeEnum = strawberry.enum(
    PlanType,
    name="FailoverPlanType",
    description="LOCAL: replicas on the tenant's own hosts; CLOUD: on the provider's cloud host.",
)
PlanStateEnum = strawberry.enum(PlanState, name="FailoverPlanState")
FailurePolicyEnum = strawberry.enum(
    FailurePolicy,
    name="FailoverFailurePolicy",
    description="STOP at the first failed VM, or CONTINUE with the others; either way a run "
    "with a failed VM ends FAILED.",
)


def gid(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(to_global_id(type_name, pk))


# --- loaders, one set per request (hung on the request's Loaders) ---------------------------


class FailoverLoaders:
    def __init__(self) -> None:
        self.vms: DataLoader[int, list[FailoverPlanVm]] = DataLoader(self._vms)
        self.reasons: DataLoader[FailoverPlan, list[str]] = DataLoader(
            self._reasons, cache_key_fn=lambda plan: plan.id
        )

    async def _vms(self, plan_ids: Sequence[int]) -> list[list[FailoverPlanVm]]:
        found = await failover_plan_vms.vms_by_plan(plan_ids)
        return [found.get(pk, []) for pk in plan_ids]

    async def _reasons(self, plans: Sequence[FailoverPlan]) -> list[list[str]]:
        vms = await self.vms.load_many([plan.id for plan in plans])
        by_plan = {plan.id: plan_vms for plan, plan_vms in zip(plans, vms, strict=True)}
        found = await failover_readiness.readiness_many(plans, by_plan)
        return [found[plan.id] for plan in plans]


_LOADERS: WeakKeyDictionary[Loaders, FailoverLoaders] = WeakKeyDictionary()


def loaders(info: Info) -> FailoverLoaders:
    request_loaders = info.context.loaders
    found = _LOADERS.get(request_loaders)
    if found is None:
        found = _LOADERS[request_loaders] = FailoverLoaders()
    return found


# --- types ----------------------------------------------------------------------------------


@strawberry.type(name="FailoverPlanVm", description="One VM of a plan, in the plan's order.")
class FailoverPlanVmType:
    position: int = strawberry.field(description="0 for the first VM started.")
    delay_seconds: int = strawberry.field(
        description="Wait after this VM is up before the next one; ignored after the last VM."
    )
    replica_id: strawberry.ID
    replica_name: str
    source_vm: str
    replica_kind: ReplicaKindEnum  # type: ignore[valid-type]
    replica_state: ReplicaStateEnum  # type: ignore[valid-type]
    restore_point_count: int
    latest_restore_point: datetime | None

    @classmethod
    def from_row(cls, vm: FailoverPlanVm) -> FailoverPlanVmType:
        replica = vm.replica
        points = replica.restore_points
        return cls(
            position=vm.position,
            delay_seconds=vm.delay_seconds,
            replica_id=gid("VmReplica", replica.id),
            replica_name=replica.name,
            source_vm=replica.source_vm,
            replica_kind=replica.kind,
            replica_state=replica.state,
            restore_point_count=len(points),
            latest_restore_point=datetime.fromisoformat(points[-1]) if points else None,
        )


@strawberry.type(name="FailoverScripts", description="Run on the cloud host by the provider.")
class FailoverScriptsType:
    pre_failover: str = strawberry.field(description="Before the first VM; empty: none.")
    post_failover: str = strawberry.field(description="After the last VM; empty: none.")


@strawberry.type(name="FailoverPlan")
class FailoverPlanType(Node):
    _row: strawberry.Private[FailoverPlan]
    id: strawberry.ID
    company_id: strawberry.ID
    tenant_account_id: strawberry.ID | None
    name: str
    description: str
    type: PlanTypeEnum  # type: ignore[valid-type]
    state: PlanStateEnum  # type: ignore[valid-type]
    failure_policy: FailurePolicyEnum  # type: ignore[valid-type]
    current_session_id: strawberry.ID | None = strawberry.field(
        description="The run in progress, or the last one."
    )
    last_test_recovery_seconds: float | None = strawberry.field(
        description="The last test failover's measured time from start to all VMs healthy."
    )
    last_test_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: FailoverPlan) -> FailoverPlanType:
        account = row.tenant_account_id  # type: ignore[attr-defined]
        session = row.current_session_id
        return cls(
            _row=row,
            id=gid("FailoverPlan", row.id),
            company_id=gid("Company", row.company_id),  # type: ignore[attr-defined]
            tenant_account_id=gid("TenantAccount", account) if account else None,
            name=row.name,
            description=row.description,
            type=row.type,
            state=row.state,
            failure_policy=row.failure_policy,
            current_session_id=gid("FailoverSession", session) if session else None,
            last_test_recovery_seconds=row.last_test_recovery_seconds,
            last_test_at=row.last_test_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @strawberry.field(description="The VMs in the order they are started.")
    async def vms(self, info: Info) -> list[FailoverPlanVmType]:
        rows = await loaders(info).vms.load(self._row.id)
        return [FailoverPlanVmType.from_row(vm) for vm in rows]

    @strawberry.field(description="Whether the plan can start now (notReadyReasons is empty).")
    async def ready(self, info: Info) -> bool:
        return not await loaders(info).reasons.load(self._row)

    @strawberry.field(description="Why the plan cannot start now; empty when it can.")
    async def not_ready_reasons(self, info: Info) -> list[str]:
        return await loaders(info).reasons.load(self._row)

    @strawberry.field(
        description="Pre- and post-failover scripts; null unless you may read them (the "
        "provider's staff)."
    )
    def scripts(self, info: Info) -> FailoverScriptsType | None:
        if not self._can(info, FAILOVER_SCRIPTS, Action.READ):
            return None
        return FailoverScriptsType(
            pre_failover=self._row.pre_failover_script,
            post_failover=self._row.post_failover_script,
        )

    def _can(self, info: Info, capability: Any, action: Action) -> bool:
        target = failover_plans.plan_target(self._row, capability.kind)
        return viewer_can(info, capability, action, target)

    @strawberry.field(description="You may edit the plan (it must also be READY).")
    def viewer_can_update(self, info: Info) -> bool:
        return self._can(info, FAILOVER_PLANS, Action.UPDATE)

    @strawberry.field(description="You may remove the plan (it must also be READY or FAILED).")
    def viewer_can_delete(self, info: Info) -> bool:
        return self._can(info, FAILOVER_PLANS, Action.DELETE)

    @strawberry.field(description="You may start, test, undo and retry the plan.")
    def viewer_can_run(self, info: Info) -> bool:
        return self._can(info, FAILOVER_SESSIONS, Action.CREATE)

    @strawberry.field(description="You may set the pre- and post-failover scripts.")
    def viewer_can_edit_scripts(self, info: Info) -> bool:
        return self._can(info, FAILOVER_SCRIPTS, Action.UPDATE)
