"""What the provider hands to a reseller (storage per cloud repository, hardware plans, public
IP addresses per pool), and the caps that follow for the reseller's companies.

Who: provider's unrestricted staff (CLOUD_INFRASTRUCTURE) set and remove the allocations;
reseller staff read their own reseller's (RESELLERS READ, in org scope); the provider reads all.

Caps, for tenant accounts of companies whose parent is a reseller (companies directly under
the provider are not capped), whoever acts:
- backupResourceSet: when a quota grows, the sum of the quotas on that repository over all
  tenant accounts of the reseller's companies stays within the reseller's quota on it (no
  allocation = 0 GB). Lowering a quota is always allowed.
- hardwarePlanSubscribe: the plan is granted to the reseller.
- publicIpAllocate: the reseller's companies' addresses in the pool + count ≤ max_addresses.
Each check locks the reseller's allocation row (SELECT ... FOR UPDATE on PostgreSQL) in the
caller's transaction, so concurrent changes for companies of one reseller queue there.

Repository capacity: a reseller's quota counts against the repository like a tenant quota.
Setting one, the sum of every reseller's quota on the repository plus the quotas of tenants
of companies directly under the provider must stay within capacity × the oversubscription
ratio (`allowOversubscription` to go over). Lock order: reseller allocation row, then the
repository row (as in backupResourceSet).
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.functions import Count, Sum

from app.authz import scope
from app.authz.capabilities import CLOUD_INFRASTRUCTURE, RESELLERS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import BadInput, Conflict, NotFound
from app.models import (
    BackupResource,
    CloudRepository,
    HardwarePlan,
    HardwarePlanSubscription,
    Organization,
    OrgKind,
    PublicIpAllocation,
    PublicIpPool,
    ResellerHardwarePlan,
    ResellerIpPoolQuota,
    ResellerRepositoryQuota,
    TenantAccount,
)
from app.services import cloud_infra
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.settings import get_settings

MAX_QUOTA_GB = 10**9
MAX_ADDRESSES = 65_536


# --- lookups -------------------------------------------------------------------------------


async def reseller_of_company(company_id: int) -> int | None:
    """The reseller above the company, or None when the company sits under the provider."""
    rows = await Organization.filter(id=company_id, parent__kind=OrgKind.RESELLER).values_list(
        "parent_id", flat=True
    )
    return int(rows[0]) if rows else None  # type: ignore[call-overload]


async def reseller_of_account(account: TenantAccount) -> int | None:
    return await reseller_of_company(account.company_id)  # type: ignore[attr-defined]


async def _reseller(reseller_id: int, field: str = "input.resellerId") -> Organization:
    row = await Organization.filter(id=reseller_id, kind=OrgKind.RESELLER).first()
    if row is None:
        raise NotFound("reseller", field=field)
    return row


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


def _reseller_accounts(reseller_id: int, path: str = "tenant_account") -> dict[str, int]:
    return {f"{path}__company__parent_id": reseller_id}


async def reseller_repository_used_gb(
    reseller_id: int, repository_id: int, exclude_account_id: int | None = None
) -> int:
    """Sum of the quotas of the reseller's companies' tenant accounts on the repository."""
    query = BackupResource.filter(repository_id=repository_id, **_reseller_accounts(reseller_id))
    if exclude_account_id is not None:
        query = query.exclude(tenant_account_id=exclude_account_id)
    rows = await query.annotate(total=Sum("quota_gb")).group_by("repository_id").values("total")
    return int(rows[0]["total"] or 0) if rows else 0


async def reseller_pool_addresses(reseller_id: int, pool_id: int) -> int:
    return await PublicIpAllocation.filter(
        pool_id=pool_id, **_reseller_accounts(reseller_id)
    ).count()


async def reseller_plan_subscriptions(reseller_id: int, plan_id: int) -> int:
    return await HardwarePlanSubscription.filter(
        plan_id=plan_id, **_reseller_accounts(reseller_id)
    ).count()


# --- enforcement (inside the caller's transaction) -----------------------------------------


async def enforce_repository_quota(
    account: TenantAccount, repository_id: int, quota_gb: int, previous_gb: int
) -> bool:
    """backupResourceSet: the reseller's companies together stay within the reseller's quota.
    True when the reseller's quota is the limit (the repository's capacity was checked when
    the provider gave it), False for a company directly under the provider."""
    reseller_id = await reseller_of_account(account)
    if reseller_id is None:
        return False
    if quota_gb <= previous_gb:
        return True
    allocation = (
        await ResellerRepositoryQuota.filter(reseller_id=reseller_id, repository_id=repository_id)
        .select_for_update()
        .first()
    )
    if allocation is None:
        raise Conflict(
            "the provider has not allocated this cloud repository to the company's reseller",
            field="input.repositoryId",
        )
    others = await reseller_repository_used_gb(reseller_id, repository_id, account.id)
    if others + quota_gb > allocation.quota_gb:
        left = max(allocation.quota_gb - others, 0)
        raise Conflict(
            f"the reseller's companies would hold {others + quota_gb} GB on this repository,"
            f" more than the {allocation.quota_gb} GB the provider allocated to the reseller;"
            f" {left} GB are left for this tenant account",
            field="input.quotaGb",
            resellerQuotaGb=allocation.quota_gb,
            availableGb=left,
        )
    return True


async def enforce_plan_granted(account: TenantAccount, plan_id: int) -> None:
    """hardwarePlanSubscribe: the plan is granted to the reseller (its row locked, so a
    concurrent revoke waits and then sees the subscription)."""
    reseller_id = await reseller_of_account(account)
    if reseller_id is None:
        return
    grant = (
        await ResellerHardwarePlan.filter(reseller_id=reseller_id, plan_id=plan_id)
        .select_for_update()
        .first()
    )
    if grant is None:
        raise Conflict(
            "the provider has not granted this hardware plan to the company's reseller",
            field="input.planId",
        )


async def enforce_ip_quota(account: TenantAccount, pool_id: int, count: int) -> None:
    """publicIpAllocate: the reseller's companies' addresses in the pool + count ≤ its max."""
    reseller_id = await reseller_of_account(account)
    if reseller_id is None:
        return
    allocation = (
        await ResellerIpPoolQuota.filter(reseller_id=reseller_id, pool_id=pool_id)
        .select_for_update()
        .first()
    )
    if allocation is None:
        raise Conflict(
            "the provider has not allocated addresses of this public IP pool to the company's"
            " reseller",
            field="input.poolId",
        )
    held = await reseller_pool_addresses(reseller_id, pool_id)
    if held + count > allocation.max_addresses:
        left = max(allocation.max_addresses - held, 0)
        raise Conflict(
            f"the reseller's companies hold {held} of the {allocation.max_addresses} addresses"
            f" of this pool the provider allocated to the reseller; {count} requested,"
            f" {left} left",
            field="input.count",
            maxAddresses=allocation.max_addresses,
            availableAddresses=left,
        )


# --- provider side: setting what resellers get ---------------------------------------------


def _provider(actor: Actor, action: Action) -> None:
    require(actor.p, CLOUD_INFRASTRUCTURE, action)


async def set_repository_quota(
    actor: Actor,
    reseller_id: int,
    repository_id: int,
    quota_gb: int,
    allow_oversubscription: bool = False,
) -> ResellerRepositoryQuota:
    _provider(actor, Action.UPDATE)
    if not 1 <= quota_gb <= MAX_QUOTA_GB:
        raise BadInput(f"the quota must be between 1 and {MAX_QUOTA_GB} GB", field="input.quotaGb")
    await _reseller(reseller_id)
    if not await CloudRepository.exists(id=repository_id):
        raise NotFound("cloud repository", field="input.repositoryId")
    async with audited(
        actor, "resellerRepositoryQuotaSet", "ResellerRepositoryQuota", organization_id=reseller_id
    ) as entry:
        row = (
            await ResellerRepositoryQuota.filter(
                reseller_id=reseller_id, repository_id=repository_id
            )
            .select_for_update()
            .first()
        )
        used = await reseller_repository_used_gb(reseller_id, repository_id)
        if quota_gb < used:
            raise Conflict(
                f"the reseller's companies already hold {used} GB on this repository; the"
                f" quota ({quota_gb} GB) cannot be lower",
                field="input.quotaGb",
                usedGb=used,
            )
        repo = await CloudRepository.filter(id=repository_id).select_for_update().first()
        if repo is None:
            raise NotFound("cloud repository", field="input.repositoryId")
        previous = row.quota_gb if row else 0
        if quota_gb > previous and not allow_oversubscription:
            ratio = get_settings().cloud_oversubscription_ratio
            total = await cloud_infra.allocated_gb(repository_id, reseller_id) + quota_gb
            if total > repo.capacity_gb * ratio:
                raise Conflict(
                    f"the quotas on repository {repo.name!r} would total {total} GB, over its"
                    f" {repo.capacity_gb} GB capacity × {ratio:g} oversubscription ratio; set"
                    " allowOversubscription to go over it",
                    field="input.quotaGb",
                    capacityGb=repo.capacity_gb,
                    allocatedGb=total - quota_gb,
                )
        if row is None:
            row = await ResellerRepositoryQuota.create(
                reseller_id=reseller_id, repository_id=repository_id, quota_gb=quota_gb
            )
        else:
            row.quota_gb = quota_gb
            await row.save(update_fields=["quota_gb"])
        entry.bind(
            row.id,
            organization_id=reseller_id,
            repository=repository_id,
            quotaGb=quota_gb,
            previousQuotaGb=previous,
            allowOversubscription=allow_oversubscription,
        )
    return row


async def remove_repository_quota(actor: Actor, reseller_id: int, repository_id: int) -> int:
    _provider(actor, Action.DELETE)
    async with audited(
        actor, "resellerRepositoryQuotaRemove", "ResellerRepositoryQuota", "", reseller_id
    ) as entry:
        row = (
            await ResellerRepositoryQuota.filter(
                reseller_id=reseller_id, repository_id=repository_id
            )
            .select_for_update()
            .first()
        )
        if row is None:
            raise NotFound("repository quota of this reseller")
        used = await reseller_repository_used_gb(reseller_id, repository_id)
        if used:
            raise Conflict(
                f"the reseller's companies hold {used} GB of quotas on this repository;"
                " remove them first",
                usedGb=used,
            )
        await row.delete()
        entry.bind(row.id, organization_id=reseller_id, repository=repository_id)
    return row.id


async def grant_plan(actor: Actor, reseller_id: int, plan_id: int) -> ResellerHardwarePlan:
    _provider(actor, Action.CREATE)
    await _reseller(reseller_id)
    if not await HardwarePlan.exists(id=plan_id):
        raise NotFound("hardware plan", field="input.planId")
    async with audited(
        actor, "resellerHardwarePlanGrant", "ResellerHardwarePlan", organization_id=reseller_id
    ) as entry:
        if await ResellerHardwarePlan.exists(reseller_id=reseller_id, plan_id=plan_id):
            raise Conflict("the plan is already granted to this reseller", field="input.planId")
        row = await ResellerHardwarePlan.create(reseller_id=reseller_id, plan_id=plan_id)
        entry.bind(row.id, organization_id=reseller_id, plan=plan_id)
    return row


async def revoke_plan(actor: Actor, reseller_id: int, plan_id: int) -> int:
    _provider(actor, Action.DELETE)
    async with audited(
        actor, "resellerHardwarePlanRevoke", "ResellerHardwarePlan", "", reseller_id
    ) as entry:
        row = (
            await ResellerHardwarePlan.filter(reseller_id=reseller_id, plan_id=plan_id)
            .select_for_update()
            .first()
        )
        if row is None:
            raise NotFound("hardware plan grant of this reseller")
        subscriptions = await reseller_plan_subscriptions(reseller_id, plan_id)
        if subscriptions:
            raise Conflict(
                f"{subscriptions} tenant account(s) of the reseller's companies subscribe to"
                " this plan; unsubscribe them first",
                subscriptions=subscriptions,
            )
        await row.delete()
        entry.bind(row.id, organization_id=reseller_id, plan=plan_id)
    return row.id


async def set_ip_pool_quota(
    actor: Actor, reseller_id: int, pool_id: int, max_addresses: int
) -> ResellerIpPoolQuota:
    _provider(actor, Action.UPDATE)
    if not 1 <= max_addresses <= MAX_ADDRESSES:
        raise BadInput(
            f"max addresses must be between 1 and {MAX_ADDRESSES}", field="input.maxAddresses"
        )
    await _reseller(reseller_id)
    if not await PublicIpPool.exists(id=pool_id):
        raise NotFound("public IP pool", field="input.poolId")
    async with audited(
        actor, "resellerIpPoolQuotaSet", "ResellerIpPoolQuota", organization_id=reseller_id
    ) as entry:
        row = (
            await ResellerIpPoolQuota.filter(reseller_id=reseller_id, pool_id=pool_id)
            .select_for_update()
            .first()
        )
        held = await reseller_pool_addresses(reseller_id, pool_id)
        if max_addresses < held:
            raise Conflict(
                f"the reseller's companies already hold {held} addresses of this pool; the"
                f" maximum ({max_addresses}) cannot be lower",
                field="input.maxAddresses",
                heldAddresses=held,
            )
        previous = row.max_addresses if row else 0
        if row is None:
            row = await ResellerIpPoolQuota.create(
                reseller_id=reseller_id, pool_id=pool_id, max_addresses=max_addresses
            )
        else:
            row.max_addresses = max_addresses
            await row.save(update_fields=["max_addresses"])
        entry.bind(
            row.id,
            organization_id=reseller_id,
            pool=pool_id,
            maxAddresses=max_addresses,
            previousMaxAddresses=previous,
        )
    return row


async def remove_ip_pool_quota(actor: Actor, reseller_id: int, pool_id: int) -> int:
    _provider(actor, Action.DELETE)
    async with audited(
        actor, "resellerIpPoolQuotaRemove", "ResellerIpPoolQuota", "", reseller_id
    ) as entry:
        row = (
            await ResellerIpPoolQuota.filter(reseller_id=reseller_id, pool_id=pool_id)
            .select_for_update()
            .first()
        )
        if row is None:
            raise NotFound("public IP pool quota of this reseller")
        held = await reseller_pool_addresses(reseller_id, pool_id)
        if held:
            raise Conflict(
                f"the reseller's companies hold {held} addresses of this pool; release them first",
                heldAddresses=held,
            )
        await row.delete()
        entry.bind(row.id, organization_id=reseller_id, pool=pool_id)
    return row.id


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


async def resources(p: Principal, reseller_id: int) -> ResellerResources:
    """What the provider gave the reseller, with what its companies use: six queries."""
    reseller = await reseller_in_scope(p, reseller_id)
    rid = reseller.id
    quotas = await ResellerRepositoryQuota.filter(reseller_id=rid).select_related("repository")
    plans = await ResellerHardwarePlan.filter(reseller_id=rid).select_related("plan")
    pools = await ResellerIpPoolQuota.filter(reseller_id=rid).select_related("pool")
    used = {
        r["repository_id"]: int(r["total"] or 0)
        for r in await BackupResource.filter(**_reseller_accounts(rid))
        .annotate(total=Sum("quota_gb"))
        .group_by("repository_id")
        .values("repository_id", "total")
    }
    subs = {
        r["plan_id"]: int(r["n"])
        for r in await HardwarePlanSubscription.filter(**_reseller_accounts(rid))
        .annotate(n=Count("id"))
        .group_by("plan_id")
        .values("plan_id", "n")
    }
    ips = {
        r["pool_id"]: int(r["n"])
        for r in await PublicIpAllocation.filter(**_reseller_accounts(rid))
        .annotate(n=Count("id"))
        .group_by("pool_id")
        .values("pool_id", "n")
    }
    return ResellerResources(
        reseller=reseller,
        repositories=[RepositoryUsage(q, used.get(q.repository_id, 0)) for q in quotas],  # type: ignore[attr-defined]
        plans=[PlanUsage(g, subs.get(g.plan_id, 0)) for g in plans],  # type: ignore[attr-defined]
        pools=[PoolUsage(q, ips.get(q.pool_id, 0)) for q in pools],  # type: ignore[attr-defined]
    )
