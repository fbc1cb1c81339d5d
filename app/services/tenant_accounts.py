"""Cloud Connect tenant accounts: registration by provider/reseller staff, settings, credential
rotation, enable/disable, removal, the company's consent to be managed, and BaaS companies.

Who may do what comes from the matrix (TENANT_ACCOUNTS; COMPANIES for BaaS). Two facts of the
seeds hold whatever the cell says, and are checked here:
- account settings, credentials and quotas are the provider's side: company users read them
  (their portal's Configuration cell reaches READ and UPDATE), and their UPDATE is the consent;
- the consent ("Allow this Veeam Backup & Replication installation to be managed by the
  service provider") is the tenant's choice: staff set it only for a BaaS company, which the
  provider manages fully.

The settings' validation is in tenant_account_settings; whether an account works (enabled,
lease, company and reseller enabled) in tenant_account_status.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

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
from app.errors import Conflict, Forbidden, NotFound
from app.models import (
    BackupResource,
    Organization,
    OrgKind,
    Subtenant,
    TenantAccount,
    TenantAccountType,
    User,
)
from app.services.actor import Actor
from app.services.audit import PendingEntry, audited
from app.services.guards import require
from app.services.tenancy import org_in_scope
from app.services.tenant_account_settings import (
    AccountSettings,
    apply_settings,
    clean_name,
    set_pools,
)
from app.services.tenant_account_status import now


def account_target(account: TenantAccount, capability: Capability = TENANT_ACCOUNTS) -> Target:
    return Target(
        kind=capability.kind,
        organization_id=account.company_id,  # type: ignore[attr-defined]
        organization_kind=OrgKind.COMPANY,
    )


async def account_in_scope(p: Principal, account_id: int, lock: bool = False) -> TenantAccount:
    query = TenantAccount.filter(scope.tenant_account_q(p), id=account_id)
    if lock:
        query = query.select_for_update()
    account = await query.first()
    if account is None:
        raise NotFound("tenant account")
    return account


async def _account_to_change(
    actor: Actor, account_id: int, action: Action, capability: Capability = TENANT_ACCOUNTS
) -> TenantAccount:
    """The account in the actor's scope that the engine lets it change (before the audit's
    transaction)."""
    account = await account_in_scope(actor.p, account_id)
    require(actor.p, capability, action, account_target(account, capability))
    return account


def _audited(
    actor: Actor, action: str, account: TenantAccount
) -> AbstractAsyncContextManager[PendingEntry]:
    return audited(
        actor,
        action,
        "TenantAccount",
        account.id,
        account.company_id,  # type: ignore[attr-defined]
    )


# --- operations ------------------------------------------------------------------------------


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
        changes, pools = await apply_settings(
            account, AccountSettings(**{**vars(settings), "name": name}), True
        )
        await account.save()
        await set_pools(account, pools)
        entry.bind(account.id, organization_id=company.id, type=account.type.value, **changes)
    return account


async def update_account(actor: Actor, account_id: int, settings: AccountSettings) -> TenantAccount:
    """The type (STANDALONE or VCD) is fixed at creation: the update has no such field."""
    account = await _account_to_change(actor, account_id, Action.UPDATE)
    async with _audited(actor, "tenantAccountUpdate", account) as entry:
        account = await account_in_scope(actor.p, account_id, lock=True)
        changes, pools = await apply_settings(account, settings, False)
        await account.save()
        await set_pools(account, pools)
        entry.details.update(changes)
    return account


async def rotate_password(actor: Actor, account_id: int, new_password: str) -> TenantAccount:
    account = await _account_to_change(actor, account_id, Action.UPDATE)
    check_policy(new_password, account.name, "input.newPassword")
    password_hash = await asyncio.to_thread(hash_password, new_password)
    async with _audited(actor, "tenantAccountPasswordRotate", account):
        account.password_hash = password_hash
        account.password_changed_at = now()
        await account.save(update_fields=["password_hash", "password_changed_at"])
    return account


async def close_remote_sessions(actor: Actor, account: TenantAccount, reason: str) -> int:
    """Ends the account's open remote connections, inside the caller's transaction."""
    from app.services import remote  # imported here: remote builds on this module

    return await remote.close_sessions_for_tenant(account.id, reason, actor)


async def set_enabled(actor: Actor, account_id: int, enabled: bool) -> TenantAccount:
    account = await _account_to_change(actor, account_id, Action.UPDATE)
    action = "tenantAccountEnable" if enabled else "tenantAccountDisable"
    async with _audited(actor, action, account) as entry:
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
    account = await _account_to_change(actor, account_id, Action.UPDATE, TENANT_CONSENT)
    if account.company_id != p.organization_id:  # type: ignore[attr-defined]
        # Set from outside the company: only when the company is managed as a service.
        company = await Organization.get(id=account.company_id)  # type: ignore[attr-defined]
        if not company.baas:
            raise Forbidden(
                "whether the provider may manage the tenant's backup server is the company's"
                " choice (unless the company is managed as Backup as a Service)"
            )
    async with _audited(actor, "tenantAccountConsentSet", account) as entry:
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
    account = await _account_to_change(actor, account_id, Action.DELETE)
    async with _audited(actor, "tenantAccountDelete", account) as entry:
        account = await account_in_scope(actor.p, account_id, lock=True)
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
