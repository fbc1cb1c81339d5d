"""Test setup: give every reseller an allocation of a repository, plan or pool, so tests of
companies under a reseller (capped by app.services.reseller_caps) can use them."""

from __future__ import annotations

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

# A quarter of the repository each: the world's two resellers commit half its capacity, so
# companies directly under the provider still find room (reseller quotas count against it).
RESELLER_SHARE = 4
PLENTY_ADDRESSES = 65_536


async def give_resellers(
    repository: CloudRepository | None = None,
    plan: HardwarePlan | None = None,
    pool: PublicIpPool | None = None,
) -> None:
    for reseller in await Organization.filter(kind=OrgKind.RESELLER):
        if repository is not None:
            await ResellerRepositoryQuota.create(
                reseller=reseller,
                repository=repository,
                quota_gb=repository.capacity_gb // RESELLER_SHARE,
            )
        if plan is not None:
            await ResellerHardwarePlan.create(reseller=reseller, plan=plan)
        if pool is not None:
            await ResellerIpPoolQuota.create(
                reseller=reseller, pool=pool, max_addresses=PLENTY_ADDRESSES
            )
