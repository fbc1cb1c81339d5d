"""VLAN ranges and public IP pools (CLOUD_INFRASTRUCTURE, every change audited): declared per
host and never overlapping, removed only while nothing of them is allocated to tenants."""

from __future__ import annotations

import ipaddress

from app.authz.matrix import Action
from app.db import serialize
from app.errors import BadInput, Conflict
from app.models import PublicIpAllocation, PublicIpPool, VlanAllocation, VlanRange
from app.services.actor import Actor
from app.services.audit import audited
from app.services.cloud_infra import allowed, clean_name, fetch, unique

MAX_POOL_SIZE = 65_536
VLAN_MIN, VLAN_MAX = 1, 4094

# --- VLAN ranges ---------------------------------------------------------------------------


async def vlan_range(actor: Actor, pk: int) -> VlanRange:
    return await fetch(actor, VlanRange, pk, "VLAN range")  # type: ignore[no-any-return]


async def create_vlan_range(
    actor: Actor, host: str, first_id: int, last_id: int, internet: bool
) -> VlanRange:
    allowed(actor, Action.CREATE)
    host = clean_name(host, "host")
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
    allowed(actor, Action.DELETE)
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
    return await fetch(actor, PublicIpPool, pk, "public IP pool")  # type: ignore[no-any-return]


async def create_ip_pool(actor: Actor, name: str, first: str, last: str) -> PublicIpPool:
    allowed(actor, Action.CREATE)
    name = clean_name(name)
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
        await unique(PublicIpPool, name=name)
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
    allowed(actor, Action.DELETE)
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
