"""Provider infrastructure for Cloud Connect: cloud repositories and their capacity, gateway
pools and cloud gateways, hardware plan definitions, VLAN ranges and public IP pools.

All of it belongs to the provider and is governed by CLOUD_INFRASTRUCTURE (the provider's
unrestricted staff with Configuration tasks). Every change is audited.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from tortoise.functions import Sum

from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.db import serialize
from app.errors import BadInput, Conflict, NotFound
from app.models import (
    BackupResource,
    CloudGateway,
    CloudRepository,
    GatewayPool,
    HardwarePlan,
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    PublicIpAllocation,
    PublicIpPool,
    RemoteSession,
    TenantAccount,
    VlanAllocation,
    VlanRange,
)
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.settings import get_settings

MAX_POOL_SIZE = 65_536
VLAN_MIN, VLAN_MAX = 1, 4094
UNSET: Any = object()  # "not given" for optional update arguments that may also be None


def _clean_name(name: str, field: str = "name", max_length: int = 200) -> str:
    name = name.strip()
    if not name:
        raise BadInput("a name is required", field=field)
    if len(name) > max_length:
        raise BadInput(f"longer than {max_length} characters", field=field)
    return name


def _allowed(actor: Actor, action: Action) -> None:
    require(actor.p, CLOUD_INFRASTRUCTURE, action)


async def _fetch(actor: Actor, model: Any, pk: int, what: str) -> Any:
    _allowed(actor, Action.READ)
    row = await model.filter(id=pk).first()
    if row is None:
        raise NotFound(what)
    return row


async def _unique(
    model: Any, exclude_id: int | None = None, field: str = "name", **by: Any
) -> None:
    query = model.filter(**by)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise Conflict(f"another one already has this {field}", field=field)


# --- cloud repositories --------------------------------------------------------------------


async def repository(actor: Actor, pk: int) -> CloudRepository:
    return await _fetch(actor, CloudRepository, pk, "cloud repository")  # type: ignore[no-any-return]


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
    _allowed(actor, Action.CREATE)
    name = _clean_name(name)
    _check_capacity_value(capacity_gb)
    async with audited(
        actor, "cloudRepositoryCreate", "CloudRepository", organization_id=actor.p.organization_id
    ) as entry:
        await _unique(CloudRepository, name=name)
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
    _allowed(actor, Action.UPDATE)
    async with audited(
        actor, "cloudRepositoryUpdate", "CloudRepository", pk, actor.p.organization_id
    ) as entry:
        row = await CloudRepository.filter(id=pk).select_for_update().first()
        if row is None:
            raise NotFound("cloud repository")
        if name is not None:
            name = _clean_name(name)
            await _unique(CloudRepository, exclude_id=pk, name=name)
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
    _allowed(actor, Action.DELETE)
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


# --- gateway pools and cloud gateways ------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)


def _clean_address(address: str) -> str:
    address = address.strip().rstrip(".")
    if not address:
        raise BadInput("an address is required", field="address")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if len(address) > 253 or not all(_LABEL.match(label) for label in address.split(".")):
        raise BadInput("the address is neither a DNS name nor an IP address", field="address")
    return address.lower()


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise BadInput("the port must be between 1 and 65535", field="port")


def _check_redirector(capacity: int) -> None:
    if capacity < 0:
        raise BadInput("the redirector capacity cannot be negative", field="redirectorCapacity")


async def pool(actor: Actor, pk: int) -> GatewayPool:
    return await _fetch(actor, GatewayPool, pk, "gateway pool")  # type: ignore[no-any-return]


async def gateway(actor: Actor, pk: int) -> CloudGateway:
    return await _fetch(actor, CloudGateway, pk, "cloud gateway")  # type: ignore[no-any-return]


async def create_pool(actor: Actor, name: str) -> GatewayPool:
    _allowed(actor, Action.CREATE)
    name = _clean_name(name)
    async with audited(
        actor, "gatewayPoolCreate", "GatewayPool", organization_id=actor.p.organization_id
    ) as entry:
        await _unique(GatewayPool, name=name)
        row = await GatewayPool.create(name=name)
        entry.bind(row.id, name=name)
    return row


async def update_pool(actor: Actor, pk: int, name: str) -> GatewayPool:
    row = await pool(actor, pk)
    _allowed(actor, Action.UPDATE)
    name = _clean_name(name)
    async with audited(
        actor, "gatewayPoolUpdate", "GatewayPool", pk, actor.p.organization_id
    ) as entry:
        await _unique(GatewayPool, exclude_id=pk, name=name)
        entry.details.update(oldName=row.name, name=name)
        row.name = name
        await row.save()
    return row


async def delete_pool(actor: Actor, pk: int) -> int:
    """Its gateways stay, out of any pool; refused while tenant accounts are pinned to it."""
    row = await pool(actor, pk)
    _allowed(actor, Action.DELETE)
    async with audited(
        actor, "gatewayPoolDelete", "GatewayPool", pk, actor.p.organization_id
    ) as entry:
        entry.details["name"] = row.name
        tenants = await TenantAccount.filter(gateway_pools__id=pk).count()
        if tenants:
            raise Conflict(
                f"{tenants} tenant account(s) use this gateway pool; change their gateway "
                "selection first",
                tenants=tenants,
            )
        released = await CloudGateway.filter(pool_id=pk).update(pool_id=None)
        entry.details["gatewaysReleased"] = released
        await row.delete()
    return pk


@dataclass
class GatewayInput:
    name: str | None = None
    address: str | None = None
    port: int | None = None
    enabled: bool | None = None
    pool_id: Any = UNSET  # int, None (no pool) or UNSET
    redirector_capacity: int | None = None


def _clear_probe(row: CloudGateway, moved: bool) -> None:
    """A new address or port, or a gateway enabled again: the last probe no longer says
    anything about it (the next probe will). After a move, when it was last reachable is
    about the old address too."""
    row.reachable = None
    row.last_probe_at = None
    row.last_probe_error = ""
    row.probe_latency_ms = None
    if moved:
        row.last_reachable_at = None


async def _apply_gateway(row: CloudGateway, data: GatewayInput, changes: dict[str, Any]) -> None:
    endpoint = (row.address, row.port, row.enabled)
    if data.name is not None:
        row.name = _clean_name(data.name)
        await _unique(CloudGateway, exclude_id=row.id or None, name=row.name)
        changes["name"] = row.name
    if data.address is not None:
        row.address = _clean_address(data.address)
        changes["address"] = row.address
    if data.port is not None:
        _check_port(data.port)
        row.port = data.port
        changes["port"] = row.port
    if data.enabled is not None:
        row.enabled = data.enabled
        changes["enabled"] = row.enabled
    if data.pool_id is not UNSET:
        if data.pool_id is not None and not await GatewayPool.filter(id=data.pool_id).exists():
            raise NotFound("gateway pool", field="poolId")
        row.pool_id = data.pool_id  # type: ignore[attr-defined]
        changes["poolId"] = data.pool_id
    if data.redirector_capacity is not None:
        _check_redirector(data.redirector_capacity)
        row.redirector_capacity = data.redirector_capacity
        changes["redirectorCapacity"] = row.redirector_capacity
    moved = (row.address, row.port) != endpoint[:2]
    if row.id is not None and (moved or (row.enabled and not endpoint[2])):
        _clear_probe(row, moved)


async def create_gateway(actor: Actor, data: GatewayInput) -> CloudGateway:
    _allowed(actor, Action.CREATE)
    if data.name is None:
        raise BadInput("a name is required", field="name")
    if data.address is None:
        raise BadInput("an address is required", field="address")
    async with audited(
        actor, "cloudGatewayCreate", "CloudGateway", organization_id=actor.p.organization_id
    ) as entry:
        row = CloudGateway(name="", address="")
        await _apply_gateway(row, data, entry.details)
        await row.save()
        entry.bind(row.id)
    return row


async def update_gateway(actor: Actor, pk: int, data: GatewayInput) -> CloudGateway:
    row = await gateway(actor, pk)
    _allowed(actor, Action.UPDATE)
    async with audited(
        actor, "cloudGatewayUpdate", "CloudGateway", pk, actor.p.organization_id
    ) as entry:
        await _apply_gateway(row, data, entry.details)
        await row.save()
    return row


async def delete_gateway(actor: Actor, pk: int) -> int:
    row = await gateway(actor, pk)
    _allowed(actor, Action.DELETE)
    async with audited(
        actor, "cloudGatewayDelete", "CloudGateway", pk, actor.p.organization_id
    ) as entry:
        entry.details["name"] = row.name
        open_sessions = await RemoteSession.filter(gateway_id=pk, closed_at=None).count()
        if open_sessions:
            raise Conflict(
                f"{open_sessions} remote session(s) are open through this gateway; close them "
                "or disable the gateway first",
                sessions=open_sessions,
            )
        await row.delete()
    return pk


# --- hardware plans ------------------------------------------------------------------------


@dataclass
class PlanInput:
    name: str | None = None
    cpu_mhz: int | None = None
    memory_mb: int | None = None
    networks_with_internet: int | None = None
    networks_without_internet: int | None = None
    datastores: list[tuple[str, int]] | None = None


async def plan(actor: Actor, pk: int) -> HardwarePlan:
    return await _fetch(actor, HardwarePlan, pk, "hardware plan")  # type: ignore[no-any-return]


def _positive(value: int, field: str, what: str) -> None:
    if value <= 0:
        raise BadInput(f"{what} must be positive", field=field)


def _not_negative(value: int, field: str) -> None:
    if value < 0:
        raise BadInput("cannot be negative", field=field)


def _clean_datastores(datastores: list[tuple[str, int]]) -> list[tuple[str, int]]:
    seen: set[str] = set()
    out = []
    for i, (name, quota) in enumerate(datastores):
        name = _clean_name(name, f"datastores.{i}.datastore")
        if name.lower() in seen:
            raise BadInput("this datastore is listed twice", field=f"datastores.{i}.datastore")
        seen.add(name.lower())
        _positive(quota, f"datastores.{i}.quotaGb", "the quota")
        out.append((name, quota))
    return out


async def _apply_plan(row: HardwarePlan, data: PlanInput, changes: dict[str, Any]) -> None:
    if data.name is not None:
        row.name = _clean_name(data.name)
        await _unique(HardwarePlan, exclude_id=row.id or None, name=row.name)
        changes["name"] = row.name
    if data.cpu_mhz is not None:
        _positive(data.cpu_mhz, "cpuMhz", "the CPU")
        row.cpu_mhz = changes["cpuMhz"] = data.cpu_mhz
    if data.memory_mb is not None:
        _positive(data.memory_mb, "memoryMb", "the memory")
        row.memory_mb = changes["memoryMb"] = data.memory_mb
    if data.networks_with_internet is not None:
        _not_negative(data.networks_with_internet, "networksWithInternet")
        row.networks_with_internet = changes["networksWithInternet"] = data.networks_with_internet
    if data.networks_without_internet is not None:
        _not_negative(data.networks_without_internet, "networksWithoutInternet")
        row.networks_without_internet = data.networks_without_internet
        changes["networksWithoutInternet"] = data.networks_without_internet


async def _replace_datastores(row: HardwarePlan, datastores: list[tuple[str, int]]) -> None:
    await HardwarePlanDatastore.filter(plan_id=row.id).delete()
    await HardwarePlanDatastore.bulk_create(
        [HardwarePlanDatastore(plan_id=row.id, datastore=n, quota_gb=q) for n, q in datastores]
    )


async def create_plan(actor: Actor, data: PlanInput) -> HardwarePlan:
    _allowed(actor, Action.CREATE)
    for value, field in (
        (data.name, "name"),
        (data.cpu_mhz, "cpuMhz"),
        (data.memory_mb, "memoryMb"),
    ):
        if value is None:
            raise BadInput("required", field=field)
    datastores = _clean_datastores(data.datastores or [])
    async with audited(
        actor, "hardwarePlanCreate", "HardwarePlan", organization_id=actor.p.organization_id
    ) as entry:
        row = HardwarePlan(name="", cpu_mhz=0, memory_mb=0)
        await _apply_plan(row, data, entry.details)
        await row.save()
        await _replace_datastores(row, datastores)
        entry.bind(row.id, datastores={n: q for n, q in datastores})
    return row


async def update_plan(actor: Actor, pk: int, data: PlanInput) -> HardwarePlan:
    row = await plan(actor, pk)
    _allowed(actor, Action.UPDATE)
    datastores = _clean_datastores(data.datastores) if data.datastores is not None else None
    async with audited(
        actor, "hardwarePlanUpdate", "HardwarePlan", pk, actor.p.organization_id
    ) as entry:
        await _apply_plan(row, data, entry.details)
        await row.save()
        if datastores is not None:
            await _replace_datastores(row, datastores)
            entry.details["datastores"] = {n: q for n, q in datastores}
    return row


async def delete_plan(actor: Actor, pk: int) -> int:
    row = await plan(actor, pk)
    _allowed(actor, Action.DELETE)
    async with audited(
        actor, "hardwarePlanDelete", "HardwarePlan", pk, actor.p.organization_id
    ) as entry:
        entry.details["name"] = row.name
        subscribed = await HardwarePlanSubscription.filter(plan_id=pk).count()
        if subscribed:
            raise Conflict(
                f"{subscribed} tenant account(s) subscribe to this plan; unsubscribe them first",
                subscriptions=subscribed,
            )
        await row.delete()
    return pk


# --- VLAN ranges ---------------------------------------------------------------------------


async def vlan_range(actor: Actor, pk: int) -> VlanRange:
    return await _fetch(actor, VlanRange, pk, "VLAN range")  # type: ignore[no-any-return]


async def create_vlan_range(
    actor: Actor, host: str, first_id: int, last_id: int, internet: bool
) -> VlanRange:
    _allowed(actor, Action.CREATE)
    host = _clean_name(host, "host")
    for value, field in ((first_id, "firstId"), (last_id, "lastId")):
        if not VLAN_MIN <= value <= VLAN_MAX:
            raise BadInput(f"a VLAN id is between {VLAN_MIN} and {VLAN_MAX}", field=field)
    if first_id > last_id:
        raise BadInput("the last VLAN id cannot be lower than the first", field="lastId")
    async with audited(
        actor, "vlanRangeCreate", "VlanRange", organization_id=actor.p.organization_id
    ) as entry:
        await serialize(f"vlan_ranges:{host}")  # two creates cannot both miss each other
        clash = await VlanRange.filter(
            host=host, first_id__lte=last_id, last_id__gte=first_id
        ).first()
        if clash is not None:
            raise Conflict(
                f"overlaps VLANs {clash.first_id}–{clash.last_id} already declared on {host}",
                field="firstId",
            )
        row = await VlanRange.create(
            host=host, first_id=first_id, last_id=last_id, internet=internet
        )
        entry.bind(row.id, host=host, firstId=first_id, lastId=last_id, internet=internet)
    return row


async def delete_vlan_range(actor: Actor, pk: int) -> int:
    row = await vlan_range(actor, pk)
    _allowed(actor, Action.DELETE)
    async with audited(actor, "vlanRangeDelete", "VlanRange", pk, actor.p.organization_id) as entry:
        entry.details.update(host=row.host, firstId=row.first_id, lastId=row.last_id)
        allocated = await VlanAllocation.filter(vlan_range_id=pk).count()
        if allocated:
            raise Conflict(
                f"{allocated} VLAN(s) of this range are allocated to tenants; release them first",
                allocations=allocated,
            )
        await row.delete()
    return pk


# --- public IP pools -----------------------------------------------------------------------


def ip_pool_size(first: str, last: str) -> int:
    return int(ipaddress.ip_address(last)) - int(ipaddress.ip_address(first)) + 1


def _parse_ip(text: str, field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise BadInput("not an IP address", field=field) from None


async def ip_pool(actor: Actor, pk: int) -> PublicIpPool:
    return await _fetch(actor, PublicIpPool, pk, "public IP pool")  # type: ignore[no-any-return]


async def create_ip_pool(actor: Actor, name: str, first: str, last: str) -> PublicIpPool:
    _allowed(actor, Action.CREATE)
    name = _clean_name(name)
    first_ip, last_ip = _parse_ip(first, "firstAddress"), _parse_ip(last, "lastAddress")
    if first_ip.version != last_ip.version:
        raise BadInput("both addresses must be IPv4 or both IPv6", field="lastAddress")
    if first_ip > last_ip:  # type: ignore[operator]
        raise BadInput("the last address cannot be lower than the first", field="lastAddress")
    size = int(last_ip) - int(first_ip) + 1
    if size > MAX_POOL_SIZE:
        raise BadInput(
            f"a pool holds at most {MAX_POOL_SIZE} addresses (this one: {size})",
            field="lastAddress",
        )
    async with audited(
        actor, "publicIpPoolCreate", "PublicIpPool", organization_id=actor.p.organization_id
    ) as entry:
        await serialize("public_ip_pools")  # two creates cannot both miss each other
        await _unique(PublicIpPool, name=name)
        # Pools are few: compare numerically (text order is not address order).
        for other in await PublicIpPool.all():
            o_first = ipaddress.ip_address(other.first_address)
            o_last = ipaddress.ip_address(other.last_address)
            if o_first.version == first_ip.version and o_first <= last_ip and first_ip <= o_last:  # type: ignore[operator]
                raise Conflict(
                    f"overlaps pool {other.name!r} ({other.first_address}–{other.last_address})",
                    field="firstAddress",
                )
        row = await PublicIpPool.create(
            name=name, first_address=str(first_ip), last_address=str(last_ip)
        )
        entry.bind(row.id, name=name, firstAddress=row.first_address, lastAddress=row.last_address)
    return row


async def delete_ip_pool(actor: Actor, pk: int) -> int:
    row = await ip_pool(actor, pk)
    _allowed(actor, Action.DELETE)
    async with audited(
        actor, "publicIpPoolDelete", "PublicIpPool", pk, actor.p.organization_id
    ) as entry:
        entry.details["name"] = row.name
        allocated = await PublicIpAllocation.filter(pool_id=pk).count()
        if allocated:
            raise Conflict(
                f"{allocated} address(es) of this pool are allocated to tenants; release them "
                "first",
                allocations=allocated,
            )
        await row.delete()
    return pk
