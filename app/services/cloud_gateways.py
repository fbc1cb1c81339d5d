"""Gateway pools and cloud gateways (CLOUD_INFRASTRUCTURE, every change audited): the addresses
and ports tenants connect to, which pool each gateway is in, and its redirector capacity. Their
reachability is probed by gateway_probes; a new address or port, or enabling a gateway again,
clears the last probe."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from app.authz.matrix import Action
from app.errors import BadInput, Conflict, NotFound
from app.models import CloudGateway, GatewayPool, RemoteSession, TenantAccount
from app.services.actor import Actor
from app.services.audit import audited
from app.services.cloud_infra import UNSET, allowed, clean_name, fetch, unique

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
    return await fetch(actor, GatewayPool, pk, "gateway pool")  # type: ignore[no-any-return]


async def gateway(actor: Actor, pk: int) -> CloudGateway:
    return await fetch(actor, CloudGateway, pk, "cloud gateway")  # type: ignore[no-any-return]


async def create_pool(actor: Actor, name: str) -> GatewayPool:
    allowed(actor, Action.CREATE)
    name = clean_name(name)
    async with audited(
        actor, "gatewayPoolCreate", "GatewayPool", organization_id=actor.p.organization_id
    ) as entry:
        await unique(GatewayPool, name=name)
        row = await GatewayPool.create(name=name)
        entry.bind(row.id, name=name)
    return row


async def update_pool(actor: Actor, pk: int, name: str) -> GatewayPool:
    row = await pool(actor, pk)
    allowed(actor, Action.UPDATE)
    name = clean_name(name)
    async with audited(
        actor, "gatewayPoolUpdate", "GatewayPool", pk, actor.p.organization_id
    ) as entry:
        await unique(GatewayPool, exclude_id=pk, name=name)
        entry.details.update(oldName=row.name, name=name)
        row.name = name
        await row.save()
    return row


async def delete_pool(actor: Actor, pk: int) -> int:
    """Its gateways stay, out of any pool; refused while tenant accounts are pinned to it."""
    row = await pool(actor, pk)
    allowed(actor, Action.DELETE)
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
        row.name = clean_name(data.name)
        await unique(CloudGateway, exclude_id=row.id or None, name=row.name)
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
    allowed(actor, Action.CREATE)
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
    allowed(actor, Action.UPDATE)
    async with audited(
        actor, "cloudGatewayUpdate", "CloudGateway", pk, actor.p.organization_id
    ) as entry:
        await _apply_gateway(row, data, entry.details)
        await row.save()
    return row


async def delete_gateway(actor: Actor, pk: int) -> int:
    row = await gateway(actor, pk)
    allowed(actor, Action.DELETE)
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
