"""GraphQL types of what tenants get: plan subscriptions, VLANs, public IPs, VM replicas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import REPLICAS, TENANT_ACCOUNTS
from app.authz.matrix import Action
from app.authz.principal import Target
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


@strawberry.type(name="HardwarePlanSubscription")
class HardwarePlanSubscriptionType(Node):
    id: strawberry.ID
    tenant_account_id: strawberry.ID
    plan_id: strawberry.ID
    plan_name: str
    cpu_limit_mhz: int
    memory_limit_mb: int
    storage_limit_gb: int = strawberry.field(description="Sum of the plan's datastore quotas.")
    cpu_used_mhz: int
    memory_used_mb: int
    storage_used_gb: int
    vlans: list[VlanAllocationType]
    created_at: datetime

    @classmethod
    def from_row(cls, row: HardwarePlanSubscription) -> HardwarePlanSubscriptionType:
        """`row` comes with plan, plan__datastores and vlans__vlan_range prefetched."""
        plan = row.plan
        return cls(
            id=_gid("HardwarePlanSubscription", row.id),
            tenant_account_id=_gid("TenantAccount", row.tenant_account_id),  # type: ignore[attr-defined]
            plan_id=_gid("HardwarePlan", plan.id),
            plan_name=plan.name,
            cpu_limit_mhz=plan.cpu_mhz,
            memory_limit_mb=plan.memory_mb,
            storage_limit_gb=sum(d.quota_gb for d in plan.datastores),  # type: ignore[attr-defined]
            cpu_used_mhz=row.cpu_used_mhz,
            memory_used_mb=row.memory_used_mb,
            storage_used_gb=row.storage_used_gb,
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
            created_at=row.created_at,
        )

    @strawberry.field(description="True when you may remove the replica from the registry.")
    def viewer_can_delete(self, info: strawberry.Info) -> bool:
        return viewer_can(info, REPLICAS, Action.DELETE, Target(kind=REPLICAS.kind))
