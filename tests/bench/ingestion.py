"""Ingestion benchmark: job sessions accepted per second, batches of 1,000, on PostgreSQL.

On a fresh database (`tenantry_bench_ingest`, dropped at the end unless `--keep`), through
`POST /ingest/v1/batch` of the real Starlette app (in-process over `httpx.ASGITransport`: the
agent key check, JSON decoding, validation, the transaction; no network), for companies of
200 computers with one agent job each plus 20 backup-server jobs:

1. **new**: batches of 1,000 finished sessions never seen before (inserts, rollups), one
   company, one batch at a time;
2. **update**: 1,000 sessions first reported running, then reported finished (updates, rollups
   moved, the jobs' last run);
3. **resend**: a batch already accepted, sent again (idempotent: nothing written);
4. **parallel**: 4 companies sending new batches at once (one lock per company).

Reports per phase p50 / p95 batch latency and sessions/s (sessions over the phase's wall time),
and checks the rows and the rollup totals against what was sent. `--quick`: fewer batches.
Results: bench-results/ingestion.json (`--quick`: bench-results/ingestion-quick.json).

    .venv/bin/python -m tests.bench.ingestion [--quick] [--keep] [--out PATH]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from tortoise.functions import Sum

from app.auth.tokens import digest
from app.models import AgentKey, BackupJobSession, Location, Organization, OrgKind, SessionRollup
from app.services.agent_keys import new_agent_key
from tests.bench.fresh_db import fresh_database, orm
from tests.bench.results import default_out, suite_main, write_results
from tests.bench.seed_large import apply_schema

DB_NAME = "tenantry_bench_ingest"
BATCH = 1_000
COMPUTERS = 200
SERVER_JOBS = 20
PARALLEL = 4
URL = "/ingest/v1/batch"
START = datetime(2026, 1, 1, tzinfo=UTC)
RESULTS = ("SUCCESS", "SUCCESS", "SUCCESS", "WARNING", "FAILED")


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def inventory() -> dict[str, Any]:
    return {
        "reportedAt": iso(START),
        "servers": [{"uid": "vbr", "kind": "BACKUP_AND_REPLICATION", "name": "vbr01"}],
        "computers": [
            {"uid": f"pc-{n}", "hostname": f"pc{n}", "osFamily": "WINDOWS"}
            for n in range(COMPUTERS)
        ],
        "jobs": [
            {"uid": f"job-{n}", "kind": "AGENT", "name": f"pc{n} daily", "computer": f"pc-{n}"}
            for n in range(COMPUTERS)
        ]
        + [
            {"uid": f"vbr-{n}", "kind": "VBR_BACKUP", "name": f"vms {n}", "server": "vbr"}
            for n in range(SERVER_JOBS)
        ],
    }


def job_of(n: int) -> str:
    return f"vbr-{n % SERVER_JOBS}" if n % 11 == 0 else f"job-{n % COMPUTERS}"


def sessions_batch(first: int, *, running: bool = False) -> bytes:
    """1,000 sessions numbered from `first`, one every 90 s of backup history."""
    sessions = []
    for n in range(first, first + BATCH):
        started = START + timedelta(seconds=90 * n)
        s: dict[str, Any] = {"uid": f"s-{n}", "job": job_of(n), "startedAt": iso(started)}
        if not running:
            s.update(
                result=RESULTS[n % len(RESULTS)],
                endedAt=iso(started + timedelta(minutes=20)),
                processedBytes=1_000_000 + n,
                transferredBytes=400_000,
                warnings=1 if n % 5 == 3 else 0,
            )
        sessions.append(s)
    reported = START + timedelta(seconds=90 * (first + BATCH) + 3600)
    return json.dumps({"reportedAt": iso(reported), "sessions": sessions}).encode()


async def _seed_company(index: int) -> str:
    company = await Organization.create(kind=OrgKind.COMPANY, name=f"company {index}")
    location = await Location.create(company=company, name="Default", is_default=True)
    prefix, secret = new_agent_key()
    await AgentKey.create(
        company=company, location=location, name="bench", prefix=prefix, key_hash=digest(secret)
    )
    return secret


class Sender:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, key: str, body: bytes, expect: int) -> float:
        started = time.perf_counter()
        resp = await self.client.post(
            URL,
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        elapsed = time.perf_counter() - started
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:500]}")
        answer = resp.json()
        if answer["rejected"] or answer["accepted"]["sessions"] != expect:
            raise RuntimeError(f"unexpected answer: {str(answer)[:500]}")
        return elapsed


def phase(latencies: list[float], sessions: int, wall: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "batches": len(latencies),
        "sessions": sessions,
        "seconds": round(wall, 3),
        "sessions_per_second": round(sessions / wall, 1),
        "batch_p50_ms": round(statistics.median(ordered) * 1000, 1),
        "batch_p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 1),
    }


async def measure(quick: bool) -> dict[str, Any]:
    from app.main import create_app

    batches = 5 if quick else 30
    keys = [await _seed_company(i) for i in range(PARALLEL)]
    app = create_app(manage_orm=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as c:
        sender = Sender(c)
        for key in keys:
            await sender.send(key, json.dumps(inventory()).encode(), 0)
        main = keys[0]
        await sender.send(main, sessions_batch(10_000_000), BATCH)  # warm-up
        sent = BATCH

        bodies = [sessions_batch(n * BATCH) for n in range(batches)]
        started = time.perf_counter()
        new = [await sender.send(main, body, BATCH) for body in bodies]
        results = {"new": phase(new, batches * BATCH, time.perf_counter() - started)}
        sent += batches * BATCH

        first = 1_000_000
        running = [sessions_batch(first + n * BATCH, running=True) for n in range(batches)]
        finished = [sessions_batch(first + n * BATCH) for n in range(batches)]
        for body in running:
            await sender.send(main, body, BATCH)
        started = time.perf_counter()
        updated = [await sender.send(main, body, BATCH) for body in finished]
        results["update"] = phase(updated, batches * BATCH, time.perf_counter() - started)
        sent += batches * BATCH

        started = time.perf_counter()
        resent = [await sender.send(main, body, BATCH) for body in bodies]
        results["resend"] = phase(resent, batches * BATCH, time.perf_counter() - started)

        per_company = max(2, batches // 2)

        async def company(key: str) -> list[float]:
            return [
                await sender.send(key, sessions_batch(2_000_000 + n * BATCH), BATCH)
                for n in range(per_company)
            ]

        started = time.perf_counter()
        lists = await asyncio.gather(*[company(k) for k in keys])
        wall = time.perf_counter() - started
        results["parallel"] = phase(
            [x for xs in lists for x in xs], PARALLEL * per_company * BATCH, wall
        )
        results["parallel"]["companies"] = PARALLEL

    total = sent + PARALLEL * per_company * BATCH
    stored = await BackupJobSession.all().count()
    counted = (
        await SessionRollup.all()
        .annotate(s=Sum("success"), w=Sum("warning"), f=Sum("failed"))
        .values("s", "w", "f")
    )
    rollup_total = sum((counted[0][k] or 0) for k in ("s", "w", "f"))
    if stored != total or rollup_total != total:
        raise RuntimeError(f"{stored} sessions stored, {rollup_total} counted, {total} sent")
    results["checks"] = {"sessions_stored": stored, "sessions_in_rollups": rollup_total}
    results["batch_size"] = BATCH
    return results


async def _run(quick: bool, keep: bool) -> dict[str, Any]:
    async with fresh_database(DB_NAME, keep, f"?maxsize={PARALLEL * 2}") as url:
        await apply_schema(url)
        async with orm(url):
            return await measure(quick)


def run(quick: bool = False, out: Path | None = None, keep: bool = False) -> int:
    results = asyncio.run(_run(quick, keep))
    print(json.dumps(results, indent=2))
    write_results(out or default_out("ingestion", quick), results)
    for name in ("new", "update", "resend", "parallel"):
        r = results[name]
        print(
            f"ingestion {name:<8} {r['sessions_per_second']:>8.0f} sessions/s  "
            f"batch p50 {r['batch_p50_ms']:.0f} ms  p95 {r['batch_p95_ms']:.0f} ms  "
            f"({r['batches']} batches of {BATCH})",
            file=sys.stderr,
        )
    return 0


main = suite_main(run, "Tenantry ingestion benchmark", "fewer batches", "keep the database")


if __name__ == "__main__":
    raise SystemExit(main())
