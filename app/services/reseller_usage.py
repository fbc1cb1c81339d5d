"""What a reseller's companies use of what the provider allocated to the reseller: which
reseller a company or tenant account is under, the sums and counts over the reseller's
companies' tenant accounts (storage quotas per repository, hardware plan subscriptions, public
IP addresses per pool), and the reseller's resources page with its usage (RESELLERS READ, in
org scope). The caps that follow are in reseller_caps; the provider's side in
reseller_resources.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.functions import Count, Function, Sum
from tortoise.models import Model

from app.authz import scope
from app.authz.capabilities import RESELLERS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import NotFound
from app.models import (
    BackupResource,
    HardwarePlanSubscription,
    Organization,
    OrgKind,
    PublicIpAllocation,
    ResellerHardwarePlan,
    ResellerIpPoolQuota,
    ResellerRepositoryQuota,
    TenantAccount,
)
from app.services.guards import require

# --- lookups -------------------------------------------------------------------------------


async def reseller_of_company(company_id: int) -> int | None:
    """The reseller above the company, or None when the company sits under the provider."""
    rows = await Organization.filter(id=company_id, parent__kind=OrgKind.RESELLER).values_list(
        "parent_id", flat=True
    )
    return int(rows[0]) if rows else None  # type: ignore[call-overload]


async def reseller_of_account(account: TenantAccount) -> int | None:
    return await reseller_of_company(account.company_id)  # type: ignore[attr-defined]


async def reseller_in_scope(p: Principal, reseller_id: int) -> Organization:
    row = await Organization.filter(scope.org_q(p), id=reseller_id, kind=OrgKind.RESELLER).first()
    if row is None:
        raise NotFound("reseller", field="resellerId")
    require(
        p,
        RESELLERS,
        Action.READ,
        Target(kind=RESELLERS.kind, organization_id=row.id, organization_kind=OrgKind.RESELLER),
    )
    return row


# --- what the reseller's companies use ----------------------------------------------------


def reseller_accounts(reseller_id: int, path: str = "tenant_account") -> dict[str, int]:
    return {f"{path}__company__parent_id": reseller_id}


async def reseller_repository_used_gb(
    reseller_id: int, repository_id: int, exclude_account_id: int | None = None
) -> int:
    """Sum of the quotas of the reseller's companies' tenant accounts on the repository."""
    query = BackupResource.filter(repository_id=repository_id, **reseller_accounts(reseller_id))
    if exclude_account_id is not None:
        query = query.exclude(tenant_account_id=exclude_account_id)
    rows = await query.annotate(total=Sum("quota_gb")).group_by("repository_id").values("total")
    return int(rows[0]["total"] or 0) if rows else 0


async def reseller_pool_addresses(reseller_id: int, pool_id: int) -> int:
    return await PublicIpAllocation.filter(
        pool_id=pool_id, **reseller_accounts(reseller_id)
    ).count()


async def reseller_plan_subscriptions(reseller_id: int, plan_id: int) -> int:
    return await HardwarePlanSubscription.filter(
        plan_id=plan_id, **reseller_accounts(reseller_id)
    ).count()


# --- reading -------------------------------------------------------------------------------


@dataclass
class RepositoryUsage:
    row: ResellerRepositoryQuota
    used_gb: int


@dataclass
class PlanUsage:
    row: ResellerHardwarePlan
    subscriptions: int


@dataclass
class PoolUsage:
    row: ResellerIpPoolQuota
    allocated: int


@dataclass
class ResellerResources:
    reseller: Organization
    repositories: list[RepositoryUsage]
    plans: list[PlanUsage]
    pools: list[PoolUsage]


async def _per(model: type[Model], key: str, total: Function, reseller_id: int) -> dict[int, int]:
    """`total` over the reseller's companies' tenant accounts' rows, per `key`, in one query."""
    rows = (
        await model.filter(**reseller_accounts(reseller_id))
        .annotate(total=total)
        .group_by(key)
        .values(key, "total")
    )
    return {r[key]: int(r["total"] or 0) for r in rows}


async def resources(p: Principal, reseller_id: int) -> ResellerResources:
    """What the provider gave the reseller, with what its companies use: six queries."""
    reseller = await reseller_in_scope(p, reseller_id)
    rid = reseller.id
    quotas = await ResellerRepositoryQuota.filter(reseller_id=rid).select_related("repository")
    plans = await ResellerHardwarePlan.filter(reseller_id=rid).select_related("plan")
    pools = await ResellerIpPoolQuota.filter(reseller_id=rid).select_related("pool")
    used = await _per(BackupResource, "repository_id", Sum("quota_gb"), rid)
    subs = await _per(HardwarePlanSubscription, "plan_id", Count("id"), rid)
    ips = await _per(PublicIpAllocation, "pool_id", Count("id"), rid)
    return ResellerResources(
        reseller=reseller,
        repositories=[RepositoryUsage(q, used.get(q.repository_id, 0)) for q in quotas],  # type: ignore[attr-defined]
        plans=[PlanUsage(g, subs.get(g.plan_id, 0)) for g in plans],  # type: ignore[attr-defined]
        pools=[PoolUsage(q, ips.get(q.pool_id, 0)) for q in pools],  # type: ignore[attr-defined]
    )
