"""GraphQL for Cloud Connect: hardware plan subscriptions (with their VLANs), public IPs and
VM replicas. Every list is scoped in SQL to the tenant accounts of companies in scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz import scope
from app.authz.capabilities import REPLICAS, TENANT_ACCOUNTS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.cloud.allocation_types import (
    SUBSCRIPTION_PREFETCH,
    HardwarePlanSubscriptionType,
    PublicIpAllocationType,
    ReplicaKindEnum,
    ReplicaStateEnum,
    VlanAllocationType,
    VmReplicaType,
)
from app.graphql.common import actor, principal, register_node
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models.cloud import (
    HardwarePlanSubscription,
    PublicIpAllocation,
    ReplicaKind,
    VlanAllocation,
    VmReplica,
)
from app.services import allocations, replicas

Info = strawberry.Info[Context, Any]


async def _subscription(p: Principal, pk: int) -> HardwarePlanSubscriptionType:
    row = await allocations.subscription_in_scope(p, pk)
    await row.fetch_related(*SUBSCRIPTION_PREFETCH)
    return HardwarePlanSubscriptionType.from_row(row)


async def _public_ip(p: Principal, pk: int) -> PublicIpAllocationType:
    return PublicIpAllocationType.from_row(await allocations.public_ip_in_scope(p, pk))


async def _replica(p: Principal, pk: int) -> VmReplicaType:
    return VmReplicaType.from_row(await replicas.replica_in_scope(p, pk))


register_node("HardwarePlanSubscription", TENANT_ACCOUNTS, _subscription)
register_node("PublicIpAllocation", TENANT_ACCOUNTS, _public_ip)
register_node("VmReplica", REPLICAS, _replica)


@strawberry.input
class HardwarePlanSubscribeInput:
    tenant_account_id: strawberry.ID
    plan_id: strawberry.ID


@strawberry.input
class PublicIpAllocateInput:
    tenant_account_id: strawberry.ID
    pool_id: strawberry.ID
    count: int = 1


@strawberry.input
class VmReplicaRegisterInput:
    tenant_account_id: strawberry.ID
    name: str
    source_vm: str
    kind: ReplicaKindEnum = ReplicaKind.SNAPSHOT  # type: ignore[valid-type]
    subscription_id: strawberry.ID | None = None
    restore_points: list[datetime] = strawberry.field(default_factory=list)
    cpu_mhz: int = strawberry.field(
        default=0, description="The VM's CPU: its vCPUs at the host's clock, MHz."
    )
    memory_mb: int = strawberry.field(default=0, description="The VM's memory, MB.")
    storage_gb: int = strawberry.field(
        default=0,
        description="The replica's disks, GB: must fit in what is left of the subscription's "
        "storage (CONFLICT otherwise).",
    )


@strawberry.input(description="New resources of a replicated VM; omitted ones are unchanged.")
class VmReplicaResizeInput:
    id: strawberry.ID
    cpu_mhz: int | None = None
    memory_mb: int | None = None
    storage_gb: int | None = None


@strawberry.input
class VmReplicaFilter:
    tenant_account_id: strawberry.ID | None = None
    state: ReplicaStateEnum | None = None  # type: ignore[valid-type]


def _account_pk(global_id: str, field: str) -> int:
    return pk_of(global_id, "TenantAccount", field)


@strawberry.type
class AllocationQuery:
    @strawberry.field(
        extensions=guard(TENANT_ACCOUNTS, Action.READ),
        description="A tenant account's hardware plan subscriptions, with usage and VLANs.",
    )
    async def hardware_plan_subscriptions(
        self, info: Info, tenant_account_id: strawberry.ID
    ) -> list[HardwarePlanSubscriptionType] | None:
        p = principal(info)
        account = await allocations.account_in_scope(
            p, _account_pk(tenant_account_id, "tenantAccountId"), "tenantAccountId"
        )
        rows = await HardwarePlanSubscription.filter(tenant_account_id=account.id).prefetch_related(
            *SUBSCRIPTION_PREFETCH
        )
        return [HardwarePlanSubscriptionType.from_row(r) for r in rows]

    @strawberry.field(extensions=guard(TENANT_ACCOUNTS, Action.READ))
    async def hardware_plan_subscription(
        self, info: Info, id: strawberry.ID
    ) -> HardwarePlanSubscriptionType | None:
        return await _subscription(principal(info), pk_of(id, "HardwarePlanSubscription"))

    @strawberry.field(
        extensions=guard(TENANT_ACCOUNTS, Action.READ),
        description="The VLANs allocated to a tenant account's networks.",
    )
    async def tenant_vlans(
        self, info: Info, tenant_account_id: strawberry.ID
    ) -> list[VlanAllocationType] | None:
        p = principal(info)
        account_id = _account_pk(tenant_account_id, "tenantAccountId")
        await allocations.account_in_scope(p, account_id, "tenantAccountId")
        rows = (
            await VlanAllocation.filter(subscription__tenant_account__id=account_id)
            .select_related("vlan_range")
            .order_by("host", "vlan_id")
        )
        return [VlanAllocationType.from_row(r) for r in rows]

    @strawberry.field(
        extensions=guard(TENANT_ACCOUNTS, Action.READ),
        description="The public IP addresses allocated to a tenant account.",
    )
    async def tenant_public_ips(
        self, info: Info, tenant_account_id: strawberry.ID
    ) -> list[PublicIpAllocationType] | None:
        p = principal(info)
        account_id = _account_pk(tenant_account_id, "tenantAccountId")
        await allocations.account_in_scope(p, account_id, "tenantAccountId")
        rows = await PublicIpAllocation.filter(
            scope.tenant_account_q(p, "tenant_account"), tenant_account_id=account_id
        )
        return [PublicIpAllocationType.from_row(r) for r in rows]

    @strawberry.field(extensions=guard(REPLICAS, Action.READ))
    async def vm_replicas(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: VmReplicaFilter | None = None,
    ) -> Connection[VmReplicaType] | None:
        query = VmReplica.filter(scope.tenant_account_q(principal(info), "tenant_account"))
        if filter is not None:
            if filter.tenant_account_id:
                query = query.filter(
                    tenant_account_id=_account_pk(
                        filter.tenant_account_id, "filter.tenantAccountId"
                    )
                )
            if filter.state is not None:
                query = query.filter(state=filter.state)
        return await paginate(query, first, after, VmReplicaType.from_row)

    @strawberry.field(extensions=guard(REPLICAS, Action.READ))
    async def vm_replica(self, info: Info, id: strawberry.ID) -> VmReplicaType | None:
        return await _replica(principal(info), pk_of(id, "VmReplica"))


@strawberry.type
class AllocationMutation:
    @strawberry.mutation(
        extensions=guard(TENANT_ACCOUNTS, Action.CREATE),
        description="Subscribes a tenant account to a hardware plan and allocates one VLAN per "
        "network of the plan, all or nothing (CONFLICT when no free VLAN is left).",
    )
    async def hardware_plan_subscribe(
        self, info: Info, input: HardwarePlanSubscribeInput
    ) -> HardwarePlanSubscriptionType:
        row = await allocations.subscribe(
            actor(info),
            _account_pk(input.tenant_account_id, "input.tenantAccountId"),
            pk_of(input.plan_id, "HardwarePlan", "input.planId"),
        )
        return await _subscription(principal(info), row.id)

    @strawberry.mutation(
        extensions=guard(TENANT_ACCOUNTS, Action.DELETE),
        description="Ends a subscription and releases its VLANs (refused while replicas use it).",
    )
    async def hardware_plan_unsubscribe(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await allocations.unsubscribe(actor(info), pk_of(id, "HardwarePlanSubscription"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(TENANT_ACCOUNTS, Action.CREATE),
        description="Allocates `count` free addresses of a pool (lowest first) to a standalone "
        "tenant account, all or nothing.",
    )
    async def public_ip_allocate(
        self, info: Info, input: PublicIpAllocateInput
    ) -> list[PublicIpAllocationType]:
        rows = await allocations.allocate_public_ips(
            actor(info),
            _account_pk(input.tenant_account_id, "input.tenantAccountId"),
            pk_of(input.pool_id, "PublicIpPool", "input.poolId"),
            input.count,
        )
        return [PublicIpAllocationType.from_row(r) for r in rows]

    @strawberry.mutation(extensions=guard(TENANT_ACCOUNTS, Action.DELETE))
    async def public_ip_release(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await allocations.release_public_ip(actor(info), pk_of(id, "PublicIpAllocation"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(extensions=guard(REPLICAS, Action.CREATE))
    async def vm_replica_register(self, info: Info, input: VmReplicaRegisterInput) -> VmReplicaType:
        row = await replicas.register(
            actor(info),
            _account_pk(input.tenant_account_id, "input.tenantAccountId"),
            input.name,
            input.source_vm,
            ReplicaKind(input.kind),
            pk_of(input.subscription_id, "HardwarePlanSubscription", "input.subscriptionId")
            if input.subscription_id
            else None,
            input.restore_points,
            replicas.Sizes(input.cpu_mhz, input.memory_mb, input.storage_gb),
        )
        return VmReplicaType.from_row(row)

    @strawberry.mutation(
        extensions=guard(REPLICAS, Action.UPDATE),
        description="Sets the replicated VM's CPU, memory and disk sizes (after the VM was "
        "reconfigured); larger disks must fit in the subscription's storage (CONFLICT).",
    )
    async def vm_replica_resize(self, info: Info, input: VmReplicaResizeInput) -> VmReplicaType:
        row = await replicas.resize(
            actor(info),
            pk_of(input.id, "VmReplica", "input.id"),
            replicas.Sizes(input.cpu_mhz, input.memory_mb, input.storage_gb),
        )
        return VmReplicaType.from_row(row)

    @strawberry.mutation(extensions=guard(REPLICAS, Action.DELETE))
    async def vm_replica_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await replicas.delete(actor(info), pk_of(id, "VmReplica"))
        return DeletePayload(deleted_id=id)
