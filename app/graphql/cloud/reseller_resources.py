"""GraphQL for what the provider hands to resellers: set by the provider's unrestricted staff
(CLOUD_INFRASTRUCTURE), read by the reseller's staff and the provider (RESELLERS READ, in
scope). The caps on the reseller's companies live in app.services.reseller_caps."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz.capabilities import CLOUD_INFRASTRUCTURE, RESELLERS
from app.authz.matrix import Action
from app.graphql.cloud.reseller_resource_types import (
    ResellerHardwarePlanType,
    ResellerIpPoolQuotaType,
    ResellerRepositoryQuotaType,
    ResellerResourcesType,
)
from app.graphql.common import actor, principal
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.services import reseller_resources as svc
from app.services import reseller_usage

Info = strawberry.Info[Context, Any]


@strawberry.input
class ResellerRepositoryQuotaSetInput:
    reseller_id: strawberry.ID
    repository_id: strawberry.ID
    quota_gb: int
    allow_oversubscription: bool = False


@strawberry.input
class ResellerRepositoryQuotaRemoveInput:
    reseller_id: strawberry.ID
    repository_id: strawberry.ID


@strawberry.input
class ResellerHardwarePlanInput:
    reseller_id: strawberry.ID
    plan_id: strawberry.ID


@strawberry.input
class ResellerIpPoolQuotaSetInput:
    reseller_id: strawberry.ID
    pool_id: strawberry.ID
    max_addresses: int


@strawberry.input
class ResellerIpPoolQuotaRemoveInput:
    reseller_id: strawberry.ID
    pool_id: strawberry.ID


def _reseller(gid: str) -> int:
    return pk_of(gid, "Reseller", "input.resellerId")


def _deleted(type_name: str, pk: int) -> DeletePayload:
    return DeletePayload(deleted_id=strawberry.ID(to_global_id(type_name, pk)))


@strawberry.type
class ResellerResourceQuery:
    @strawberry.field(
        extensions=guard(RESELLERS, Action.READ),
        description="What the provider allocated to a reseller (repository quotas, hardware "
        "plans, public IP pools) with its companies' usage. NOT_FOUND outside your scope.",
    )
    async def reseller_resources(
        self, info: Info, reseller_id: strawberry.ID
    ) -> ResellerResourcesType | None:
        found = await reseller_usage.resources(
            principal(info), pk_of(reseller_id, "Reseller", "resellerId")
        )
        return ResellerResourcesType.from_resources(found)


@strawberry.type
class ResellerResourceMutation:
    @strawberry.mutation(
        extensions=guard(CLOUD_INFRASTRUCTURE, Action.UPDATE),
        description="Sets the storage a reseller may hand out on a cloud repository: not below "
        "its companies' quotas there; within the repository's capacity × oversubscription "
        "ratio counting every reseller's quota and the quotas of companies under the provider.",
    )
    async def reseller_repository_quota_set(
        self, info: Info, input: ResellerRepositoryQuotaSetInput
    ) -> ResellerRepositoryQuotaType:
        reseller_id = _reseller(input.reseller_id)
        repository_id = pk_of(input.repository_id, "CloudRepository", "input.repositoryId")
        row = await svc.set_repository_quota(
            actor(info), reseller_id, repository_id, input.quota_gb, input.allow_oversubscription
        )
        await row.fetch_related("repository")
        used = await reseller_usage.reseller_repository_used_gb(reseller_id, repository_id)
        return ResellerRepositoryQuotaType.from_usage(reseller_usage.RepositoryUsage(row, used))

    @strawberry.mutation(
        extensions=guard(CLOUD_INFRASTRUCTURE, Action.DELETE),
        description="Takes a repository back from a reseller (refused while its companies "
        "hold quotas on it).",
    )
    async def reseller_repository_quota_remove(
        self, info: Info, input: ResellerRepositoryQuotaRemoveInput
    ) -> DeletePayload:
        pk = await svc.remove_repository_quota(
            actor(info),
            _reseller(input.reseller_id),
            pk_of(input.repository_id, "CloudRepository", "input.repositoryId"),
        )
        return _deleted("ResellerRepositoryQuota", pk)

    @strawberry.mutation(
        extensions=guard(CLOUD_INFRASTRUCTURE, Action.CREATE),
        description="Lets a reseller subscribe its companies' tenants to a hardware plan.",
    )
    async def reseller_hardware_plan_grant(
        self, info: Info, input: ResellerHardwarePlanInput
    ) -> ResellerHardwarePlanType:
        reseller_id = _reseller(input.reseller_id)
        plan_id = pk_of(input.plan_id, "HardwarePlan", "input.planId")
        row = await svc.grant_plan(actor(info), reseller_id, plan_id)
        await row.fetch_related("plan")
        count = await reseller_usage.reseller_plan_subscriptions(reseller_id, plan_id)
        return ResellerHardwarePlanType.from_usage(reseller_usage.PlanUsage(row, count))

    @strawberry.mutation(
        extensions=guard(CLOUD_INFRASTRUCTURE, Action.DELETE),
        description="Withdraws a hardware plan from a reseller (refused while its companies' "
        "tenants subscribe to it).",
    )
    async def reseller_hardware_plan_revoke(
        self, info: Info, input: ResellerHardwarePlanInput
    ) -> DeletePayload:
        pk = await svc.revoke_plan(
            actor(info),
            _reseller(input.reseller_id),
            pk_of(input.plan_id, "HardwarePlan", "input.planId"),
        )
        return _deleted("ResellerHardwarePlan", pk)

    @strawberry.mutation(
        extensions=guard(CLOUD_INFRASTRUCTURE, Action.UPDATE),
        description="Sets how many addresses of a public IP pool a reseller's companies may "
        "hold together (not below what they hold).",
    )
    async def reseller_ip_pool_quota_set(
        self, info: Info, input: ResellerIpPoolQuotaSetInput
    ) -> ResellerIpPoolQuotaType:
        reseller_id = _reseller(input.reseller_id)
        pool_id = pk_of(input.pool_id, "PublicIpPool", "input.poolId")
        row = await svc.set_ip_pool_quota(actor(info), reseller_id, pool_id, input.max_addresses)
        await row.fetch_related("pool")
        held = await reseller_usage.reseller_pool_addresses(reseller_id, pool_id)
        return ResellerIpPoolQuotaType.from_usage(reseller_usage.PoolUsage(row, held))

    @strawberry.mutation(
        extensions=guard(CLOUD_INFRASTRUCTURE, Action.DELETE),
        description="Takes a public IP pool back from a reseller (refused while its companies "
        "hold addresses of it).",
    )
    async def reseller_ip_pool_quota_remove(
        self, info: Info, input: ResellerIpPoolQuotaRemoveInput
    ) -> DeletePayload:
        pk = await svc.remove_ip_pool_quota(
            actor(info),
            _reseller(input.reseller_id),
            pk_of(input.pool_id, "PublicIpPool", "input.poolId"),
        )
        return _deleted("ResellerIpPoolQuota", pk)
