"""`make bench --suite billing`: a monthly invoice run for 10,000 companies, beside the floor.

On a fresh PostgreSQL database (`tenantry_bench_billing`, dropped at the end unless `--keep`)
and Redis database 14 (flushed at the start and the end, namespace `tenantry-bench-billing`):

1. **Seed**: a tree from `seed_large.seed` (20 resellers, 10,000 companies — a third directly
   under the provider — with 2 locations and 2 users each: the owner and one other client
   role), then `billing_seed.seed_usage` by COPY: four plans per owner (EUR/USD/JPY/BHD; VAT,
   sales tax, GST, none; summary and detailed; allocated and consumed storage), one assignment
   per company, 2–10 computers per company (agents by edition, agent jobs to the cloud or
   local), a Backup & Replication server with jobs for 40 %, a tenant account with quota,
   used space and replicas for 70 %, and ledger entries (compute hours, transfer out) in and
   around October 2026. `--quick`: 1,000 companies, 5 resellers.
2. **The run, through the real path**: one `billing.run` job (`{"as_of": "2026-11-01"}`, no
   requester: every customer with a plan) created with `app.services.jobs.create` in this
   process and run by `tenantry worker --processes 1 --threads 2` (the job is one message: a
   second process would only idle). Measured from the job's `started_at` to `finished_at`
   (its own rows' timestamps): total seconds, invoices per second, the worker group's CPU.
   The worker matters here: it is the path production uses (its own process, ORM and
   connection pool, the job's checkpoints and heartbeats).
3. **Where the time goes** (in this process, after the run): `billing_usage.measure` of every
   customer for the period alone (the ORM's grouped statements, batches of 2,000) — the
   usage part of generation.
4. **The floor**: `billing_check.FLOOR_SQL`, ONE hand-written aggregate (a UNION ALL of GROUP
   BYs over the same tables) giving every billed figure of every company per location, the
   rows fetched by asyncpg: median of 5 runs after one warm-up. Reported as the ratio
   generation time / floor time.
5. **Checks**: one invoice per company (unique key), numbers 1..n per issuer, and every
   invoice's lines and totals equal to the floor's figures priced independently with
   `Decimal` (`billing_check.recompute`); any difference fails the suite.

    .venv/bin/python -m tests.bench.billing [--quick] [--keep] [--out PATH]
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg

from tests.bench.billing_check import FLOOR_SQL, recompute
from tests.bench.billing_seed import seed_usage
from tests.bench.failover import until_ready
from tests.bench.fresh_db import fresh_database, orm
from tests.bench.jobs import TENANTRY, Proc, ms, redis_url
from tests.bench.results import suite_main
from tests.bench.run import BenchError, base_env
from tests.bench.seed_large import TreeSize, seed
from tests.bench.suite import run_suite

DB_NAME = "tenantry_bench_billing"
REDIS_DB = 14
NAMESPACE = "tenantry-bench-billing"
AS_OF = date(2026, 11, 1)
PERIOD = (date(2026, 10, 1), date(2026, 10, 31))
FLOOR_RUNS = 5


@dataclass(frozen=True)
class Size:
    resellers: int = 20
    companies: int = 10_000
    computers: tuple[int, int] = (2, 10)


FULL = Size()
QUICK = Size(resellers=5, companies=1_000)


def service_env(url: str) -> dict[str, str]:
    env = base_env(url)
    env.update(
        REDIS_URL=redis_url(REDIS_DB),
        TENANTRY_REDIS_NAMESPACE=NAMESPACE,
        TENANTRY_EMBEDDED_WORKER="0",
        TENANTRY_EMBEDDED_SCHEDULER="0",
    )
    return env


async def seed_all(url: str, size: Size) -> dict[str, Any]:
    tree = TreeSize(
        resellers=size.resellers,
        companies=size.companies,
        locations_per_company=2,
        users=2 * size.companies,
    )
    seeded = await seed(url, tree)
    conn = await asyncpg.connect(url)
    try:
        companies = [
            (r["id"], r["parent_id"])
            for r in await conn.fetch(
                "SELECT id, parent_id FROM organizations WHERE kind = 'COMPANY' ORDER BY id"
            )
        ]
        locations: dict[int, list[int]] = {}
        for r in await conn.fetch("SELECT id, company_id FROM locations ORDER BY id"):
            locations.setdefault(r["company_id"], []).append(r["id"])
        usage = await seed_usage(conn, companies, locations, *PERIOD, computers=size.computers)
    finally:
        await conn.close()
    print(
        f"· seeded {len(companies):,} companies in {seeded.seconds:.1f} s, usage in "
        f"{usage.seconds:.1f} s: "
        + ", ".join(f"{n:,} {t}" for t, n in usage.rows.items() if t != "plan_rates"),
        flush=True,
    )
    return {
        "tree": seeded.counts,
        "tree_seconds": round(seeded.seconds, 2),
        "usage_rows": usage.rows,
        "usage_seconds": round(usage.seconds, 2),
    }


async def billing_run(url: str) -> dict[str, Any]:
    """One billing.run job for everyone on a real worker; its own timestamps."""
    from app.models import Job, JobState
    from app.services import jobs
    from app.services.invoices import RUN_KIND

    workers = Proc(
        "worker",
        [TENANTRY, "worker", "--processes", "1", "--threads", "2", "--shutdown-timeout", "10"],
        service_env(url),
    )
    try:
        await until_ready(workers, 1)
        db_before = await database_stats(url)
        cpu_before = workers.cpu_seconds()
        began = time.perf_counter()
        job, _ = await jobs.create(None, RUN_KIND, None, {"as_of": AS_OF.isoformat()})
        while True:
            row = await Job.get(id=job.id)
            if row.state not in (JobState.QUEUED, JobState.RUNNING):
                break
            workers.check_alive()
            if time.perf_counter() - began > 1800:
                raise BenchError("the billing run did not finish within 30 minutes")
            await asyncio.sleep(0.05)
        observed = time.perf_counter() - began
        cpu = workers.cpu_seconds() - cpu_before
    finally:
        workers.stop()
    await asyncio.sleep(1.0)  # the server's statistics are flushed at least every second
    db = {k: v - db_before[k] for k, v in (await database_stats(url)).items()}
    if row.state is not JobState.SUCCEEDED:
        raise BenchError(f"the billing run ended {row.state}: {row.error}")
    assert row.started_at is not None and row.finished_at is not None
    seconds = ms(row.finished_at, row.started_at) / 1000
    from app.models.billing import Invoice

    invoices = await Invoice.filter(job_id=row.id).count()
    return {
        "job_id": row.id,
        "attempts": row.attempts,
        "invoices": invoices,
        "result": row.result,
        "seconds": round(seconds, 3),
        "observed_seconds": round(observed, 3),
        "created_to_started_ms": round(ms(row.started_at, row.created_at), 1),
        "invoices_per_second": round(invoices / seconds, 1),
        "ms_per_invoice": round(1000 * seconds / max(invoices, 1), 3),
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_ms_per_invoice": round(1000 * cpu / max(invoices, 1), 3),
        "database": db,
        "rows_written_per_invoice": round(
            (db["tup_inserted"] + db["tup_updated"]) / max(invoices, 1), 2
        ),
    }


async def database_stats(url: str) -> dict[str, int]:
    """The database's counters (pg_stat_database): transactions (every statement outside
    one counts as one) and rows written and read."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched, tup_returned "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return {k: int(v) for k, v in dict(row).items()}


async def usage_alone(customers: list[int]) -> float:
    """`billing_usage.measure` of every customer for the period (summary figures)."""
    from app.services.billing_usage import measure

    began = time.perf_counter()
    measured = await measure(customers, *PERIOD)
    seconds = time.perf_counter() - began
    if len(measured) != len(customers):
        raise BenchError(f"measure gave {len(measured)} customers of {len(customers)}")
    return seconds


async def floor(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(FLOOR_SQL, AS_OF)  # warm-up: plan cached, pages in memory
        samples = []
        for _ in range(FLOOR_RUNS):
            began = time.perf_counter()
            rows = await conn.fetch(FLOOR_SQL, AS_OF)
            samples.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return {
        "rows": len(rows),
        "companies": len({r["company_id"] for r in rows}),
        "seconds": round(statistics.median(samples), 4),
        "samples_seconds": [round(s, 4) for s in samples],
    }


async def check(url: str, companies: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        count, keys = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (customer_id, kind, type, period_start, revision)) "
            "FROM invoices"
        )
        if count != companies or keys != companies:
            raise BenchError(f"{count} invoices, {keys} distinct keys, for {companies} companies")
        gaps = await conn.fetchval(
            "SELECT count(*) FROM (SELECT issuer_id, count(*) AS n, "
            "max(split_part(number, '-', 3)::int) AS top FROM invoices GROUP BY issuer_id) s "
            "WHERE n <> top"
        )
        if gaps:
            raise BenchError(f"{gaps} issuer(s) with a gap or a repeat in their numbers")
        checked = await recompute(conn, AS_OF)
    finally:
        await conn.close()
    if checked.mismatches or checked.invoices != companies:
        raise BenchError(
            f"{checked.mismatches} of {checked.invoices} invoices differ from the independent "
            f"recomputation, e.g. {checked.wrong}"
        )
    return {"invoices": checked.invoices, "with_money": checked.with_money, "mismatches": 0}


async def measure_all(size: Size, keep: bool) -> dict[str, Any]:
    from app.settings import Settings
    from workers import broker

    results: dict[str, Any] = {}
    async with fresh_database(DB_NAME, keep) as url:
        results["seed"] = await seed_all(url, size)
        async with orm(url):
            settings = Settings(database_url=url, seed_demo=False)
            broker.setup(
                replace(settings, redis_url=redis_url(REDIS_DB), redis_namespace=NAMESPACE)
            )
            print(f"· billing.run for {size.companies:,} companies on a real worker", flush=True)
            results["run"] = await billing_run(url)
            from app.models.billing import PlanAssignment

            customers = list(await PlanAssignment.all().values_list("customer_id", flat=True))
            results["usage_measure_seconds"] = round(await usage_alone(customers), 3)
        print("· the floor: one SQL aggregate of the same usage", flush=True)
        results["floor"] = await floor(url)
        print("· checks: one invoice each, numbers, totals recomputed", flush=True)
        results["checks"] = await check(url, size.companies)
        if keep:
            print(f"kept {url}")
    run, fl = results["run"], results["floor"]
    results["ratio_generation_over_floor"] = round(run["seconds"] / fl["seconds"], 1)
    results["ratio_usage_measure_over_floor"] = round(
        results["usage_measure_seconds"] / fl["seconds"], 1
    )
    return results


def report(r: dict[str, Any], size: Size, quick: bool) -> None:
    run, fl = r["run"], r["floor"]
    print()
    print(f"Tenantry billing benchmark{' (--quick)' if quick else ''}: PostgreSQL + Redis")
    print(
        f"{size.companies:,} companies, {r['seed']['usage_rows']['managed_computers']:,} "
        f"computers, {r['seed']['usage_rows']['backup_jobs']:,} jobs, "
        f"{r['seed']['usage_rows']['vm_replicas']:,} replicas, "
        f"{r['seed']['usage_rows']['usage_ledger']:,} ledger entries"
    )
    print()
    print("monthly run (billing.run, 1 worker process, started → finished)")
    print(f"  total                      {run['seconds']:>9.2f} s")
    print(f"  invoices/s                 {run['invoices_per_second']:>9.1f}")
    print(f"  per invoice                {run['ms_per_invoice']:>9.2f} ms")
    print(f"  worker CPU per invoice     {run['worker_cpu_ms_per_invoice']:>9.2f} ms")
    print(
        f"  rows written per invoice   {run['rows_written_per_invoice']:>9.2f} "
        "(invoice, lines, e-mails, audit entry)"
    )
    print(f"usage measure alone (ORM)    {r['usage_measure_seconds']:>9.2f} s")
    print(f"floor (one SQL aggregate)    {fl['seconds'] * 1000:>9.1f} ms ({fl['rows']:,} rows)")
    print(f"generation / floor           {r['ratio_generation_over_floor']:>9.1f}×")
    print(f"usage measure / floor        {r['ratio_usage_measure_over_floor']:>9.1f}×")
    print(f"checks: {r['checks']['invoices']:,} invoices recomputed, no difference")


def run(quick: bool = False, out: Path | None = None, keep: bool = False) -> int:
    """The billing suite; 0 when it measured, 1 when it could not give trustworthy figures."""
    size = QUICK if quick else FULL
    return run_suite(
        "billing",
        quick=quick,
        out=out,
        size=size,
        database=DB_NAME,
        redis_db=REDIS_DB,
        measure=lambda: measure_all(size, keep),
        report=lambda results: report(results, size, quick),
        extra={"as_of": AS_OF.isoformat()},
    )


main = suite_main(
    run,
    "Tenantry billing benchmark",
    "1,000 companies instead of 10,000",
    f"keep the {DB_NAME} database",
)

if __name__ == "__main__":
    raise SystemExit(main())
