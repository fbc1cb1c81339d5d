"""GraphQL types of what the provider gave a reseller, with its companies' usage."""

from __future__ import annotations

import strawberry

from app.graphql.ids import to_global_id
from app.services.reseller_usage import (
    PlanUsage,
    PoolUsage,
    RepositoryUsage,
    ResellerResources,
)


def _gid(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(to_global_id(type_name, pk))


@strawberry.type(
    name="ResellerRepositoryQuota",
    description="Storage on a cloud repository the provider allocated to a reseller.",
)
class ResellerRepositoryQuotaType:
    id: strawberry.ID
    reseller_id: strawberry.ID
    repository_id: strawberry.ID
    repository_name: str
    quota_gb: int
    used_gb: int = strawberry.field(
        description="Sum of the quotas of the reseller's companies' tenant accounts on it."
    )
    free_gb: int

    @classmethod
    def from_usage(cls, u: RepositoryUsage) -> ResellerRepositoryQuotaType:
        row = u.row
        return cls(
            id=_gid("ResellerRepositoryQuota", row.id),
            reseller_id=_gid("Reseller", row.reseller_id),  # type: ignore[attr-defined]
            repository_id=_gid("CloudRepository", row.repository_id),  # type: ignore[attr-defined]
            repository_name=row.repository.name,
            quota_gb=row.quota_gb,
            used_gb=u.used_gb,
            free_gb=max(row.quota_gb - u.used_gb, 0),
        )


@strawberry.type(
    name="ResellerHardwarePlan",
    description="A hardware plan the reseller may subscribe its companies' tenants to.",
)
class ResellerHardwarePlanType:
    id: strawberry.ID
    reseller_id: strawberry.ID
    plan_id: strawberry.ID
    plan_name: str
    subscriptions: int = strawberry.field(
        description="Subscriptions of the reseller's companies' tenant accounts to the plan."
    )

    @classmethod
    def from_usage(cls, u: PlanUsage) -> ResellerHardwarePlanType:
        row = u.row
        return cls(
            id=_gid("ResellerHardwarePlan", row.id),
            reseller_id=_gid("Reseller", row.reseller_id),  # type: ignore[attr-defined]
            plan_id=_gid("HardwarePlan", row.plan_id),  # type: ignore[attr-defined]
            plan_name=row.plan.name,
            subscriptions=u.subscriptions,
        )


@strawberry.type(
    name="ResellerIpPoolQuota",
    description="How many addresses of a public IP pool the reseller's companies may hold.",
)
class ResellerIpPoolQuotaType:
    id: strawberry.ID
    reseller_id: strawberry.ID
    pool_id: strawberry.ID
    pool_name: str
    max_addresses: int
    allocated: int = strawberry.field(
        description="Addresses of the pool held by the reseller's companies' tenant accounts."
    )

    @classmethod
    def from_usage(cls, u: PoolUsage) -> ResellerIpPoolQuotaType:
        row = u.row
        return cls(
            id=_gid("ResellerIpPoolQuota", row.id),
            reseller_id=_gid("Reseller", row.reseller_id),  # type: ignore[attr-defined]
            pool_id=_gid("PublicIpPool", row.pool_id),  # type: ignore[attr-defined]
            pool_name=row.pool.name,
            max_addresses=row.max_addresses,
            allocated=u.allocated,
        )


@strawberry.type(
    name="ResellerResources",
    description="What the provider gave a reseller to hand out to its companies.",
)
class ResellerResourcesType:
    reseller_id: strawberry.ID
    repositories: list[ResellerRepositoryQuotaType]
    hardware_plans: list[ResellerHardwarePlanType]
    ip_pools: list[ResellerIpPoolQuotaType]

    @classmethod
    def from_resources(cls, r: ResellerResources) -> ResellerResourcesType:
        return cls(
            reseller_id=_gid("Reseller", r.reseller.id),
            repositories=[ResellerRepositoryQuotaType.from_usage(u) for u in r.repositories],
            hardware_plans=[ResellerHardwarePlanType.from_usage(u) for u in r.plans],
            ip_pools=[ResellerIpPoolQuotaType.from_usage(u) for u in r.pools],
        )
