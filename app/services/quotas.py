"""Backup resources (a tenant's storage quota on one cloud repository) and subtenants (a user
with the Subtenant role and a quota inside one of those resources).

Invariants, each kept under concurrency by locking the row that guards it (SELECT ... FOR
UPDATE on PostgreSQL) inside the mutation's transaction:
- a resource's quota is never below its used space, nor below the sum of its subtenants'
  quotas (lock: the BackupResource row; for a new resource, the TenantAccount row);
- each subtenant's quota is within the tenant's quota, and the sum of the subtenants' quotas
  is too ("unlimited", null, counts 0 in the sum and is capped by the tenant's quota at use);
- space reserved (used) never exceeds the resource's quota, nor a subtenant's own quota.
"""

from __future__ import annotations

import logging
from typing import Any

from tortoise.functions import Sum

from app.authz import scope
from app.authz.capabilities import SUBTENANTS, TENANT_ACCOUNTS
from app.authz.engine import portal_for
from app.authz.matrix import Action, RoleScope, load_matrix
from app.authz.principal import Principal, Target
from app.errors import BadInput, Conflict, Forbidden, NotFound
from app.models import (
    BackupResource,
    CloudRepository,
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
from app.services.tenant_account_settings import UNCHANGED
from app.services.tenant_account_status import is_active
from app.services.tenant_accounts import account_in_scope, account_target
from app.services.users import NewUser, create_user_row
from app.settings import get_settings

log = logging.getLogger(__name__)

MAX_QUOTA_GB = 10**9


def subtenant_role_name() -> str:
    """The company portal's role limited to its own computers (the seeds' Subtenant)."""
    portal = portal_for(OrgKind.COMPANY, get_settings().enterprise)
    return next(
        r.name for r in load_matrix().portals[portal].roles if r.scope is RoleScope.OWN_COMPUTERS
    )


def subtenant_target(company_id: int) -> Target:
    return Target(
        kind=SUBTENANTS.kind, organization_id=company_id, organization_kind=OrgKind.COMPANY
    )


def _check_quota(quota_gb: int | None, field: str, nullable: bool = False) -> None:
    if quota_gb is None:
        if not nullable:
            raise BadInput("a quota is required", field=field)
        return
    if quota_gb < 1 or quota_gb > MAX_QUOTA_GB:
        raise BadInput(f"the quota must be between 1 and {MAX_QUOTA_GB} GB", field=field)


async def resource_in_scope(p: Principal, resource_id: int, lock: bool = False) -> BackupResource:
    query = BackupResource.filter(scope.tenant_account_q(p, "tenant_account"), id=resource_id)
    if lock:
        query = query.select_for_update()
    resource = await query.first()
    if resource is None:
        raise NotFound("backup resource")
    return resource


async def subtenant_in_scope(p: Principal, subtenant_id: int) -> Subtenant:
    query = Subtenant.filter(scope.tenant_account_q(p, "resource__tenant_account"), id=subtenant_id)
    sub = await query.first()
    if sub is None:
        raise NotFound("subtenant")
    return sub


async def _locked_subtenant(subtenant_id: int) -> Subtenant:
    # By primary key only: PostgreSQL refuses FOR UPDATE across the scope's outer join.
    sub = await Subtenant.filter(id=subtenant_id).select_for_update().first()
    if sub is None:
        raise NotFound("subtenant")
    return sub


async def _company_id_of_resource(resource: BackupResource) -> int:
    account = await TenantAccount.get(id=resource.tenant_account_id)  # type: ignore[attr-defined]
    return int(account.company_id)  # type: ignore[attr-defined]


async def subtenant_quota_sum(resource_id: int, exclude_id: int | None = None) -> int:
    query = Subtenant.filter(resource_id=resource_id, quota_gb__isnull=False)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    row = await query.annotate(total=Sum("quota_gb")).first().values("total")
    return int((row or {}).get("total") or 0)


async def _check_capacity(repository_id: int, extra_gb: int, allow_override: bool) -> None:
    """Repository oversubscription is app.services.cloud_infra's rule (it locks the row)."""
    from app.services import cloud_infra

    await cloud_infra.check_capacity(repository_id, extra_gb, allow_override)


# --- backup resources ------------------------------------------------------------------------


async def set_resource(
    actor: Actor,
    account_id: int,
    repository_id: int,
    quota_gb: int,
    allow_oversubscription: bool = False,
) -> BackupResource:
    """Creates the tenant's quota on the repository, or changes it."""
    p = actor.p
    account = await account_in_scope(p, account_id)
    require(p, TENANT_ACCOUNTS, Action.UPDATE, account_target(account))
    _check_quota(quota_gb, "input.quotaGb")
    if not await CloudRepository.filter(id=repository_id).exists():
        raise NotFound("cloud repository", field="input.repositoryId")
    company_id = account.company_id  # type: ignore[attr-defined]
    async with audited(
        actor, "backupResourceSet", "BackupResource", organization_id=company_id
    ) as entry:
        # The account row serialises creating the (account, repository) resource.
        await account_in_scope(p, account_id, lock=True)
        resource = (
            await BackupResource.filter(tenant_account_id=account.id, repository_id=repository_id)
            .select_for_update()
            .first()
        )
        old = resource.quota_gb if resource else 0
        if resource is not None:
            if quota_gb < resource.used_gb:
                raise Conflict(
                    f"the quota ({quota_gb} GB) would be below the space already used"
                    f" ({resource.used_gb} GB)",
                    field="input.quotaGb",
                    usedGb=resource.used_gb,
                )
            reserved = await subtenant_quota_sum(resource.id)
            if quota_gb < reserved:
                raise Conflict(
                    f"the quota ({quota_gb} GB) would be below the sum of the subtenants' quotas"
                    f" ({reserved} GB); lower theirs first",
                    field="input.quotaGb",
                    subtenantQuotaGb=reserved,
                )
        # --- reseller cap (app.services.reseller_caps): locks the reseller's quota row
        from app.services.reseller_caps import enforce_repository_quota

        capped_by_reseller = await enforce_repository_quota(account, repository_id, quota_gb, old)
        # --- end reseller cap
        if not capped_by_reseller:
            await _check_capacity(repository_id, quota_gb - old, allow_oversubscription)
        if resource is None:
            resource = await BackupResource.create(
                tenant_account_id=account.id, repository_id=repository_id, quota_gb=quota_gb
            )
        else:
            resource.quota_gb = quota_gb
            await resource.save(update_fields=["quota_gb"])
        entry.bind(
            resource.id,
            organization_id=company_id,
            tenantAccount=account.id,
            repository=repository_id,
            quotaGb=quota_gb,
            previousQuotaGb=old,
            allowOversubscription=allow_oversubscription,
        )
    return resource


async def remove_resource(actor: Actor, resource_id: int) -> int:
    p = actor.p
    resource = await resource_in_scope(p, resource_id)
    account = await TenantAccount.get(id=resource.tenant_account_id)  # type: ignore[attr-defined]
    require(p, TENANT_ACCOUNTS, Action.DELETE, account_target(account))
    async with audited(
        actor,
        "backupResourceRemove",
        "BackupResource",
        resource.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        resource = await resource_in_scope(p, resource_id, lock=True)
        if resource.used_gb > 0:
            raise Conflict(
                f"the backup resource still holds {resource.used_gb} GB of backups",
                usedGb=resource.used_gb,
            )
        subtenants = await Subtenant.filter(resource_id=resource.id).count()
        if subtenants:
            raise Conflict(
                f"the backup resource has {subtenants} subtenant(s); remove them first",
                subtenants=subtenants,
            )
        await resource.delete()
        entry.details.update(tenantAccount=account.id, quotaGb=resource.quota_gb)
    return resource_id


async def reserve_space(resource_id: int, gb: int, subtenant_id: int | None = None) -> int:
    """Takes `gb` of the resource's quota (and of the subtenant's own, if any) for backups;
    CONFLICT when it does not fit. The caller's transaction (or this one) holds the resource's
    row lock, so two reservations never together exceed a quota. Returns the new used space."""
    from tortoise.transactions import in_transaction

    from app.db import connection_name

    if gb <= 0:
        raise BadInput("reserve a positive amount", field="gb")
    async with in_transaction(connection_name()):
        resource = await BackupResource.filter(id=resource_id).select_for_update().first()
        if resource is None:
            raise NotFound("backup resource")
        account = await TenantAccount.get(id=resource.tenant_account_id)  # type: ignore[attr-defined]
        if not await is_active(account):
            raise Conflict("the tenant account is not active")
        if resource.used_gb + gb > resource.quota_gb:
            raise Conflict(
                f"{gb} GB do not fit: {resource.quota_gb - resource.used_gb} GB left of"
                f" {resource.quota_gb} GB"
            )
        if subtenant_id is not None:
            sub = await Subtenant.filter(id=subtenant_id, resource_id=resource.id).first()
            if sub is None:
                raise NotFound("subtenant")
            if not sub.enabled:
                raise Conflict("the subtenant is disabled")
            if sub.quota_gb is not None and sub.used_gb + gb > sub.quota_gb:
                raise Conflict(
                    f"{gb} GB do not fit in the subtenant's quota:"
                    f" {sub.quota_gb - sub.used_gb} GB left"
                )
            sub.used_gb += gb
            await sub.save(update_fields=["used_gb"])
        resource.used_gb += gb
        await resource.save(update_fields=["used_gb"])
        return resource.used_gb


# --- subtenants ------------------------------------------------------------------------------


async def _check_subtenant_quota(
    resource: BackupResource, quota_gb: int | None, exclude_id: int | None, field: str
) -> None:
    """Called with the resource's row locked."""
    if quota_gb is None:
        return  # unlimited: up to the tenant's quota, counted 0 in the sum
    if quota_gb > resource.quota_gb:
        raise Conflict(
            f"the subtenant quota ({quota_gb} GB) exceeds the tenant's quota on this repository"
            f" ({resource.quota_gb} GB)",
            field=field,
        )
    others = await subtenant_quota_sum(resource.id, exclude_id)
    if others + quota_gb > resource.quota_gb:
        raise Conflict(
            f"the subtenants' quotas would add up to {others + quota_gb} GB, more than the"
            f" tenant's quota ({resource.quota_gb} GB); {resource.quota_gb - others} GB are left",
            field=field,
            availableGb=resource.quota_gb - others,
        )


async def create_subtenant(
    actor: Actor,
    account_id: int,
    repository_id: int,
    new: NewUser,
    quota_gb: int | None,
) -> Subtenant:
    p = actor.p
    require(p, SUBTENANTS, Action.CREATE)
    account = await account_in_scope(p, account_id)
    company_id = account.company_id  # type: ignore[attr-defined]
    require(p, SUBTENANTS, Action.CREATE, subtenant_target(company_id))
    if account.type is not TenantAccountType.STANDALONE:
        raise BadInput(
            "subtenants exist only for standalone (native) tenant accounts; this one is a"
            " VMware Cloud Director account",
            field="input.tenantAccountId",
        )
    _check_quota(quota_gb, "input.quotaGb", nullable=True)
    async with audited(actor, "subtenantCreate", "Subtenant", organization_id=company_id) as entry:
        resource = (
            await BackupResource.filter(tenant_account_id=account.id, repository_id=repository_id)
            .select_for_update()
            .first()
        )
        if resource is None:
            raise NotFound(
                "backup resource of this tenant account on this repository",
                field="input.repositoryId",
            )
        await _check_subtenant_quota(resource, quota_gb, None, "input.quotaGb")
        company = await Organization.get(id=company_id)
        user = await create_user_row(company, new, subtenant_role_name(), field_prefix="input.")
        sub = await Subtenant.create(user=user, resource=resource, quota_gb=quota_gb)
        entry.bind(
            sub.id,
            organization_id=company_id,
            tenantAccount=account.id,
            resource=resource.id,
            user=user.email,
            quotaGb=quota_gb,
        )
    return sub


async def update_subtenant(
    actor: Actor, subtenant_id: int, quota_gb: Any = UNCHANGED, enabled: bool | None = None
) -> Subtenant:
    """`quota_gb`: a number, None (unlimited) or `UNCHANGED` (unchanged)."""
    p = actor.p
    sub = await subtenant_in_scope(p, subtenant_id)
    resource = await BackupResource.get(id=sub.resource_id)  # type: ignore[attr-defined]
    company_id = await _company_id_of_resource(resource)
    require(p, SUBTENANTS, Action.UPDATE, subtenant_target(company_id))
    if quota_gb is not UNCHANGED:
        _check_quota(quota_gb, "input.quotaGb", nullable=True)
    async with audited(actor, "subtenantUpdate", "Subtenant", sub.id, company_id) as entry:
        resource = await resource_in_scope(p, resource.id, lock=True)
        sub = await _locked_subtenant(subtenant_id)
        fields: list[str] = []
        if quota_gb is not UNCHANGED:
            if quota_gb is not None and quota_gb < sub.used_gb:
                raise Conflict(
                    f"the quota ({quota_gb} GB) would be below the subtenant's used space"
                    f" ({sub.used_gb} GB)",
                    field="input.quotaGb",
                    usedGb=sub.used_gb,
                )
            await _check_subtenant_quota(resource, quota_gb, sub.id, "input.quotaGb")
            sub.quota_gb = quota_gb
            fields.append("quota_gb")
            entry.details["quotaGb"] = quota_gb
        if enabled is not None:
            sub.enabled = enabled
            fields.append("enabled")
            entry.details["enabled"] = enabled
        if fields:
            await sub.save(update_fields=fields)
    return sub


async def delete_subtenant(actor: Actor, subtenant_id: int) -> int:
    """Removes the subtenant and its user; refused while it holds backups."""
    p = actor.p
    sub = await subtenant_in_scope(p, subtenant_id)
    resource = await BackupResource.get(id=sub.resource_id)  # type: ignore[attr-defined]
    company_id = await _company_id_of_resource(resource)
    require(p, SUBTENANTS, Action.DELETE, subtenant_target(company_id))
    if sub.user_id == p.user_id:  # type: ignore[attr-defined]
        raise Forbidden("you cannot remove your own account")
    async with audited(actor, "subtenantDelete", "Subtenant", sub.id, company_id) as entry:
        sub = await _locked_subtenant(subtenant_id)
        if sub.used_gb > 0:
            raise Conflict(
                f"the subtenant still holds {sub.used_gb} GB of backups", usedGb=sub.used_gb
            )
        user = await User.get(id=sub.user_id)  # type: ignore[attr-defined]
        await user.delete()  # the subtenant row goes with its user
        entry.details.update(user=user.email, resource=resource.id)
    return subtenant_id
