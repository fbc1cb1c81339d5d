"""Cloud Connect tenant accounts: registration by provider/reseller staff, settings, credential
rotation, enable/disable, removal, the company's consent to be managed, and BaaS companies.

Who may do what comes from the matrix (TENANT_ACCOUNTS; COMPANIES for BaaS). Two facts of the
seeds hold whatever the cell says, and are checked here:
- account settings, credentials and quotas are the provider's side: company users read them
  (their portal's Configuration cell reaches READ and UPDATE), and their UPDATE is the consent;
- the consent ("Allow this Veeam Backup & Replication installation to be managed by the
  service provider") is the tenant's choice: staff set it only for a BaaS company, which the
  provider manages fully.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import Q

from app.auth.passwords import check_policy, hash_password
from app.authz import scope
from app.authz.capabilities import (
    COMPANY_SERVICE,
    TENANT_ACCOUNTS,
    TENANT_CONSENT,
    Capability,
)
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import BadInput, Conflict, Forbidden, NotFound
from app.models import (
    BackupResource,
    GatewayPool,
    GatewaySelection,
    Organization,
    OrgKind,
    Subtenant,
    TenantAccount,
    TenantAccountType,
    User,
)
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.tenancy import org_in_scope

MAX_CONCURRENT_TASKS = 10_000
MAX_BANDWIDTH_MBPS = 1_000_000


def account_target(account: TenantAccount, capability: Capability = TENANT_ACCOUNTS) -> Target:
    return Target(
        kind=capability.kind,
        organization_id=account.company_id,  # type: ignore[attr-defined]
        organization_kind=OrgKind.COMPANY,
    )


def now() -> datetime:
    return datetime.now(UTC)


def lease_expired(account: TenantAccount, at: datetime | None = None) -> bool:
    expires = account.lease_expires_at
    return expires is not None and expires <= (at or now())


def _q(**filters: Any) -> Q:
    return Q(**filters)


def active_q(path: str = "", at: datetime | None = None) -> Q:
    """Rows whose tenant account is active: enabled, lease not expired, its company and the
    company's parent (reseller, or the provider) enabled. `path` as in scope.tenant_account_q."""
    pre = f"{path}__" if path else ""
    expires = f"{pre}lease_expires_at"
    return (
        _q(**{f"{pre}enabled": True})
        & (_q(**{f"{expires}__isnull": True}) | _q(**{f"{expires}__gt": at or now()}))
        & _q(**{f"{pre}company__enabled": True})
        & _q(**{f"{pre}company__parent__enabled": True})
    )


async def is_active(account: TenantAccount) -> bool:
    """The account works: enabled, lease not expired, company and reseller enabled. Every check
    that needs a working account (remote connections, storage reservations) asks this."""
    if not account.enabled or lease_expired(account):
        return False
    return await TenantAccount.filter(active_q(), id=account.id).exists()


async def account_in_scope(p: Principal, account_id: int, lock: bool = False) -> TenantAccount:
    query = TenantAccount.filter(scope.tenant_account_q(p), id=account_id)
    if lock:
        query = query.select_for_update()
    account = await query.first()
    if account is None:
        raise NotFound("tenant account")
    return account


# --- validation -------------------------------------------------------------------------------


def clean_name(name: str, field: str = "name") -> str:
    name = name.strip()
    if not name:
        raise BadInput("a name is required", field=field)
    if len(name) > 200:
        raise BadInput("the name is longer than 200 characters", field=field)
    if any(ch.isspace() and ch != " " for ch in name):
        raise BadInput("the name must not contain tabs or line breaks", field=field)
    return name


def _check_limits(settings: AccountSettings, prefix: str) -> None:
    if settings.max_concurrent_tasks is not None and not (
        1 <= settings.max_concurrent_tasks <= MAX_CONCURRENT_TASKS
    ):
        raise BadInput(
            f"max concurrent tasks must be between 1 and {MAX_CONCURRENT_TASKS}",
            field=f"{prefix}maxConcurrentTasks",
        )
    if settings.bandwidth_limit_mbps is not None and not (
        1 <= settings.bandwidth_limit_mbps <= MAX_BANDWIDTH_MBPS
    ):
        raise BadInput(
            f"the bandwidth limit must be between 1 and {MAX_BANDWIDTH_MBPS} Mbps (null: none)",
            field=f"{prefix}bandwidthLimitMbps",
        )


async def _pools(pool_ids: list[int], prefix: str) -> list[GatewayPool]:
    ids = sorted(set(pool_ids))
    pools = await GatewayPool.filter(id__in=ids)
    if len(pools) != len(ids):
        raise NotFound("gateway pool", field=f"{prefix}gatewayPoolIds")
    return pools


async def _check_name_free(name: str, exclude_id: int | None = None) -> None:
    query = TenantAccount.filter(name=name)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise Conflict("a tenant account with this name already exists", field="name")


# --- operations ------------------------------------------------------------------------------


UNCHANGED: Any = object()


@dataclass
class AccountSettings:
    """What tenantAccountCreate and tenantAccountUpdate change. `UNCHANGED` (update): keep."""

    name: Any = UNCHANGED
    lease_expires_at: Any = UNCHANGED
    max_concurrent_tasks: Any = UNCHANGED
    bandwidth_limit_mbps: Any = UNCHANGED
    gateway_selection: Any = UNCHANGED
    gateway_pool_ids: Any = UNCHANGED
    gateway_failover: Any = UNCHANGED


def _given(value: Any) -> bool:
    return value is not UNCHANGED


async def _apply(
    account: TenantAccount, s: AccountSettings, creating: bool
) -> tuple[dict[str, Any], list[GatewayPool] | None]:
    """Validate and set the fields on the row; the pools to link (None: unchanged)."""
    prefix = "input."
    checked = AccountSettings(
        max_concurrent_tasks=s.max_concurrent_tasks if _given(s.max_concurrent_tasks) else None,
        bandwidth_limit_mbps=s.bandwidth_limit_mbps if _given(s.bandwidth_limit_mbps) else None,
    )
    _check_limits(checked, prefix)
    changes: dict[str, Any] = {}
    if _given(s.name) and s.name is not None:
        account.name = clean_name(s.name, f"{prefix}name")
        await _check_name_free(account.name, None if creating else account.id)
        changes["name"] = account.name
    elif _given(s.name) and s.name is None:
        raise BadInput("a name is required", field=f"{prefix}name")
    if _given(s.lease_expires_at):
        lease = s.lease_expires_at
        if lease is not None and lease.tzinfo is None:
            raise BadInput(
                "give the lease expiry with a time zone", field=f"{prefix}leaseExpiresAt"
            )
        if creating and lease is not None and lease <= now():
            raise BadInput("the lease expiry is in the past", field=f"{prefix}leaseExpiresAt")
        account.lease_expires_at = lease
        changes["leaseExpiresAt"] = lease.isoformat() if lease else None
    if _given(s.max_concurrent_tasks):
        if s.max_concurrent_tasks is None:
            raise BadInput("max concurrent tasks is required", field=f"{prefix}maxConcurrentTasks")
        account.max_concurrent_tasks = s.max_concurrent_tasks
        changes["maxConcurrentTasks"] = s.max_concurrent_tasks
    if _given(s.bandwidth_limit_mbps):
        account.bandwidth_limit_mbps = s.bandwidth_limit_mbps
        changes["bandwidthLimitMbps"] = s.bandwidth_limit_mbps
    if _given(s.gateway_failover) and s.gateway_failover is not None:
        account.gateway_failover = bool(s.gateway_failover)
        changes["gatewayFailover"] = account.gateway_failover
    pools: list[GatewayPool] | None = None
    selection = account.gateway_selection
    if _given(s.gateway_selection) and s.gateway_selection is not None:
        selection = GatewaySelection(s.gateway_selection)
        account.gateway_selection = selection
        changes["gatewaySelection"] = selection.value
    if _given(s.gateway_pool_ids) and s.gateway_pool_ids is not None:
        pools = await _pools(list(s.gateway_pool_ids), prefix)
        changes["gatewayPoolIds"] = [pool.id for pool in pools]
    if selection is GatewaySelection.ALL:
        if pools:
            raise BadInput(
                "gateway pools are chosen only with the POOLS gateway selection",
                field=f"{prefix}gatewayPoolIds",
            )
        if _given(s.gateway_selection):
            pools = []  # switching to all gateways forgets the chosen pools
    else:
        chosen = (
            pools if pools is not None else ([] if creating else await account.gateway_pools.all())
        )
        if not chosen:
            raise BadInput(
                "choose at least one gateway pool with the POOLS gateway selection",
                field=f"{prefix}gatewayPoolIds",
            )
    return changes, pools


async def _set_pools(account: TenantAccount, pools: list[GatewayPool] | None) -> None:
    if pools is None:
        return
    await account.gateway_pools.clear()
    if pools:
        await account.gateway_pools.add(*pools)


async def create_account(
    actor: Actor,
    company_id: int,
    name: str,
    type: TenantAccountType,
    password: str,
    settings: AccountSettings,
) -> TenantAccount:
    p = actor.p
    require(p, TENANT_ACCOUNTS, Action.CREATE)
    company = await org_in_scope(p, company_id, OrgKind.COMPANY)
    target = Target(
        kind=TENANT_ACCOUNTS.kind, organization_id=company.id, organization_kind=company.kind
    )
    require(p, TENANT_ACCOUNTS, Action.CREATE, target)
    name = clean_name(name, "input.name")
    # The account name is also its login: the password policy keeps it out of the password.
    check_policy(password, name, "input.password")
    password_hash = await asyncio.to_thread(hash_password, password)
    async with audited(
        actor, "tenantAccountCreate", "TenantAccount", organization_id=company.id
    ) as entry:
        account = TenantAccount(
            company_id=company.id,
            type=TenantAccountType(type),
            password_hash=password_hash,
            password_changed_at=now(),
        )
        changes, pools = await _apply(
            account, AccountSettings(**{**vars(settings), "name": name}), True
        )
        await account.save()
        await _set_pools(account, pools)
        entry.bind(account.id, organization_id=company.id, type=account.type.value, **changes)
    return account


async def update_account(actor: Actor, account_id: int, settings: AccountSettings) -> TenantAccount:
    """The type (STANDALONE or VCD) is fixed at creation: the update has no such field."""
    p = actor.p
    account = await account_in_scope(p, account_id)
    require(p, TENANT_ACCOUNTS, Action.UPDATE, account_target(account))
    async with audited(
        actor,
        "tenantAccountUpdate",
        "TenantAccount",
        account.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        account = await account_in_scope(p, account_id, lock=True)
        changes, pools = await _apply(account, settings, False)
        await account.save()
        await _set_pools(account, pools)
        entry.details.update(changes)
    return account


async def rotate_password(actor: Actor, account_id: int, new_password: str) -> TenantAccount:
    p = actor.p
    account = await account_in_scope(p, account_id)
    require(p, TENANT_ACCOUNTS, Action.UPDATE, account_target(account))
    check_policy(new_password, account.name, "input.newPassword")
    password_hash = await asyncio.to_thread(hash_password, new_password)
    async with audited(
        actor,
        "tenantAccountPasswordRotate",
        "TenantAccount",
        account.id,
        account.company_id,  # type: ignore[attr-defined]
    ):
        account.password_hash = password_hash
        account.password_changed_at = now()
        await account.save(update_fields=["password_hash", "password_changed_at"])
    return account


async def close_remote_sessions(actor: Actor, account: TenantAccount, reason: str) -> int:
    """Ends the account's open remote connections, inside the caller's transaction."""
    from app.services import remote  # imported here: remote builds on this module

    return await remote.close_sessions_for_tenant(account.id, reason, actor)


async def set_enabled(actor: Actor, account_id: int, enabled: bool) -> TenantAccount:
    p = actor.p
    account = await account_in_scope(p, account_id)
    require(p, TENANT_ACCOUNTS, Action.UPDATE, account_target(account))
    action = "tenantAccountEnable" if enabled else "tenantAccountDisable"
    async with audited(
        actor,
        action,
        "TenantAccount",
        account.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        account.enabled = enabled
        await account.save(update_fields=["enabled"])
        if not enabled:
            entry.details["remoteSessionsClosed"] = await close_remote_sessions(
                actor, account, "tenant account disabled"
            )
            from app.services import failover_runs  # imported here, like remote

            entry.details.update(
                await failover_runs.terminate(
                    "tenant account disabled", tenant_account_id=account.id
                )
            )
    return account


async def set_consent(actor: Actor, account_id: int, managed_by_provider: bool) -> TenantAccount:
    p = actor.p
    account = await account_in_scope(p, account_id)
    require(p, TENANT_CONSENT, Action.UPDATE, account_target(account, TENANT_CONSENT))
    if account.company_id != p.organization_id:  # type: ignore[attr-defined]
        # Set from outside the company: only when the company is managed as a service.
        company = await Organization.get(id=account.company_id)  # type: ignore[attr-defined]
        if not company.baas:
            raise Forbidden(
                "whether the provider may manage the tenant's backup server is the company's"
                " choice (unless the company is managed as Backup as a Service)"
            )
    async with audited(
        actor,
        "tenantAccountConsentSet",
        "TenantAccount",
        account.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        account.managed_by_provider = managed_by_provider
        await account.save(update_fields=["managed_by_provider"])
        entry.details["managedByProvider"] = managed_by_provider
        if not managed_by_provider:
            entry.details["remoteSessionsClosed"] = await close_remote_sessions(
                actor, account, "consent withdrawn"
            )
    return account


async def delete_account(actor: Actor, account_id: int) -> int:
    """Refused while any of its quotas holds data; its subtenants' users go with it."""
    p = actor.p
    account = await account_in_scope(p, account_id)
    require(p, TENANT_ACCOUNTS, Action.DELETE, account_target(account))
    async with audited(
        actor,
        "tenantAccountDelete",
        "TenantAccount",
        account.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        account = await account_in_scope(p, account_id, lock=True)
        used = await BackupResource.filter(tenant_account_id=account.id, used_gb__gt=0).count()
        if used:
            raise Conflict(
                f"{used} backup resource(s) of this account still hold backups;"
                " the account can be removed once they are empty",
                resources=used,
            )
        users = Subtenant.filter(resource__tenant_account_id=account.id).values_list(
            "user_id", flat=True
        )
        user_ids = list(await users)
        closed = await close_remote_sessions(actor, account, "tenant account removed")
        await User.filter(id__in=user_ids).delete()
        await account.delete()
        entry.details.update(
            name=account.name, subtenantsRemoved=len(user_ids), remoteSessionsClosed=closed
        )
    return account_id


async def set_company_baas(actor: Actor, company_id: int, baas: bool) -> Organization:
    """Backup as a Service: the provider manages the company's tenant-side configuration."""
    p = actor.p
    company = await org_in_scope(p, company_id, OrgKind.COMPANY)
    require(
        p,
        COMPANY_SERVICE,
        Action.UPDATE,
        Target(
            kind=COMPANY_SERVICE.kind, organization_id=company.id, organization_kind=company.kind
        ),
    )
    async with audited(actor, "companyBaasSet", "Company", company.id, company.id) as entry:
        company.baas = baas
        await company.save(update_fields=["baas", "updated_at"])
        entry.details["baas"] = baas
    return company
