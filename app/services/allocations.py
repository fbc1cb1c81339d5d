"""Replication resources handed to tenants: hardware plan subscriptions with their VLANs, and
public IP addresses.

Allocation never hands out one VLAN (per host) or one address twice: the unique constraints
(host, vlan_id) and (address) are the guarantee. The candidate rows are locked first on
PostgreSQL (the VLAN ranges, the IP pool), so concurrent requests queue instead of colliding;
should an insert still collide, it is retried with the next free value inside a savepoint.
Every allocation is all-or-nothing: exhaustion raises CONFLICT and nothing is written.
"""

from __future__ import annotations

import ipaddress

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.capabilities import TENANT_ACCOUNTS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import connection_name
from app.errors import BadInput, Conflict, NotFound
from app.models.cloud import (
    HardwarePlan,
    HardwarePlanSubscription,
    PublicIpAllocation,
    PublicIpPool,
    TenantAccount,
    TenantAccountType,
    VlanAllocation,
    VlanRange,
    VmReplica,
)
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require

MAX_IPS_PER_REQUEST = 1024
# Collisions retried per value before giving up (each retry takes a value not tried before).
MAX_ATTEMPTS = 64


def account_target(account: TenantAccount, kind: str = TENANT_ACCOUNTS.kind) -> Target:
    return Target(
        kind=kind,
        organization_id=account.company_id,  # type: ignore[attr-defined]
        organization_kind=OrgKind.COMPANY,
    )


async def account_in_scope(p: Principal, account_id: int, field: str = "id") -> TenantAccount:
    account = await TenantAccount.filter(scope.tenant_account_q(p), id=account_id).first()
    if account is None:
        raise NotFound("tenant account", field=field)
    return account


async def subscription_in_scope(p: Principal, subscription_id: int) -> HardwarePlanSubscription:
    row = await HardwarePlanSubscription.filter(
        scope.tenant_account_q(p, "tenant_account"), id=subscription_id
    ).first()
    if row is None:
        raise NotFound("hardware plan subscription")
    return row


async def public_ip_in_scope(p: Principal, allocation_id: int) -> PublicIpAllocation:
    row = await PublicIpAllocation.filter(
        scope.tenant_account_q(p, "tenant_account"), id=allocation_id
    ).first()
    if row is None:
        raise NotFound("public IP allocation")
    return row


# --- VLANs ---------------------------------------------------------------------------------


async def _vlan_ranges(internet: bool) -> list[VlanRange]:
    # Locked in id order: concurrent subscriptions of the same kind queue here.
    return (
        await VlanRange.filter(internet=internet).order_by("id").select_for_update()  # type: ignore[return-value]
    )


async def _allocate_vlans(
    subscription: HardwarePlanSubscription, internet: bool, count: int
) -> list[VlanAllocation]:
    if count <= 0:
        return []
    ranges = await _vlan_ranges(internet)
    hosts = sorted({r.host for r in ranges})
    taken: set[tuple[str, int]] = set(
        await VlanAllocation.filter(host__in=hosts).values_list("host", "vlan_id")  # type: ignore[arg-type]
    )
    tried: set[tuple[str, int]] = set()
    made: list[VlanAllocation] = []
    attempts = 0
    while len(made) < count:
        candidate = next(
            (
                (r, v)
                for r in ranges
                for v in range(r.first_id, r.last_id + 1)
                if (r.host, v) not in taken and (r.host, v) not in tried
            ),
            None,
        )
        if candidate is None:
            kind = "with" if internet else "without"
            raise Conflict(
                f"no free VLAN is left for networks {kind} internet access "
                f"({len(made)} of {count} found)",
                field="input.planId",
            )
        vlan_range, vlan_id = candidate
        tried.add((vlan_range.host, vlan_id))
        try:
            async with in_transaction(connection_name()):  # a savepoint: a collision undoes one
                row = await VlanAllocation.create(
                    vlan_range=vlan_range,
                    host=vlan_range.host,
                    vlan_id=vlan_id,
                    subscription=subscription,
                )
        except IntegrityError:
            attempts += 1
            if attempts > MAX_ATTEMPTS:
                raise Conflict("too many concurrent VLAN allocations; try again") from None
            continue
        made.append(row)
    return made


async def subscribe(actor: Actor, account_id: int, plan_id: int) -> HardwarePlanSubscription:
    p = actor.p
    require(p, TENANT_ACCOUNTS, Action.CREATE)
    account = await account_in_scope(p, account_id, "input.tenantAccountId")
    require(p, TENANT_ACCOUNTS, Action.CREATE, account_target(account))
    plan = await HardwarePlan.filter(id=plan_id).first()
    if plan is None:
        raise NotFound("hardware plan", field="input.planId")
    async with audited(
        actor,
        "hardwarePlanSubscribe",
        "HardwarePlanSubscription",
        organization_id=account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        # --- reseller cap (app.services.reseller_caps): the plan granted to the reseller
        from app.services.reseller_caps import enforce_plan_granted

        await enforce_plan_granted(account, plan.id)
        # --- end reseller cap
        if await HardwarePlanSubscription.exists(tenant_account_id=account.id, plan_id=plan.id):
            raise Conflict("the tenant account is already subscribed to this plan")
        try:
            async with in_transaction(connection_name()):
                subscription = await HardwarePlanSubscription.create(
                    tenant_account=account, plan=plan
                )
        except IntegrityError:
            raise Conflict("the tenant account is already subscribed to this plan") from None
        with_internet = await _allocate_vlans(subscription, True, plan.networks_with_internet)
        without = await _allocate_vlans(subscription, False, plan.networks_without_internet)
        entry.bind(
            subscription.id,
            tenantAccount=account.name,
            plan=plan.name,
            vlans=[f"{v.host}/{v.vlan_id}" for v in [*with_internet, *without]],
        )
    return subscription


async def unsubscribe(actor: Actor, subscription_id: int) -> HardwarePlanSubscription:
    p = actor.p
    subscription = await subscription_in_scope(p, subscription_id)
    account = await TenantAccount.get(id=subscription.tenant_account_id)  # type: ignore[attr-defined]
    require(p, TENANT_ACCOUNTS, Action.DELETE, account_target(account))
    async with audited(
        actor,
        "hardwarePlanUnsubscribe",
        "HardwarePlanSubscription",
        subscription.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        replicas = await VmReplica.filter(subscription_id=subscription.id).count()
        if replicas:
            raise Conflict(
                f"{replicas} VM replica(s) use this subscription: remove them first", field="id"
            )
        released = await VlanAllocation.filter(subscription_id=subscription.id).delete()
        await subscription.delete()
        entry.details.update(tenantAccount=account.name, vlansReleased=released)
    return subscription


# --- public IPs ----------------------------------------------------------------------------


def pool_addresses(pool: PublicIpPool) -> tuple[int, int, type]:
    first = ipaddress.ip_address(pool.first_address)
    last = ipaddress.ip_address(pool.last_address)
    return int(first), int(last), type(first)


async def allocate_public_ips(
    actor: Actor, account_id: int, pool_id: int, count: int
) -> list[PublicIpAllocation]:
    p = actor.p
    require(p, TENANT_ACCOUNTS, Action.CREATE)
    account = await account_in_scope(p, account_id, "input.tenantAccountId")
    require(p, TENANT_ACCOUNTS, Action.CREATE, account_target(account))
    if account.type is not TenantAccountType.STANDALONE:
        raise BadInput(
            "public IP addresses are for native (standalone) tenant accounts only; a VMware "
            "Cloud Director account gets its addresses from Cloud Director",
            field="input.tenantAccountId",
        )
    if not 1 <= count <= MAX_IPS_PER_REQUEST:
        raise BadInput(f"count must be between 1 and {MAX_IPS_PER_REQUEST}", field="input.count")
    if not await PublicIpPool.exists(id=pool_id):
        raise NotFound("public IP pool", field="input.poolId")
    async with audited(
        actor,
        "publicIpAllocate",
        "PublicIpAllocation",
        organization_id=account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        # --- reseller cap (app.services.reseller_caps): locks the reseller's pool quota
        from app.services.reseller_caps import enforce_ip_quota

        await enforce_ip_quota(account, pool_id, count)
        # --- end reseller cap
        rows = await allocate_addresses(account, pool_id, count)
        entry.bind(
            rows[0].id,
            tenantAccount=account.name,
            addresses=[r.address for r in rows],
        )
    return rows


async def allocate_addresses(
    account: TenantAccount, pool_id: int, count: int
) -> list[PublicIpAllocation]:
    """`count` lowest free addresses of the pool for the account, inside the caller's
    transaction; CONFLICT (and nothing written, once the caller rolls back) when exhausted."""
    pool = await PublicIpPool.filter(id=pool_id).select_for_update().first()
    if pool is None:
        raise NotFound("public IP pool", field="input.poolId")
    first, last, kind = pool_addresses(pool)
    taken = {
        int(ipaddress.ip_address(str(a)))
        for a in await PublicIpAllocation.filter(pool_id=pool.id).values_list("address", flat=True)
    }
    if (last - first + 1) - len(taken) < count:
        raise Conflict(
            f"the pool {pool.name} has {(last - first + 1) - len(taken)} free addresses, "
            f"{count} requested",
            field="input.count",
        )
    made: list[PublicIpAllocation] = []
    value = first
    attempts = 0
    while len(made) < count:
        while value <= last and value in taken:
            value += 1
        if value > last:
            raise Conflict(f"the pool {pool.name} is exhausted", field="input.count")
        address = str(kind(value))
        value += 1
        try:
            async with in_transaction(connection_name()):  # a savepoint per address
                row = await PublicIpAllocation.create(
                    pool_id=pool.id, address=address, tenant_account=account
                )
        except IntegrityError:
            attempts += 1
            if attempts > MAX_ATTEMPTS:
                raise Conflict("too many concurrent IP allocations; try again") from None
            continue
        made.append(row)
    return made


async def release_public_ip(actor: Actor, allocation_id: int) -> PublicIpAllocation:
    p = actor.p
    row = await public_ip_in_scope(p, allocation_id)
    account = await TenantAccount.get(id=row.tenant_account_id)  # type: ignore[attr-defined]
    require(p, TENANT_ACCOUNTS, Action.DELETE, account_target(account))
    async with audited(
        actor,
        "publicIpRelease",
        "PublicIpAllocation",
        row.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        await row.delete()
        entry.details.update(tenantAccount=account.name, address=row.address)
    return row
