"""Cloud Connect allocation benchmark: public IPs and VLANs handed to tenants concurrently.

On a fresh PostgreSQL database (`tenantry_bench_alloc`, dropped at the end unless `--keep`),
through the service functions (`app.services.allocations`), by 50 concurrent tasks, each call
its own transaction:

1. **Public IPs**: 10,000 addresses (10 pools of 1,000) allocated to 100 standalone tenant
   accounts, 10 addresses per call, until every pool is full.
2. **VLANs**: 1,000 VLANs (500 with internet, 500 without, on one host) allocated by 500
   hardware plan subscriptions of 1 + 1 networks (100 accounts × 5 plans).

Reports allocations/s and the per-call latency, and asserts zero duplicates (count distinct =
count) and full use. `--quick`: a tenth of each.

    .venv/bin/python -m tests.bench.allocations [--quick] [--keep] [--out PATH]
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.auth.authenticate import build_principal
from app.authz.matrix import Portal, load_matrix
from app.models import Organization, OrgKind, User
from app.models.cloud import (
    HardwarePlan,
    PublicIpAllocation,
    PublicIpPool,
    TenantAccount,
    TenantAccountType,
    VlanAllocation,
    VlanRange,
)
from app.services import allocations
from app.services.actor import Actor
from tests.bench.fresh_db import fresh_database, orm
from tests.bench.results import suite_main, write_results
from tests.bench.seed_large import apply_schema

DB_NAME = "tenantry_bench_alloc"
CONCURRENCY = 50


@dataclass(frozen=True)
class Size:
    accounts: int = 100
    pools: int = 10
    addresses_per_pool: int = 1_000
    addresses_per_call: int = 10
    plans: int = 5  # subscriptions = accounts × plans, 2 VLANs each

    @property
    def addresses(self) -> int:
        return self.pools * self.addresses_per_pool

    @property
    def vlans(self) -> int:
        return self.accounts * self.plans * 2


FULL = Size()
QUICK = Size(accounts=10, pools=10, addresses_per_pool=100, addresses_per_call=10, plans=5)


async def _seed(
    size: Size,
) -> tuple[Actor, list[TenantAccount], list[PublicIpPool], list[HardwarePlan]]:
    provider = await Organization.create(kind=OrgKind.PROVIDER, name="Provider")
    primary = next(r for r in load_matrix().portals[Portal.RESELLER].roles if r.primary)
    user = await User.create(
        email="bench@example.test",
        name="bench",
        role=primary.name,
        organization=provider,
        password_hash="not-a-login",
    )
    await user.fetch_related("organization__parent")
    actor = Actor(await build_principal(user))
    accounts = []
    for i in range(size.accounts):
        company = await Organization.create(kind=OrgKind.COMPANY, name=f"c{i}", parent=provider)
        accounts.append(
            await TenantAccount.create(
                company=company,
                name=f"tenant{i}",
                type=TenantAccountType.STANDALONE,
                password_hash="x",
            )
        )
    pools = []
    for i in range(size.pools):
        first = ipaddress.ip_address(f"10.{i}.0.0") + 1
        pools.append(
            await PublicIpPool.create(
                name=f"pool{i}",
                first_address=str(first),
                last_address=str(first + size.addresses_per_pool - 1),
            )
        )
    half = size.vlans // 2
    await VlanRange.create(host="host1", first_id=1, last_id=half, internet=True)
    await VlanRange.create(host="host1", first_id=2001, last_id=2000 + half, internet=False)
    plans = [
        await HardwarePlan.create(
            name=f"plan{i}",
            cpu_mhz=1000,
            memory_mb=1024,
            networks_with_internet=1,
            networks_without_internet=1,
        )
        for i in range(size.plans)
    ]
    return actor, accounts, pools, plans


async def _drive(calls: list[Callable[[], Awaitable[Any]]]) -> dict[str, Any]:
    """Runs the calls with CONCURRENCY tasks pulling from one queue; per-call latency."""
    queue: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        while not queue.empty():
            call = queue.get_nowait()
            start = time.perf_counter()
            try:
                await call()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(CONCURRENCY)])
    seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "calls": len(calls),
        "seconds": round(seconds, 3),
        "errors": errors[:5],
        "error_count": len(errors),
        "call_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "call_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 2),
    }


async def measure(size: Size) -> dict[str, Any]:
    actor, accounts, pools, plans = await _seed(size)

    ip_calls: list[Callable[[], Awaitable[Any]]] = []
    per_pool = size.addresses_per_pool // size.addresses_per_call
    for n in range(size.pools * per_pool):
        account, pool = accounts[n % len(accounts)], pools[n % len(pools)]
        ip_calls.append(
            lambda a=account, p=pool: allocations.allocate_public_ips(
                actor, a.id, p.id, size.addresses_per_call
            )
        )
    ips = await _drive(ip_calls)
    addresses = await PublicIpAllocation.all().values_list("address", flat=True)
    ips.update(
        allocated=len(addresses),
        distinct=len(set(addresses)),
        allocations_per_second=round(len(addresses) / ips["seconds"], 1),
    )

    vlan_calls: list[Callable[[], Awaitable[Any]]] = [
        lambda a=account, p=plan: allocations.subscribe(actor, a.id, p.id)
        for plan in plans
        for account in accounts
    ]
    vlans = await _drive(vlan_calls)
    pairs = await VlanAllocation.all().values_list("host", "vlan_id")
    vlans.update(
        allocated=len(pairs),
        distinct=len(set(pairs)),
        allocations_per_second=round(len(pairs) / vlans["seconds"], 1),
    )

    assert ips["error_count"] == 0, ips["errors"]
    assert vlans["error_count"] == 0, vlans["errors"]
    assert ips["allocated"] == ips["distinct"] == size.addresses, ips
    assert vlans["allocated"] == vlans["distinct"] == size.vlans, vlans
    return {"concurrency": CONCURRENCY, "public_ips": ips, "vlans": vlans}


async def _run(quick: bool, keep: bool) -> dict[str, Any]:
    size = QUICK if quick else FULL
    async with fresh_database(DB_NAME, keep, f"?maxsize={CONCURRENCY}") as url:
        await apply_schema(url)
        async with orm(url):
            return await measure(size)


def run(quick: bool = False, out: Path | None = None, keep: bool = False) -> int:
    results = asyncio.run(_run(quick, keep))
    print(json.dumps(results, indent=2))
    if out is not None:
        write_results(out, results)
    ips, vlans = results["public_ips"], results["vlans"]
    print(
        f"public IPs: {ips['allocated']} in {ips['seconds']} s "
        f"({ips['allocations_per_second']}/s), duplicates {ips['allocated'] - ips['distinct']}; "
        f"VLANs: {vlans['allocated']} in {vlans['seconds']} s "
        f"({vlans['allocations_per_second']}/s), duplicates "
        f"{vlans['allocated'] - vlans['distinct']}",
        file=sys.stderr,
    )
    return 0


main = suite_main(
    run,
    "Tenantry Cloud Connect allocation benchmark",
    "a tenth of each allocation",
    "keep the database",
)


if __name__ == "__main__":
    raise SystemExit(main())
