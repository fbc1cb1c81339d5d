"""What the provider hands to a reseller: storage per cloud repository, hardware plans, public
IP addresses per pool. Provider's unrestricted staff (CLOUD_INFRASTRUCTURE) set and remove
these allocations here; what the reseller's companies use of them, and the reseller's page
(RESELLERS READ, in org scope), is in reseller_usage; the caps that follow for the reseller's
companies are in reseller_caps.

An allocation is not lowered below, nor removed while, what the reseller's companies hold of
it (quotas, subscriptions, addresses).

Repository capacity: a reseller's quota counts against the repository like a tenant quota.
Setting one, the sum of every reseller's quota on the repository plus the quotas of tenants
of companies directly under the provider must stay within capacity × the oversubscription
ratio (`allowOversubscription` to go over). Lock order: reseller allocation row, then the
repository row (as in backupResourceSet).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tortoise.models import Model

from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.errors import BadInput, Conflict, NotFound
from app.models import (
    CloudRepository,
    HardwarePlan,
    Organization,
    OrgKind,
    PublicIpPool,
    ResellerHardwarePlan,
    ResellerIpPoolQuota,
    ResellerRepositoryQuota,
)
from app.services import cloud_infra
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.reseller_usage import (
    reseller_plan_subscriptions,
    reseller_pool_addresses,
    reseller_repository_used_gb,
)
from app.settings import get_settings

MAX_QUOTA_GB = 10**9
MAX_ADDRESSES = 65_536


async def _reseller(reseller_id: int, field: str = "input.resellerId") -> Organization:
    row = await Organization.filter(id=reseller_id, kind=OrgKind.RESELLER).first()
    if row is None:
        raise NotFound("reseller", field=field)
    return row


def _provider(actor: Actor, action: Action) -> None:
    require(actor.p, CLOUD_INFRASTRUCTURE, action)


async def _remove(
    actor: Actor,
    audit_action: str,
    model: type[Model],
    reseller_id: int,
    resource: str,
    resource_id: int,
    what: str,
    in_use: Callable[[], Awaitable[Conflict | None]],
) -> int:
    """Removes the reseller's allocation of `resource` (its row locked), refused with the
    CONFLICT `in_use` gives while the reseller's companies still hold some of it."""
    _provider(actor, Action.DELETE)
    async with audited(actor, audit_action, model.__name__, "", reseller_id) as entry:
        row = (
            await model.filter(reseller_id=reseller_id, **{f"{resource}_id": resource_id})
            .select_for_update()
            .first()
        )
        if row is None:
            raise NotFound(what)
        conflict = await in_use()
        if conflict is not None:
            raise conflict
        await row.delete()
        entry.bind(row.pk, organization_id=reseller_id, **{resource: resource_id})
    return int(row.pk)


# --- storage per cloud repository ----------------------------------------------------------


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
    async def in_use() -> Conflict | None:
        used = await reseller_repository_used_gb(reseller_id, repository_id)
        if not used:
            return None
        return Conflict(
            f"the reseller's companies hold {used} GB of quotas on this repository;"
            " remove them first",
            usedGb=used,
        )

    return await _remove(
        actor,
        "resellerRepositoryQuotaRemove",
        ResellerRepositoryQuota,
        reseller_id,
        "repository",
        repository_id,
        "repository quota of this reseller",
        in_use,
    )


# --- hardware plans ------------------------------------------------------------------------


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
    async def in_use() -> Conflict | None:
        subscriptions = await reseller_plan_subscriptions(reseller_id, plan_id)
        if not subscriptions:
            return None
        return Conflict(
            f"{subscriptions} tenant account(s) of the reseller's companies subscribe to"
            " this plan; unsubscribe them first",
            subscriptions=subscriptions,
        )

    return await _remove(
        actor,
        "resellerHardwarePlanRevoke",
        ResellerHardwarePlan,
        reseller_id,
        "plan",
        plan_id,
        "hardware plan grant of this reseller",
        in_use,
    )


# --- public IP addresses per pool ----------------------------------------------------------


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
    async def in_use() -> Conflict | None:
        held = await reseller_pool_addresses(reseller_id, pool_id)
        if not held:
            return None
        return Conflict(
            f"the reseller's companies hold {held} addresses of this pool; release them first",
            heldAddresses=held,
        )

    return await _remove(
        actor,
        "resellerIpPoolQuotaRemove",
        ResellerIpPoolQuota,
        reseller_id,
        "pool",
        pool_id,
        "public IP pool quota of this reseller",
        in_use,
    )
