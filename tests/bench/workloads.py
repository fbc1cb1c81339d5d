"""Managed workloads benchmark: the protected-data page and the monitoring summary at scale.

On a fresh PostgreSQL database (`tenantry_bench_workloads`, dropped at the end unless
`--keep`): a tenant tree (`seed_large.seed`: resellers, companies with 2 locations, users of
every role), then a fleet written by the simulator's bulk loader (`app.simulator.loader`):

* one **big company** (under the first reseller): 5,000 computers with 200 days of daily
  sessions, about 1,000,000 sessions (`--quick`: 500 computers, 100 days, about 50,000);
* the **rest of the provider's scope**: 95,000 more computers spread over the other companies
  (`--quick`: 9,500), with 30 days of weekly sessions per computer (each job on its own
  weekday, so the rollups cover every one of the 30 days).

Measured in-process (`schema.execute` with a prebuilt principal and fresh loaders per run, as
`tests/bench/inprocess.py` does; no HTTP):

(a) `protectedComputers(first: 50)` with `totalCount`, as the big company's Company
    Administrator, the first page and the page of RPO-breached computers: latency p50/p99
    and SQL statements per request (`tests/querycount.py`);
(b) `monitoringSummary` over the last 30 days as the provider's Global Administrator
    (100,000 computers) and as the first reseller's (its share): latency p50/p99 and SQL
    statements.

Also reported: the load time (generation + COPY + rollup rebuild, rows per table) and the
time of a full set-based rollup rebuild (`tenantry rebuild-rollups`).

    .venv/bin/python -m tests.bench.workloads [--quick] [--keep] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from tests.bench.fresh_db import fresh_database, orm
from tests.bench.loadgen import percentile
from tests.bench.seed_large import TreeSize, seed

ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "tenantry_bench_workloads"
PAGE = 50

PROTECTED = """query Page($first: Int!, $filter: ProtectedComputerFilter) {
  protectedComputers(first: $first, filter: $filter) {
    totalCount
    nodes { computerId hostname companyName locationName lastRestorePointAt
            restorePointCount rpoStatus protectedJobCount }
    pageInfo { hasNextPage endCursor }
  }
}"""
SUMMARY = """query Summary($from: Date!, $to: Date!) {
  monitoringSummary(from: $from, to: $to) {
    sessions { success warning failed processedBytes }
    jobsByLastResult { result count }
    computersByAgentStatus { status count }
    computers { protected rpoBreached unprotected }
  }
}"""


@dataclass(frozen=True)
class Size:
    tree: TreeSize
    big_computers: int
    big_days: int
    other_computers: int
    other_days: int
    other_cadence: int
    iterations: int


FULL = Size(
    tree=TreeSize(resellers=10, companies=1_000, locations_per_company=2, users=4_000),
    big_computers=5_000,
    big_days=200,
    other_computers=95_000,
    other_days=30,
    other_cadence=7,
    iterations=200,
)
QUICK = Size(
    tree=TreeSize(resellers=4, companies=100, locations_per_company=2, users=400),
    big_computers=500,
    big_days=100,
    other_computers=9_500,
    other_days=30,
    other_cadence=7,
    iterations=30,
)


def _summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "runs": len(samples),
        "p50_ms": round(percentile(samples, 50) * 1000, 2),
        "p99_ms": round(percentile(samples, 99) * 1000, 2),
        "mean_ms": round(sum(samples) / len(samples) * 1000, 2),
    }


async def _fleet(size: Size, end: datetime) -> dict[str, Any]:
    """The fleet over the seeded tree: the big company (the first reseller's first company)
    and the others; loaded in two passes (their history lengths differ)."""
    from app.models import Location, Organization, OrgKind
    from app.simulator.fleet import CompanySpec, FleetSpec, generate
    from app.simulator.loader import load_fleet

    reseller = await Organization.filter(kind=OrgKind.RESELLER.value).order_by("id").first()
    assert reseller is not None
    companies = await Organization.filter(kind=OrgKind.COMPANY.value).order_by("id")
    big = next(c for c in companies if c.parent_id == reseller.id)  # type: ignore[attr-defined]
    others = [c for c in companies if c.id != big.id]
    locations: dict[int, list[int]] = {}
    for loc in await Location.all().order_by("-is_default", "id"):
        locations.setdefault(loc.company_id, []).append(loc.id)  # type: ignore[attr-defined]

    def spec_of(company: Any, computers: int) -> CompanySpec:
        return CompanySpec(company.id, company.name, tuple(locations[company.id]), computers)

    per, extra = divmod(size.other_computers, len(others))
    passes = [
        FleetSpec(
            companies=(spec_of(big, size.big_computers),),
            end=end,
            seed=5,
            history_days=size.big_days,
        ),
        FleetSpec(
            companies=tuple(
                spec_of(c, per + (1 if n < extra else 0)) for n, c in enumerate(others)
            ),
            end=end,
            seed=5,
            history_days=size.other_days,
            cadence_days=size.other_cadence,
        ),
    ]
    out: dict[str, Any] = {"big_company_id": big.id, "reseller_id": reseller.id, "passes": []}
    for spec in passes:
        stats = await load_fleet(generate(spec))
        out["passes"].append(
            {
                "seconds": round(stats.seconds, 2),
                "rollup_seconds": round(stats.rollup_seconds, 2),
                "rows": stats.rows,
                "rollups": stats.rollups,
            }
        )
        print(
            f"· loaded {stats.rows['managed_computers']:,} computers, "
            f"{stats.sessions:,} sessions, {stats.rollups:,} rollup rows in {stats.seconds:.1f} s "
            f"(rollups {stats.rollup_seconds:.1f} s)",
            flush=True,
        )
    return out


async def _principal(org_id: int, role: str) -> Any:
    from app.auth.authenticate import build_principal
    from app.models import User

    user = await User.filter(organization_id=org_id, role=role).order_by("id").first()
    assert user is not None, (org_id, role)
    await user.fetch_related("organization__parent")
    return await build_principal(user)


async def _measure(principal: Any, query: str, variables: dict[str, Any], runs: int) -> Any:
    from app.graphql.context import Context
    from app.graphql.loaders import Loaders
    from app.graphql.schema import schema
    from tests.querycount import count_queries

    samples: list[float] = []
    statements = 0
    data = None
    for i in range(runs + 3):  # three warm-up runs fill the parser and validation caches
        ctx = Context(request=None, response=None, principal=principal, loaders=Loaders(principal))
        with count_queries() as queries:
            t0 = time.perf_counter()
            result = await schema.execute(query, variable_values=variables, context_value=ctx)
            elapsed = time.perf_counter() - t0
        if result.errors:
            raise RuntimeError(f"{result.errors}")
        if i >= 3:
            samples.append(elapsed)
        statements = queries.count
        data = result.data
    return {**_summary(samples), "sql_statements": statements}, data


async def _bench(size: Size, url: str) -> dict[str, Any]:
    from app.authz.matrix import Portal, load_matrix
    from app.services.rollups import rebuild_rollups

    end = datetime.now(UTC).replace(second=0, microsecond=0)
    started = time.perf_counter()
    fleet = await _fleet(size, end)
    load_seconds = time.perf_counter() - started
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
        counts = {
            t: await conn.fetchval(f"SELECT COUNT(*) FROM {t}")
            for t in ("managed_computers", "backup_job_sessions", "backup_session_rollups")
        }
        big_sessions = await conn.fetchval(
            "SELECT COUNT(*) FROM backup_job_sessions WHERE company_id = $1",
            fleet["big_company_id"],
        )
    finally:
        await conn.close()
    t0 = time.perf_counter()
    rebuilt = await rebuild_rollups()
    rebuild_seconds = time.perf_counter() - t0

    client_roles = load_matrix().portals[Portal.CLIENT].roles
    admin_role = next(r.name for r in client_roles if not r.primary)  # Company Administrator
    staff_role = next(r.name for r in load_matrix().portals[Portal.RESELLER].roles if r.primary)
    admin = await _principal(fleet["big_company_id"], admin_role)
    provider = await _principal(1, staff_role)
    reseller = await _principal(fleet["reseller_id"], staff_role)

    results: dict[str, Any] = {}
    runs = size.iterations
    results["protected_page"], data = await _measure(admin, PROTECTED, {"first": PAGE}, runs)
    page = data["protectedComputers"]
    assert len(page["nodes"]) == PAGE and page["totalCount"] == size.big_computers, page
    results["protected_breached"], data = await _measure(
        admin, PROTECTED, {"first": PAGE, "filter": {"rpoStatus": "BREACHED"}}, runs
    )
    breached = data["protectedComputers"]["totalCount"]
    period = {"from": str((end - timedelta(days=29)).date()), "to": str(end.date())}
    sums: dict[str, Any] = {}
    for who, principal in (("provider", provider), ("reseller", reseller)):
        results[f"summary_{who}"], data = await _measure(principal, SUMMARY, period, runs)
        sums[who] = data["monitoringSummary"]
        total = sum(sums[who]["computers"].values())
        results[f"summary_{who}"]["computers_in_scope"] = total
    assert sum(sums["provider"]["computers"].values()) == counts["managed_computers"], sums
    return {
        "counts": {**counts, "big_company_sessions": big_sessions, "breached": breached},
        "load": {"seconds": round(load_seconds, 2), **fleet},
        "rollup_rebuild": {"seconds": round(rebuild_seconds, 2), "rows": rebuilt},
        "results": results,
        "summary_provider_sessions": sums["provider"]["sessions"],
    }


async def _run(quick: bool, keep: bool) -> dict[str, Any]:
    size = QUICK if quick else FULL
    async with fresh_database(DB_NAME, keep) as url:
        t0 = time.perf_counter()
        seeded = await seed(url, size.tree)
        tree_seconds = time.perf_counter() - t0
        async with orm(url):
            out = await _bench(size, url)
        out["tree"] = {**seeded.counts, "seconds": round(tree_seconds, 2)}
        return out


def report(data: dict[str, Any]) -> None:
    c, r = data["counts"], data["results"]
    print()
    print(
        f"Workloads benchmark{' (--quick)' if data['quick'] else ''}: "
        f"{c['managed_computers']:,} computers, {c['backup_job_sessions']:,} sessions "
        f"({c['big_company_sessions']:,} in the big company), "
        f"{c['backup_session_rollups']:,} rollup rows"
    )
    print(
        f"tree seeded in {data['tree']['seconds']:.1f} s; fleet loaded in "
        f"{data['load']['seconds']:.1f} s; full rollup rebuild {data['rollup_rebuild']['seconds']:.2f} s"
    )
    header = f"{'request':<44} {'p50 ms':>8} {'p99 ms':>8} {'SQL':>4} {'runs':>5}"
    print(header)
    print("-" * len(header))
    labels = {
        "protected_page": "protectedComputers(first: 50), company admin",
        "protected_breached": "  … filter rpoStatus: BREACHED",
        "summary_provider": "monitoringSummary 30 days, provider admin",
        "summary_reseller": "monitoringSummary 30 days, reseller admin",
    }
    for key, label in labels.items():
        m = r[key]
        print(
            f"{label:<44} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f} {m['sql_statements']:>4} "
            f"{m['runs']:>5}"
        )
    print(
        f"(computers in scope: provider {r['summary_provider']['computers_in_scope']:,}, "
        f"reseller {r['summary_reseller']['computers_in_scope']:,}; "
        f"RPO-breached in the big company: {c['breached']:,})"
    )


def run(quick: bool = False, keep: bool = False, out: Path | None = None) -> int:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    data = asyncio.run(_run(quick, keep))
    data.update(
        benchmark="workloads",
        when=datetime.now(UTC).isoformat(timespec="seconds"),
        quick=quick,
        machine={"cpus": os.cpu_count(), "load_average_before": round(load_before, 2)},
        total_seconds=round(time.perf_counter() - started, 1),
    )
    out = out or ROOT / (
        "bench-results/workloads-quick.json" if quick else "bench-results/workloads.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    report(data)
    print(f"total {data['total_seconds']:.0f} s; results in {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tenantry managed workloads benchmark")
    parser.add_argument("--quick", action="store_true", help="a tenth of the fleet")
    parser.add_argument("--keep", action="store_true", help=f"keep the {DB_NAME} database")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    args = parser.parse_args(argv)
    return run(quick=args.quick, keep=args.keep, out=args.out)


if __name__ == "__main__":
    raise SystemExit(main())
