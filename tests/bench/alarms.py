"""`make bench --suite alarms`: alarm evaluation over a large provider's fleet.

On a fresh PostgreSQL database (`tenantry_bench_alarms`, dropped at the end unless `--keep`)
and Redis database 6 (flushed at the start and the end, namespace `tenantry-bench-alarms`):

1. **Seed**: a tree from `seed_large.seed` (10 resellers, 1,000 companies with 2 locations),
   then a fleet written by the simulator's bulk loader (`app.simulator.loader`): 100,000
   computers (100 per company) with an agent job each, the companies' Backup & Replication
   servers and their jobs, and weeks of sessions — about 1,000,000 in all (`--quick`: 100
   companies, 10,000 computers, about 100,000 sessions). Then the catalogue's templates for
   every organization (`templates.ensure_templates`, timed alone).
2. **Full sweep** (`evaluation.evaluate_all`, in this process): time, SQL statements
   (`tests/querycount.py`), evaluator calls, templates applied, alarms raised (by template).
3. **Incremental sweep** after 1,000 new sessions ingested through the ingestion service
   (`app.services.ingestion.ingest`, 100 per company in 10 companies: a fifth FAILED, the rest
   SUCCESS, on jobs chosen among those with and without an open alarm), so the "sessions"
   cursor sees them: `evaluation.evaluate_changed` — time, statements, what it evaluated and
   changed. Also the same call again with nothing new (the floor of an incremental sweep: the
   sources without a change log are evaluated whole on every run), and once more
   `CLOCK_MINUTES` later, when the clock's templates (RPO …) are due for their whole run.
4. **Latency from an ingested failed session to its alarm, through the real path**: the real
   app in-process (`POST /ingest/v1/batch` over `httpx.ASGITransport`, the Redis broker set up
   in this process, `alarms_evaluate_on_events` on) → the `alarms.evaluate` job it queues →
   `tenantry worker --processes 1 --threads 2` → the alarm row. One failed session per try, on
   a job of another company each time (an organization gets one evaluation per minute; a second
   batch in the same minute waits for the next one, see app/alarms/evaluation.py), 20 tries
   after one warm-up: p50/p99 of post → alarm row seen (polled every 5 ms), with its parts
   from the job's own timestamps (post → job created, created → started, started → finished).

    .venv/bin/python -m tests.bench.alarms [--quick] [--keep] [--out PATH]
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.bench.failover import until_ready
from tests.bench.fresh_db import fresh_database, orm
from tests.bench.jobs import TENANTRY, Proc, ms, redis_url
from tests.bench.loadgen import percentile
from tests.bench.results import suite_main
from tests.bench.run import BenchError, base_env
from tests.bench.seed_large import TreeSize, seed
from tests.bench.suite import run_suite

DB_NAME = "tenantry_bench_alarms"
REDIS_DB = 6
NAMESPACE = "tenantry-bench-alarms"
URL = "/ingest/v1/batch"
JOB_FAILED = "job_session_failed"


@dataclass(frozen=True)
class Size:
    resellers: int = 10
    companies: int = 1_000
    computers: int = 100_000
    history_days: int = 10
    cadence_days: int = 1
    new_sessions: int = 1_000
    new_companies: int = 10
    latency_tries: int = 20


FULL = Size()
QUICK = Size(resellers=4, companies=100, computers=10_000)


def service_env(url: str) -> dict[str, str]:
    env = base_env(url)
    env.update(
        REDIS_URL=redis_url(REDIS_DB),
        TENANTRY_REDIS_NAMESPACE=NAMESPACE,
        TENANTRY_EMBEDDED_WORKER="0",
        TENANTRY_EMBEDDED_SCHEDULER="0",
    )
    return env


def lat(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "runs": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 1),
        "p99_ms": round(percentile(ordered, 99), 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


# --- seeding --------------------------------------------------------------------------------------


async def load_fleet(size: Size, end: datetime) -> dict[str, Any]:
    from app.models import Location, Organization, OrgKind
    from app.simulator.fleet import CompanySpec, FleetSpec, generate
    from app.simulator.loader import load_fleet as load

    companies = await Organization.filter(kind=OrgKind.COMPANY.value).order_by("id")
    locations: dict[int, list[int]] = {}
    for loc in await Location.all().order_by("-is_default", "id"):
        locations.setdefault(loc.company_id, []).append(loc.id)  # type: ignore[attr-defined]
    per, extra = divmod(size.computers, len(companies))
    spec = FleetSpec(
        companies=tuple(
            CompanySpec(c.id, c.name, tuple(locations[c.id]), per + (1 if n < extra else 0))
            for n, c in enumerate(companies)
        ),
        end=end,
        seed=8,
        history_days=size.history_days,
        cadence_days=size.cadence_days,
    )
    stats = await load(generate(spec))
    print(
        f"· loaded {stats.rows['managed_computers']:,} computers, {stats.sessions:,} sessions "
        f"in {stats.seconds:.1f} s",
        flush=True,
    )
    return {"seconds": round(stats.seconds, 2), "rows": stats.rows, "sessions": stats.sessions}


async def table_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
        return {
            t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))
            for t in (
                "organizations",
                "managed_computers",
                "backup_jobs",
                "backup_job_sessions",
                "alarm_templates",
            )
        }
    finally:
        await conn.close()


# --- sweeps -------------------------------------------------------------------------------------


async def alarm_counts() -> dict[str, Any]:
    from app.models.alarms import Alarm

    rows = await Alarm.filter(active_key__isnull=False).values_list(
        "status", "template__catalogue_key"
    )
    return {
        "open": len(rows),
        "by_status": dict(Counter(str(getattr(s, "value", s)) for s, _ in rows)),
        "by_template": dict(Counter(k for _, k in rows).most_common()),
    }


async def timed(call: Any) -> tuple[Any, float, int]:
    """(result, seconds, SQL statements) of one awaited call."""
    from tests.querycount import count_queries

    with count_queries() as queries:
        began = time.perf_counter()
        result = await call
        seconds = time.perf_counter() - began
    return result, seconds, queries.count


async def full_sweep() -> dict[str, Any]:
    from app.alarms import evaluation

    report, seconds, statements = await timed(evaluation.evaluate_all())
    counts = await alarm_counts()
    out = {
        "seconds": round(seconds, 3),
        "sql_statements": statements,
        "report": report.as_dict(),
        "alarms": counts,
    }
    print(
        f"· full sweep: {seconds:.2f} s, {statements} statements, {counts['open']:,} open alarms",
        flush=True,
    )
    return out


async def agent_keys(company_ids: list[int]) -> dict[int, tuple[Any, str]]:
    """A key per company (row and secret), on its default location."""
    from app.auth.tokens import digest
    from app.models import AgentKey, Location
    from app.services.agent_keys import new_agent_key

    out: dict[int, tuple[Any, str]] = {}
    for company_id in company_ids:
        location = (
            await Location.filter(company_id=company_id).order_by("-is_default", "id").first()
        )
        assert location is not None
        prefix, secret = new_agent_key()
        key = await AgentKey.create(
            company_id=company_id,
            location=location,
            name="bench",
            prefix=prefix,
            key_hash=digest(secret),
        )
        out[company_id] = (key, secret)
    return out


def session(uid: str, job_uid: str, result: str, at: datetime) -> dict[str, Any]:
    """A session that ended at `at`, after every loaded one (the fleet ends before)."""
    return {
        "uid": uid,
        "job": job_uid,
        "result": result,
        "startedAt": (at - timedelta(seconds=50)).isoformat(),
        "endedAt": at.isoformat(),
        "processedBytes": 10_000_000,
    }


async def agent_jobs(company_id: int) -> list[dict[str, Any]]:
    from app.models import BackupJob

    return list(
        await BackupJob.filter(company_id=company_id, computer_id__not_isnull=True)
        .order_by("id")
        .values("id", "uid", "last_result")
    )


async def incremental_sweep(size: Size, companies: list[int]) -> dict[str, Any]:
    """`new_sessions` sessions through the ingestion service, then evaluate_changed."""
    from app.alarms import evaluation
    from app.services import ingestion

    keys = await agent_keys(companies)
    per = size.new_sessions // len(companies)
    now = datetime.now(UTC)
    ingested = 0
    began = time.perf_counter()
    for n, company_id in enumerate(companies):
        jobs = await agent_jobs(company_id)
        records = []
        for i in range(per):
            job = jobs[i % len(jobs)]
            result = "FAILED" if i % 5 == 0 else "SUCCESS"
            records.append(session(f"inc-{n}-{i}", job["uid"], result, now))
        answer = await ingestion.ingest(
            keys[company_id][0], {"reportedAt": now.isoformat(), "sessions": records}
        )
        if answer.rejected or answer.accepted["sessions"] != per:
            raise BenchError(f"ingestion refused sessions: {answer.rejected[:3]}")
        ingested += per
    ingest_seconds = time.perf_counter() - began
    before = await alarm_counts()
    report, seconds, statements = await timed(evaluation.evaluate_changed())
    after = await alarm_counts()
    idle, idle_seconds, idle_statements = await timed(evaluation.evaluate_changed())
    # The same a few minutes on, when the clock's templates are due for their whole run.
    later = datetime.now(UTC) + timedelta(minutes=evaluation.CLOCK_MINUTES)
    clock, clock_seconds, clock_statements = await timed(evaluation.evaluate_changed(later))
    print(
        f"· incremental sweep after {ingested:,} sessions: {seconds:.2f} s, {statements} "
        f"statements; with nothing new {idle_seconds:.2f} s ({clock_seconds:.2f} s when the "
        "clock's templates are due)",
        flush=True,
    )
    return {
        "sessions_ingested": ingested,
        "companies": len(companies),
        "ingest_seconds": round(ingest_seconds, 3),
        "seconds": round(seconds, 3),
        "sql_statements": statements,
        "report": report.as_dict(),
        "open_alarms_before": before["open"],
        "open_alarms_after": after["open"],
        "nothing_new": {
            "seconds": round(idle_seconds, 3),
            "sql_statements": idle_statements,
            "report": idle.as_dict(),
        },
        "nothing_new_clock_due": {
            "seconds": round(clock_seconds, 3),
            "sql_statements": clock_statements,
            "report": clock.as_dict(),
        },
    }


# --- latency through the real path ----------------------------------------------------------------


async def alarm_of(job_id: int) -> Any:
    from app.models.alarms import Alarm

    return await Alarm.filter(
        template__catalogue_key=JOB_FAILED,
        object_type="BackupJob",
        object_id=job_id,
        active_key__isnull=False,
    ).first()


async def one_try(client: httpx.AsyncClient, secret: str, company_id: int, n: int, workers: Proc):
    """A failed session of a job without an open alarm, posted; the alarm row waited for."""
    from app.models import Job
    from app.models.alarms import Alarm

    jobs = await agent_jobs(company_id)
    failing = await Alarm.filter(
        template__catalogue_key=JOB_FAILED, object_type="BackupJob", active_key__isnull=False
    ).values_list("object_id", flat=True)
    job = next(j for j in jobs if j["id"] not in set(failing))
    at = datetime.now(UTC)
    body = {
        "reportedAt": at.isoformat(),
        "sessions": [session(f"lat-{n}", job["uid"], "FAILED", at)],
    }
    began = time.perf_counter()
    posted_at = datetime.now(UTC)
    resp = await client.post(URL, json=body, headers={"Authorization": f"Bearer {secret}"})
    post_ms = (time.perf_counter() - began) * 1000
    if resp.status_code != 200 or resp.json()["accepted"]["sessions"] != 1:
        raise BenchError(f"ingestion answered {resp.status_code}: {resp.text[:300]}")
    while (alarm := await alarm_of(job["id"])) is None:
        workers.check_alive()
        if time.perf_counter() - began > 120:
            raise BenchError(
                f"no alarm for job {job['id']} after 120 s:\n{workers.output()[-2000:]}"
            )
        await asyncio.sleep(0.005)
    seen_ms = (time.perf_counter() - began) * 1000
    query = Job.filter(kind="alarms.evaluate", organization_id=company_id).order_by("-id")
    while (evaluation := await query.first()) is None or evaluation.finished_at is None:
        if time.perf_counter() - began > 120:  # the job ends just after the alarm's commit
            raise BenchError(f"the alarms.evaluate job of company {company_id} did not finish")
        await asyncio.sleep(0.01)
    assert evaluation.started_at is not None
    parts = {
        "post_ms": post_ms,
        "post_to_job_created_ms": ms(evaluation.created_at, posted_at),
        "created_to_started_ms": ms(evaluation.started_at, evaluation.created_at),
        "started_to_finished_ms": ms(evaluation.finished_at, evaluation.started_at),
    }
    return seen_ms, parts, alarm


async def latency(url: str, size: Size, companies: list[int]) -> dict[str, Any]:
    from app.main import create_app
    from app.settings import get_settings, override_settings
    from workers import broker

    settings = replace(
        get_settings(),
        redis_url=redis_url(REDIS_DB),
        redis_namespace=NAMESPACE,
        alarms_evaluate_on_events=True,
    )
    override_settings(settings)
    broker.setup(settings)
    keys = await agent_keys(companies)
    workers = Proc(
        "worker",
        [TENANTRY, "worker", "--processes", "1", "--threads", "2", "--shutdown-timeout", "10"],
        service_env(url),
    )
    samples: list[float] = []
    parts: list[dict[str, Any]] = []
    try:
        await until_ready(workers, 1)
        app = create_app(settings, manage_orm=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for n, company_id in enumerate(companies):
                seen, part, alarm = await one_try(
                    client, keys[company_id][1], company_id, n, workers
                )
                if n == 0:
                    continue  # warm-up: the worker's first job loads the evaluators
                samples.append(seen)
                parts.append(part)
                if alarm.status.value not in ("ACTIVE", "PENDING"):
                    raise BenchError(f"alarm {alarm.id} is {alarm.status}")
    finally:
        workers.stop()
    out = {"tries": len(samples), "post_to_alarm": lat(samples)}
    for key in (
        "post_ms",
        "post_to_job_created_ms",
        "created_to_started_ms",
        "started_to_finished_ms",
    ):
        values = [p[key] for p in parts if p[key] is not None]
        if values:
            out[key.removesuffix("_ms")] = lat(values)
    print(
        f"· ingested failed session → alarm: p50 {out['post_to_alarm']['p50_ms']:.0f} ms, "
        f"p99 {out['post_to_alarm']['p99_ms']:.0f} ms ({len(samples)} tries)",
        flush=True,
    )
    return out


# --- the suite ----------------------------------------------------------------------------------


async def measure_all(size: Size, keep: bool) -> dict[str, Any]:
    from app.alarms.templates import ensure_templates
    from app.models import Organization, OrgKind

    results: dict[str, Any] = {}
    async with fresh_database(DB_NAME, keep) as url:
        tree = TreeSize(
            resellers=size.resellers,
            companies=size.companies,
            locations_per_company=2,
            users=2 * size.companies,
        )
        seeded = await seed(url, tree)
        results["tree"] = {**seeded.counts, "seconds": round(seeded.seconds, 2)}
        async with orm(url):
            # The fleet's "now" a little before the real one: sessions ingested later are newer.
            end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
            results["fleet"] = await load_fleet(size, end)
            began = time.perf_counter()
            orgs = list(await Organization.all().values_list("id", flat=True))
            created = await ensure_templates(orgs)
            results["templates"] = {
                "created": created,
                "organizations": len(orgs),
                "seconds": round(time.perf_counter() - began, 3),
            }
            results["counts"] = await table_counts(url)
            results["full_sweep"] = await full_sweep()
            companies = list(
                await Organization.filter(kind=OrgKind.COMPANY.value)
                .order_by("id")
                .values_list("id", flat=True)
            )
            results["incremental"] = await incremental_sweep(size, companies[: size.new_companies])
            tries = companies[-(size.latency_tries + 1) :]  # untouched by the incremental part
            results["latency"] = await latency(url, size, tries)
        if keep:
            print(f"kept {url}")
    return results


def report(r: dict[str, Any], quick: bool) -> None:
    c, full, inc, latn = r["counts"], r["full_sweep"], r["incremental"], r["latency"]
    print()
    print(f"Tenantry alarms benchmark{' (--quick)' if quick else ''}: PostgreSQL + Redis")
    print(
        f"{c['organizations']:,} organizations, {c['managed_computers']:,} computers, "
        f"{c['backup_jobs']:,} jobs, {c['backup_job_sessions']:,} sessions, "
        f"{c['alarm_templates']:,} templates"
    )
    print()
    print(
        f"templates ensured           {r['templates']['seconds']:>9.2f} s "
        f"({r['templates']['created']:,} rows)"
    )
    print(
        f"full sweep                  {full['seconds']:>9.2f} s  {full['sql_statements']:>6} SQL  "
        f"{full['alarms']['open']:,} alarms open"
    )
    print(
        f"incremental, {inc['sessions_ingested']:,} sessions  {inc['seconds']:>9.2f} s  "
        f"{inc['sql_statements']:>6} SQL  (nothing new: {inc['nothing_new']['seconds']:.2f} s, "
        f"{inc['nothing_new']['sql_statements']} SQL; clock's templates due: "
        f"{inc['nothing_new_clock_due']['seconds']:.2f} s, "
        f"{inc['nothing_new_clock_due']['sql_statements']} SQL)"
    )
    p = latn["post_to_alarm"]
    print(
        f"failed session → alarm      p50 {p['p50_ms']:>7.0f} ms  p99 {p['p99_ms']:>7.0f} ms  "
        f"({latn['tries']} tries)"
    )
    for key in ("post", "post_to_job_created", "created_to_started", "started_to_finished"):
        if key in latn:
            print(
                f"  {key:<26} p50 {latn[key]['p50_ms']:>7.1f} ms  p99 {latn[key]['p99_ms']:>7.1f} ms"
            )
    print("alarms open after the full sweep, by template:")
    for key, n in list(full["alarms"]["by_template"].items())[:12]:
        print(f"  {key:<32} {n:>8,}")


def run(quick: bool = False, out: Path | None = None, keep: bool = False) -> int:
    """The alarms suite; 0 when it measured, 1 when it could not give trustworthy figures."""
    size = QUICK if quick else FULL
    return run_suite(
        "alarms",
        quick=quick,
        out=out,
        size=size,
        database=DB_NAME,
        redis_db=REDIS_DB,
        measure=lambda: measure_all(size, keep),
        report=lambda results: report(results, quick),
    )


main = suite_main(
    run,
    "Tenantry alarms benchmark",
    "10,000 computers and about 100,000 sessions instead of 100,000 and 1,000,000",
    f"keep the {DB_NAME} database",
)

if __name__ == "__main__":
    raise SystemExit(main())
