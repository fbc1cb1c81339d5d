"""GraphQL types of what tenants get: plan subscriptions, VLANs, public IPs, VM replicas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import REPLICAS, TENANT_ACCOUNTS
from app.authz.matrix import Action
from app.authz.principal import Target
from app.graphql.cloud.plan_usage_loader import plan_usage
from app.graphql.common import Node, viewer_allows, viewer_can
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.models.cloud import (
    HardwarePlanSubscription,
    PublicIpAllocation,
    ReplicaKind,
    ReplicaState,
    VlanAllocation,
    VmReplica,
)
from app.services.plan_usage import PlanUsage

Info = strawberry.Info[Context, Any]

ReplicaKindEnum = strawberry.enum(ReplicaKind, name="ReplicaKind")
ReplicaStateEnum = strawberry.enum(ReplicaState, name="ReplicaState")


def _gid(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(to_global_id(type_name, pk))


@strawberry.type(name="VlanAllocation", description="A VLAN of a host given to a tenant network.")
class VlanAllocationType:
    id: strawberry.ID
    host: str
    vlan_id: int
    internet: bool = strawberry.field(description="From a range of networks with internet.")
    subscription_id: strawberry.ID
    created_at: datetime

    @classmethod
    def from_row(cls, row: VlanAllocation) -> VlanAllocationType:
        return cls(
            id=_gid("VlanAllocation", row.id),
            host=row.host,
            vlan_id=row.vlan_id,
            internet=row.vlan_range.internet,
            subscription_id=_gid("HardwarePlanSubscription", row.subscription_id),  # type: ignore[attr-defined]
            created_at=row.created_at,
        )


@strawberry.type(
    name="HardwarePlanSubscription",
    description="A tenant account's hardware plan: the plan's limits and what the tenant's VM "
    "replicas bound to it use (storage: all of them; CPU and memory: those powered on, failed "
    "over or booted by a running test). Usage is computed from the replicas when read.",
)
class HardwarePlanSubscriptionType(Node):
    _pk: strawberry.Private[int]
    id: strawberry.ID
    tenant_account_id: strawberry.ID
    plan_id: strawberry.ID
    plan_name: str
    cpu_limit_mhz: int
    memory_limit_mb: int
    storage_limit_gb: int = strawberry.field(description="Sum of the plan's datastore quotas.")
    vlans: list[VlanAllocationType]
    created_at: datetime

    async def _usage(self, info: Info) -> PlanUsage:
        return await plan_usage(info).load(self._pk)

    @strawberry.field(description="CPU (MHz) of the subscription's replicas powered on.")
    async def cpu_used_mhz(self, info: Info) -> int:
        return (await self._usage(info)).cpu_mhz

    @strawberry.field(description="Memory (MB) of the subscription's replicas powered on.")
    async def memory_used_mb(self, info: Info) -> int:
        return (await self._usage(info)).memory_mb

    @strawberry.field(
        description="Disks (GB) of all the subscription's replicas, counted against the plan's "
        "total storage (storageLimitGb), whatever datastore holds them."
    )
    async def storage_used_gb(self, info: Info) -> int:
        return (await self._usage(info)).storage_gb

    @strawberry.field(description="VM replicas bound to the subscription.")
    async def replica_count(self, info: Info) -> int:
        return (await self._usage(info)).replicas

    @strawberry.field(description="Of those, the replicas powered on at the cloud host.")
    async def replicas_powered_on(self, info: Info) -> int:
        return (await self._usage(info)).powered_on

    @classmethod
    def from_row(cls, row: HardwarePlanSubscription) -> HardwarePlanSubscriptionType:
        """`row` comes with plan, plan__datastores and vlans__vlan_range prefetched."""
        plan = row.plan
        return cls(
            _pk=row.id,
            id=_gid("HardwarePlanSubscription", row.id),
            tenant_account_id=_gid("TenantAccount", row.tenant_account_id),  # type: ignore[attr-defined]
            plan_id=_gid("HardwarePlan", plan.id),
            plan_name=plan.name,
            cpu_limit_mhz=plan.cpu_mhz,
            memory_limit_mb=plan.memory_mb,
            storage_limit_gb=sum(d.quota_gb for d in plan.datastores),  # type: ignore[attr-defined]
            vlans=[VlanAllocationType.from_row(v) for v in row.vlans],  # type: ignore[attr-defined]
            created_at=row.created_at,
        )

    @strawberry.field(description="True when you may cancel the subscription.")
    def viewer_can_unsubscribe(self, info: strawberry.Info) -> bool:
        return viewer_allows(info, TENANT_ACCOUNTS, Action.DELETE)


SUBSCRIPTION_PREFETCH = ("plan__datastores", "vlans__vlan_range")


@strawberry.type(name="PublicIpAllocation")
class PublicIpAllocationType(Node):
    id: strawberry.ID
    address: str
    pool_id: strawberry.ID
    tenant_account_id: strawberry.ID
    created_at: datetime

    @classmethod
    def from_row(cls, row: PublicIpAllocation) -> PublicIpAllocationType:
        return cls(
            id=_gid("PublicIpAllocation", row.id),
            address=row.address,
            pool_id=_gid("PublicIpPool", row.pool_id),  # type: ignore[attr-defined]
            tenant_account_id=_gid("TenantAccount", row.tenant_account_id),  # type: ignore[attr-defined]
            created_at=row.created_at,
        )

    @strawberry.field(description="True when you may release the address.")
    def viewer_can_release(self, info: strawberry.Info) -> bool:
        return viewer_allows(info, TENANT_ACCOUNTS, Action.DELETE)


@strawberry.type(name="VmReplica")
class VmReplicaType(Node):
    _row: strawberry.Private[VmReplica]
    id: strawberry.ID
    name: str
    source_vm: str
    kind: ReplicaKindEnum  # type: ignore[valid-type]
    state: ReplicaStateEnum  # type: ignore[valid-type]
    tenant_account_id: strawberry.ID
    subscription_id: strawberry.ID | None
    restore_points: list[datetime] = strawberry.field(description="Oldest first.")
    cpu_mhz: int = strawberry.field(
        description="The replicated VM's CPU (vCPUs at the host's clock, MHz): counts against "
        "its hardware plan while the replica is powered on."
    )
    memory_mb: int = strawberry.field(
        description="The replicated VM's memory (MB): counts against its hardware plan while "
        "the replica is powered on."
    )
    storage_gb: int = strawberry.field(
        description="The replica's disks (GB): count against its hardware plan's storage."
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: VmReplica) -> VmReplicaType:
        sub = row.subscription_id  # type: ignore[attr-defined]
        return cls(
            _row=row,
            id=_gid("VmReplica", row.id),
            name=row.name,
            source_vm=row.source_vm,
            kind=row.kind,
            state=row.state,
            tenant_account_id=_gid("TenantAccount", row.tenant_account_id),  # type: ignore[attr-defined]
            subscription_id=_gid("HardwarePlanSubscription", sub) if sub else None,
            restore_points=[datetime.fromisoformat(p) for p in row.restore_points],
            cpu_mhz=row.cpu_mhz,
            memory_mb=row.memory_mb,
            storage_gb=row.storage_gb,
            created_at=row.created_at,
        )

    @strawberry.field(description="True when you may remove the replica from the registry.")
    def viewer_can_delete(self, info: strawberry.Info) -> bool:
        return viewer_can(info, REPLICAS, Action.DELETE, Target(kind=REPLICAS.kind))
