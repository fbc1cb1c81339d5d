"""`make bench`: the foundation benchmark, then the background-work one (tests/bench/jobs.py).

Seeds a large tenant tree on PostgreSQL, then measures, at concurrency 16 over HTTP/1.1
keep-alive, one page of 100 companies with their reseller, locations and owner:

* GraphQL with authorization (uvicorn, `app.main:create_app`, one worker);
* GraphQL with the field guards bypassed (`TENANTRY_BENCH_BYPASS_AUTHZ=1`, row scope kept);
* the floor: the same JSON from a hand-written Starlette + asyncpg endpoint;

as the provider's Global Administrator, and again as a reseller's (row scope in SQL). Also
times the query in-process through `schema.execute`. Prints a table and writes JSON to
bench-results/foundation.json (`--quick`: a small tree and short runs, to
bench-results/foundation-quick.json).

    .venv/bin/python -m tests.bench.run [--suite foundation|jobs|allocations|ingestion|workloads|failover|billing|alarms|all]
        [--quick] [--keep]
        [--duration S] [--out PATH] [--jobs-out PATH]

`--suite` picks the benchmarks (default all); `--quick` and `--keep` apply to each, `--out`
and the load options to the foundation one, `--jobs-out` to the jobs one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.bench.floor_app import OWNER_ROLES_ENV
from tests.bench.inprocess import QUERY
from tests.bench.loadgen import percentile
from tests.bench.seed_large import (
    FULL,
    QUICK,
    Seeded,
    TreeSize,
    database_url,
    drop_database,
    recreate_database,
    seed,
)

ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "tenantry_bench"
PAGE = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
SUITES = [
    "foundation",
    "jobs",
    "allocations",
    "ingestion",
    "workloads",
    "failover",
    "billing",
    "alarms",
    "all",
]


class BenchError(RuntimeError):
    """The benchmark cannot give a trustworthy figure (a server failed, a response was wrong)."""


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )

    def log_tail(self, chars: int = 3000) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (from /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log is not None:
            self.log.close()
            self.log = None


@dataclass
class Plan:
    size: TreeSize
    warmup: float
    duration: float
    concurrency: int
    iterations: int
    out: Path
    keep: bool
    quick: bool
    rounds: int
    results: dict[str, Any] = field(default_factory=dict)
    suite: str = "all"
    jobs_out: Path | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}
    env.update(
        DATABASE_URL=url,
        TENANTRY_SEED_DEMO="0",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def uvicorn_argv(target: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", target, "--factory",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


def owner_roles() -> list[str]:
    from app.authz.matrix import load_matrix

    return sorted({r.name for p in load_matrix().portals.values() for r in p.roles if r.primary})


def graphql_server(name: str, url: str, bypass: bool) -> Server:
    env = base_env(url)
    if bypass:
        env["TENANTRY_BENCH_BYPASS_AUTHZ"] = "1"
    return Server(name, [], env, "/graphql")


def floor_server(url: str) -> Server:
    env = base_env(url)
    env[OWNER_ROLES_ENV] = json.dumps(owner_roles())
    return Server("floor", [], env, "/readyz")


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            if server.ready_path == "/graphql":
                resp = httpx.post(
                    server.base + "/graphql", json={"query": "{ __typename }"}, timeout=2
                )
            else:
                resp = httpx.get(server.base + server.ready_path, timeout=2)
            if resp.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{server.name} not ready after {timeout:.0f} s:\n{server.log_tail()}")


def request_of(server: Server) -> tuple[str, str]:
    """(url, JSON body) of the page request for this server."""
    if server.name == "floor":
        return server.base + "/page", json.dumps({"first": PAGE})
    return server.base + "/graphql", json.dumps({"query": QUERY, "variables": {"first": PAGE}})


def fetch_page(server: Server, token: str) -> list[dict[str, Any]]:
    url, body = request_of(server)
    resp = httpx.post(
        url, content=body, timeout=30,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    payload = resp.json() if resp.status_code == 200 else None
    if payload is None or payload.get("errors") or not payload.get("data"):
        raise BenchError(f"{server.name}: bad answer HTTP {resp.status_code}: {resp.text[:800]}")
    return payload["data"]["companies"]["nodes"]


def run_loadgen(
    plan: Plan, server: Server, token: str, warmup: float, duration: float
) -> dict[str, Any]:
    url, body = request_of(server)
    argv = [
        sys.executable, "-m", "tests.bench.loadgen", "--url", url, "--token", token,
        "--body", body, "--concurrency", str(plan.concurrency),
        "--warmup", str(warmup), "--duration", str(duration), "--raw",
    ]  # fmt: skip
    cpu_before = server.cpu_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, cwd=ROOT, env=server.env, capture_output=True, text=True)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = server.cpu_seconds()
    if not done.stdout.strip():
        raise BenchError(f"load generator failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    if result["errors"] or done.returncode != 0:
        raise BenchError(
            f"{server.name}: {result['errors']} error responses under load; first: "
            f"{result['first_error']}\nserver log:\n{server.log_tail()}"
        )
    result["wall_seconds"] = warmup + duration
    result["server_cpu_seconds"] = cpu_after - cpu_before
    result["loadgen_cpu_seconds"] = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    return result


def merge(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from the rounds of one target: total requests over total measured time,
    percentiles over every latency; CPU as a share of one core over the wall time."""
    latencies = sorted(x for seg in segments for x in seg["latencies_ms"])
    requests = sum(seg["requests"] for seg in segments)
    seconds = sum(seg["seconds"] for seg in segments)
    wall = sum(seg["wall_seconds"] for seg in segments)
    return {
        "rps": requests / seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": sum(latencies) / len(latencies),
        "max_ms": latencies[-1],
        "requests": requests,
        "seconds": seconds,
        "rps_by_round": [round(seg["rps"], 1) for seg in segments],
        "server_cpu_cores": sum(seg["server_cpu_seconds"] for seg in segments) / wall,
        "loadgen_cpu_cores": sum(seg["loadgen_cpu_seconds"] for seg in segments) / wall,
    }


def run_inprocess(plan: Plan, seeded: Seeded) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "tests.bench.inprocess", "--token", seeded.provider_token,
        "--iterations", str(plan.iterations), "--first", str(PAGE),
    ]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, env=base_env(seeded.database_url), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(f"in-process measure failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def start_servers(servers: list[Server]) -> None:
    for server in servers:
        server.port = free_port()
        target = (
            "tests.bench.floor_app:create_app" if server.name == "floor" else "app.main:create_app"
        )
        server.argv = uvicorn_argv(target, server.port)
        server.start()
    for server in servers:
        wait_ready(server)
        print(f"· {server.name} ready on port {server.port}", flush=True)


def measure(
    plan: Plan, servers: dict[str, Server], targets: list[tuple[str, str]], tokens: dict[str, str]
) -> None:
    """Interleave the targets in rounds, so that a change in background load (other work on
    the machine) hits every target alike instead of skewing the ratios."""
    segments: dict[tuple[str, str], list[dict[str, Any]]] = {t: [] for t in targets}
    per_round = plan.duration / plan.rounds
    for n in range(plan.rounds):
        print(f"· round {n + 1}/{plan.rounds}: {len(targets)} × {per_round:g} s", flush=True)
        for name, who in targets:
            warmup = plan.warmup if n == 0 else min(plan.warmup, 0.5)
            seg = run_loadgen(plan, servers[name], tokens[who], warmup, per_round)
            segments[(name, who)].append(seg)
    for (name, who), segs in segments.items():
        plan.results[f"{name}/{who}"] = merge(segs)


def check_same_pages(
    pages: dict[tuple[str, str], list[dict[str, Any]]], expected: dict[str, int]
) -> None:
    """Every server must answer the same page, of the expected size, for the same user."""
    for (name, who), nodes in pages.items():
        if len(nodes) != expected[who]:
            raise BenchError(f"{name} as {who}: {len(nodes)} companies, expected {expected[who]}")
        if not all(n["locations"] and n["owner"] for n in nodes):
            raise BenchError(f"{name} as {who}: a company came without locations or owner")
        reference = pages[("graphql_authz", who)]
        if nodes != reference:
            raise BenchError(f"{name} as {who}: the page differs from graphql_authz's")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def machine_info(cpus: int | None, load_before: float) -> dict[str, Any]:
    return {
        "cpus": cpus,
        "python": platform.python_version(),
        "postgres": postgres_version(),
        "load_average_before": round(load_before, 2),
    }


def postgres_version() -> str:
    async def get() -> str:
        conn = await asyncpg.connect(database_url("postgres"))
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    return asyncio.run(get())


def report(
    plan: Plan, seeded: Seeded, in_process: dict[str, Any], total: float, load_before: float
) -> dict[str, Any]:
    r = plan.results
    ratios = {
        "floor_over_graphql": ratio(r["floor/provider"]["rps"], r["graphql_authz/provider"]["rps"]),
        "bypass_over_authz": ratio(
            r["graphql_bypass/provider"]["rps"], r["graphql_authz/provider"]["rps"]
        ),
        "floor_over_graphql_reseller": ratio(
            r["floor/reseller"]["rps"], r["graphql_authz/reseller"]["rps"]
        ),
    }
    cpus = os.cpu_count() or 0
    notes = [
        f"This machine has {cpus} CPU core(s); the load generator (httpx, its own process) "
        "competes with the server and PostgreSQL for them, so the figures are lower bounds "
        "and the ratios are the meaningful part.",
        "One uvicorn worker per server; PostgreSQL on the same machine.",
        f"Load average before the run: {load_before:.2f} (1 min); anything else running on "
        "the machine (tests, builds) lowers and scatters the figures.",
        f"The reseller page holds {min(PAGE, seeded.reseller_companies)} companies "
        "(all that reseller has), the provider page 100.",
    ]
    data = {
        "benchmark": "foundation",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": plan.quick,
        "machine": machine_info(cpus, load_before),
        "tree": seeded.counts,
        "seed_seconds": round(seeded.seconds, 3),
        "seed": {
            "schema_seconds": round(seeded.schema_seconds, 3),
            "copy_seconds": round(seeded.copy_seconds, 3),
        },
        "page_size": PAGE,
        "concurrency": plan.concurrency,
        "warmup_seconds": plan.warmup,
        "duration_seconds": plan.duration,
        "rounds": plan.rounds,
        "runs": r,
        "ratios": ratios,
        "in_process": in_process,
        "total_seconds": round(total, 1),
        "notes": notes,
    }

    print()
    print(
        f"Tenantry foundation benchmark{' (--quick)' if plan.quick else ''}: "
        f"{seeded.counts['resellers']} resellers, {seeded.counts['companies']} companies, "
        f"{seeded.counts['locations']} locations, {seeded.counts['users']} users"
    )
    print(
        f"seeded in {seeded.seconds:.2f} s (schema {seeded.schema_seconds:.2f} s, COPY {seeded.copy_seconds:.2f} s)"
    )
    print(
        f"page of {PAGE} companies with reseller, locations, owner; concurrency {plan.concurrency}, "
        f"{plan.warmup:g} s warm-up + {plan.duration:g} s per target, in {plan.rounds} "
        "interleaved round(s)"
    )
    print()
    header = f"{'server':<30} {'user':<9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'reqs':>7} {'srv CPU':>8} {'gen CPU':>8}"
    print(header)
    print("-" * len(header))
    labels = {
        "graphql_authz": "GraphQL (authz on)",
        "graphql_bypass": "GraphQL (authz bypassed)",
        "floor": "floor (Starlette + asyncpg)",
    }
    for key, run in r.items():
        name, who = key.split("/")
        print(
            f"{labels[name]:<30} {who:<9} {run['rps']:>8.1f} {run['p50_ms']:>8.1f} "
            f"{run['p99_ms']:>8.1f} {run['requests']:>7} {run['server_cpu_cores']:>7.2f}c "
            f"{run['loadgen_cpu_cores']:>7.2f}c"
        )
    print()
    print(f"floor / GraphQL (provider)        {ratios['floor_over_graphql']:.2f}×")
    print(f"floor / GraphQL (reseller)        {ratios['floor_over_graphql_reseller']:.2f}×")
    print(f"authz bypassed / authz on         {ratios['bypass_over_authz']:.3f}×")
    print()
    print("in-process (schema.execute, prebuilt principal, no HTTP), provider page:")
    for key in ("authenticate", "execute_authz", "execute_bypass"):
        m = in_process[key]
        print(
            f"  {key:<16} mean {m['mean_ms']:7.2f} ms  p50 {m['p50_ms']:7.2f} ms  p99 {m['p99_ms']:7.2f} ms  ({m['iterations']} runs)"
        )
    print()
    for note in notes:
        print(f"note: {note}")
    print(f"total {total:.0f} s; results in {plan.out}")
    return data


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description="Tenantry benchmarks (make bench)")
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default="all",
        help="what to measure",
    )
    parser.add_argument("--quick", action="store_true", help="small tree, short runs (smoke)")
    parser.add_argument("--keep", action="store_true", help=f"keep the {DB_NAME} database")
    parser.add_argument("--duration", type=float, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--iterations", type=int, help="in-process executions")
    parser.add_argument("--rounds", type=int, help="interleaved rounds the duration is split in")
    parser.add_argument("--out", type=Path, help="where to write the foundation JSON results")
    parser.add_argument("--jobs-out", type=Path, help="where to write the jobs JSON results")
    args = parser.parse_args(argv)
    quick = args.quick
    default_out = (
        "bench-results/foundation-quick.json" if quick else "bench-results/foundation.json"
    )
    return Plan(
        size=QUICK if quick else FULL,
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        duration=args.duration if args.duration is not None else (3.0 if quick else 15.0),
        concurrency=args.concurrency,
        iterations=args.iterations or (20 if quick else 200),
        out=args.out or ROOT / default_out,
        keep=args.keep,
        quick=quick,
        rounds=args.rounds or (1 if quick else 3),
        suite=args.suite,
        jobs_out=args.jobs_out,
    )


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    status = 0
    if plan.suite in ("foundation", "all"):
        status = run_foundation(plan)
    if plan.suite in ("jobs", "all"):
        from tests.bench import jobs

        status = jobs.run(quick=plan.quick, out=plan.jobs_out, keep=plan.keep) or status
    if plan.suite in ("allocations", "all"):
        from tests.bench import allocations

        status = allocations.run(quick=plan.quick, keep=plan.keep) or status
    if plan.suite in ("ingestion", "all"):
        from tests.bench import ingestion

        status = ingestion.run(quick=plan.quick, keep=plan.keep) or status
    if plan.suite in ("workloads", "all"):
        from tests.bench import workloads

        status = workloads.run(quick=plan.quick, keep=plan.keep) or status
    if plan.suite in ("failover", "all"):
        from tests.bench import failover

        status = failover.run(quick=plan.quick, keep=plan.keep) or status
    if plan.suite in ("billing", "all"):
        from tests.bench import billing

        status = billing.run(quick=plan.quick, keep=plan.keep) or status
    if plan.suite in ("alarms", "all"):
        from tests.bench import alarms

        status = alarms.run(quick=plan.quick, keep=plan.keep) or status
    return status


def run_foundation(plan: Plan) -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    servers: dict[str, Server] = {}
    url = database_url(DB_NAME)
    try:
        print(f"· seeding {DB_NAME} ({plan.size.companies} companies)", flush=True)
        asyncio.run(recreate_database(DB_NAME))
        seeded = asyncio.run(seed(url, plan.size))
        users = {"provider": seeded.provider_token, "reseller": seeded.reseller_token}
        expected = {
            "provider": min(PAGE, plan.size.companies),
            "reseller": min(PAGE, seeded.reseller_companies),
        }
        servers.update(
            graphql_authz=graphql_server("graphql_authz", url, bypass=False),
            graphql_bypass=graphql_server("graphql_bypass", url, bypass=True),
            floor=floor_server(url),
        )
        targets = [
            ("graphql_authz", "provider"),
            ("graphql_bypass", "provider"),
            ("floor", "provider"),
            ("graphql_authz", "reseller"),
            ("floor", "reseller"),
        ]
        start_servers(list(servers.values()))
        pages = {(name, who): fetch_page(servers[name], users[who]) for name, who in targets}
        check_same_pages(pages, expected)
        measure(plan, servers, targets, users)
        for server in servers.values():
            server.stop()  # the in-process measure runs alone
        print("· in-process schema.execute", flush=True)
        in_process = run_inprocess(plan, seeded)
        data = report(plan, seeded, in_process, time.perf_counter() - started, load_before)
        if plan.keep:
            print(f"kept {url}; provider token {seeded.provider_token}")
            print(f"reseller token {seeded.reseller_token}")
        plan.out.parent.mkdir(parents=True, exist_ok=True)
        plan.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in servers.values():
            server.stop()
        if not plan.keep:
            asyncio.run(drop_database(DB_NAME))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
