"""The caps on a reseller's companies (the provider's allocations to the reseller), checked
for tenant accounts of companies whose parent is a reseller (companies directly under the
provider are not capped), whoever acts:
- backupResourceSet: when a quota grows, the sum of the quotas on that repository over all
  tenant accounts of the reseller's companies stays within the reseller's quota on it (no
  allocation = 0 GB). Lowering a quota is always allowed.
- hardwarePlanSubscribe: the plan is granted to the reseller.
- publicIpAllocate: the reseller's companies' addresses in the pool + count ≤ max_addresses.
Each check locks the reseller's allocation row (SELECT ... FOR UPDATE on PostgreSQL) in the
caller's transaction, so concurrent changes for companies of one reseller queue there.
"""

from __future__ import annotations

from typing import TypeVar

from tortoise.models import Model

from app.errors import Conflict
from app.models import (
    ResellerHardwarePlan,
    ResellerIpPoolQuota,
    ResellerRepositoryQuota,
    TenantAccount,
)
from app.services.reseller_usage import (
    reseller_of_account,
    reseller_pool_addresses,
    reseller_repository_used_gb,
)

M = TypeVar("M", bound=Model)


async def _allocation(model: type[M], missing: str, field: str, **key: int) -> M:
    """The reseller's allocation row, locked in the caller's transaction; CONFLICT naming
    `field` when the provider has not given it."""
    row = await model.filter(**key).select_for_update().first()
    if row is None:
        raise Conflict(missing, field=field)
    return row


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
    allocation = await _allocation(
        ResellerRepositoryQuota,
        "the provider has not allocated this cloud repository to the company's reseller",
        "input.repositoryId",
        reseller_id=reseller_id,
        repository_id=repository_id,
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
    await _allocation(
        ResellerHardwarePlan,
        "the provider has not granted this hardware plan to the company's reseller",
        "input.planId",
        reseller_id=reseller_id,
        plan_id=plan_id,
    )


async def enforce_ip_quota(account: TenantAccount, pool_id: int, count: int) -> None:
    """publicIpAllocate: the reseller's companies' addresses in the pool + count ≤ its max."""
    reseller_id = await reseller_of_account(account)
    if reseller_id is None:
        return
    allocation = await _allocation(
        ResellerIpPoolQuota,
        "the provider has not allocated addresses of this public IP pool to the company's reseller",
        "input.poolId",
        reseller_id=reseller_id,
        pool_id=pool_id,
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
