"""Provider infrastructure for Cloud Connect: what every part of it shares, and the cloud
repositories with their capacity rules.

All of it belongs to the provider and is governed by CLOUD_INFRASTRUCTURE (the provider's
unrestricted staff with Configuration tasks). Every change is audited. The parts: cloud
repositories here (their capacity is also checked by tenant quotas and reseller quotas),
gateway pools and cloud gateways in cloud_gateways (their reachability probes in
gateway_probes), hardware plans in hardware_plans, VLAN ranges and public IP pools in
cloud_networks, the gateways' SSL certificates in certificates.
"""

from __future__ import annotations

from typing import Any

from tortoise.functions import Sum

from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.errors import BadInput, Conflict, NotFound
from app.models import BackupResource, CloudRepository
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.settings import get_settings

UNSET: Any = object()  # "not given" for optional update arguments that may also be None


def clean_name(name: str, field: str = "name", max_length: int = 200) -> str:
    name = name.strip()
    if not name:
        raise BadInput("a name is required", field=field)
    if len(name) > max_length:
        raise BadInput(f"longer than {max_length} characters", field=field)
    return name


def allowed(actor: Actor, action: Action) -> None:
    require(actor.p, CLOUD_INFRASTRUCTURE, action)


async def fetch(actor: Actor, model: Any, pk: int, what: str) -> Any:
    allowed(actor, Action.READ)
    row = await model.filter(id=pk).first()
    if row is None:
        raise NotFound(what)
    return row


async def unique(model: Any, exclude_id: int | None = None, field: str = "name", **by: Any) -> None:
    query = model.filter(**by)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise Conflict(f"another one already has this {field}", field=field)


# --- cloud repositories --------------------------------------------------------------------


async def repository(actor: Actor, pk: int) -> CloudRepository:
    return await fetch(actor, CloudRepository, pk, "cloud repository")  # type: ignore[no-any-return]


def _check_capacity_value(capacity_gb: int) -> None:
    if capacity_gb <= 0:
        raise BadInput("the capacity must be a positive number of GB", field="capacityGb")


async def allocated_gb(repository_id: int, exclude_reseller_id: int | None = None) -> int:
    """What the provider has committed on the repository: the resellers' quotas (their
    companies' tenants live inside them) plus the quotas of tenant accounts of companies
    directly under the provider. `exclude_reseller_id`: leave that reseller's quota out."""
    from app.models import OrgKind, ResellerRepositoryQuota

    resellers = ResellerRepositoryQuota.filter(repository_id=repository_id)
    if exclude_reseller_id is not None:
        resellers = resellers.exclude(reseller_id=exclude_reseller_id)
    direct = BackupResource.filter(repository_id=repository_id).exclude(
        tenant_account__company__parent__kind=OrgKind.RESELLER
    )
    total = 0
    for query in (resellers, direct):
        rows = (
            await query.annotate(total=Sum("quota_gb"))  # type: ignore[attr-defined]
            .group_by("repository_id")
            .values("total")
        )
        total += int(rows[0]["total"] or 0) if rows else 0
    return total


def _limit(capacity_gb: int) -> float:
    return capacity_gb * get_settings().cloud_oversubscription_ratio


async def check_capacity(repository_id: int, extra_gb: int, allow_override: bool) -> None:
    """Call inside your transaction before committing `extra_gb` more on the repository (a
    reseller's quota, or a quota of a company directly under the provider): the repository
    row is locked (PostgreSQL) so that concurrent reservations are serialised, then what is
    committed + extra must stay within capacity × the oversubscription ratio unless
    `allow_override`. Raises NotFound or Conflict."""
    repo = await CloudRepository.filter(id=repository_id).select_for_update().first()
    if repo is None:
        raise NotFound("cloud repository")
    if extra_gb <= 0 or allow_override:
        return
    total = await allocated_gb(repository_id) + extra_gb
    limit = _limit(repo.capacity_gb)
    if total > limit:
        raise Conflict(
            f"the quotas on repository {repo.name!r} would total {total} GB, over its "
            f"{repo.capacity_gb} GB capacity × {get_settings().cloud_oversubscription_ratio:g} "
            "oversubscription ratio; set allowOversubscription to go over it",
            field="quotaGb",
            capacityGb=repo.capacity_gb,
            allocatedGb=total - extra_gb,
        )


async def create_repository(actor: Actor, name: str, capacity_gb: int) -> CloudRepository:
    allowed(actor, Action.CREATE)
    name = clean_name(name)
    _check_capacity_value(capacity_gb)
    async with audited(
        actor, "cloudRepositoryCreate", "CloudRepository", organization_id=actor.p.organization_id
    ) as entry:
        await unique(CloudRepository, name=name)
        row = await CloudRepository.create(name=name, capacity_gb=capacity_gb)
        entry.bind(row.id, name=name, capacityGb=capacity_gb)
    return row


async def update_repository(
    actor: Actor,
    pk: int,
    name: str | None = None,
    capacity_gb: int | None = None,
    allow_oversubscription: bool = False,
) -> CloudRepository:
    """Capacity never drops below the used space; below what the quotas need at the configured
    ratio only with `allow_oversubscription`, which the audit entry records."""
    await repository(actor, pk)
    allowed(actor, Action.UPDATE)
    async with audited(
        actor, "cloudRepositoryUpdate", "CloudRepository", pk, actor.p.organization_id
    ) as entry:
        row = await CloudRepository.filter(id=pk).select_for_update().first()
        if row is None:
            raise NotFound("cloud repository")
        if name is not None:
            name = clean_name(name)
            await unique(CloudRepository, exclude_id=pk, name=name)
            entry.details.update(oldName=row.name, name=name)
            row.name = name
        if capacity_gb is not None:
            _check_capacity_value(capacity_gb)
            if capacity_gb < row.used_gb:
                raise BadInput(
                    f"the capacity cannot be less than the {row.used_gb} GB already used",
                    field="capacityGb",
                )
            allocated = await allocated_gb(pk)
            oversubscribed = allocated > _limit(capacity_gb)
            entry.details.update(
                oldCapacityGb=row.capacity_gb,
                capacityGb=capacity_gb,
                allocatedGb=allocated,
                oversubscribed=oversubscribed,
                allowOversubscription=allow_oversubscription,
            )
            if oversubscribed and not allow_oversubscription:
                raise Conflict(
                    f"the quotas on this repository total {allocated} GB, over {capacity_gb} GB "
                    f"× {get_settings().cloud_oversubscription_ratio:g}; set "
                    "allowOversubscription to oversubscribe it",
                    field="capacityGb",
                    allocatedGb=allocated,
                )
            row.capacity_gb = capacity_gb
        await row.save()
    return row


async def delete_repository(actor: Actor, pk: int) -> int:
    row = await repository(actor, pk)
    allowed(actor, Action.DELETE)
    async with audited(
        actor, "cloudRepositoryDelete", "CloudRepository", pk, actor.p.organization_id
    ) as entry:
        entry.details["name"] = row.name
        quotas = await BackupResource.filter(repository_id=pk).count()
        if quotas:
            raise Conflict(
                f"{quotas} tenant quota(s) are on this repository; remove them first",
                quotas=quotas,
            )
        await row.delete()
    return pk
