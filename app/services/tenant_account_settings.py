"""The settings of a Cloud Connect tenant account that tenantAccountCreate and
tenantAccountUpdate change (name, lease, task and bandwidth limits, gateway selection and
pools, gateway failover): validated, each error naming its input field, and set on the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import BadInput, Conflict, NotFound
from app.models import GatewayPool, GatewaySelection, TenantAccount
from app.services.tenant_account_status import now

MAX_CONCURRENT_TASKS = 10_000
MAX_BANDWIDTH_MBPS = 1_000_000

UNCHANGED: Any = object()


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


# --- applying --------------------------------------------------------------------------------


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


async def apply_settings(
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


async def set_pools(account: TenantAccount, pools: list[GatewayPool] | None) -> None:
    if pools is None:
        return
    await account.gateway_pools.clear()
    if pools:
        await account.gateway_pools.add(*pools)
