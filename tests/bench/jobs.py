"""`make bench --suite jobs`: the background-work benchmark, on real processes.

On a fresh PostgreSQL database (`tenantry_bench_jobs`, dropped at the end) and a dedicated
Redis database (index 11, flushed at the start and at the end), with `tenantry worker
--processes 2 --threads 4` as its own process group:

1. **Throughput**: N `diagnostics.noop` jobs with `steps: 0`, created through
   `app.services.jobs.create` from this process (8 concurrent creators, the Redis broker set up
   by `workers.broker.setup`), until all are SUCCEEDED. Jobs/s over created→finished and over
   started→finished (the rows' own timestamps), attempts (all 1), duplicate deliveries (the
   workers' "not claimed" log lines), how the jobs split over the two worker processes.
2. **Enqueue-to-start latency**: created_at → started_at of those jobs (queueing behind the
   backlog dominates), and of a low-rate run (one job every 10 ms) where it does not.
3. **Progress-event latency**: uvicorn with `app.main:create_app` on the same database and
   Redis; a `graphql-transport-ws` subscriber (its own thread, sync `websockets` client) to
   `jobUpdated(id)` of a `diagnostics.noop` job of 50 steps × 50 ms. Each progress write sets
   the row's `heartbeat_at` (`jobs.progress`), and the subscriber re-reads the row after each
   wake-up, so every event carries the timestamp of the write it shows: delay = the
   subscriber's receive time − `heartbeatAt` (same machine, same clock). It includes the
   UPDATE's commit, Redis pub/sub, the API's re-read and the WebSocket. Measured twice: with
   the job run by the real worker processes, and with this process driving the same steps
   through `jobs.progress` with the Redis event hub installed (the path every publisher takes).

    .venv/bin/python -m tests.bench.jobs [--quick] [--keep] [--out PATH]
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.bench.loadgen import percentile
from tests.bench.results import default_out, suite_main, write_results
from tests.bench.run import ROOT, BenchError, base_env, free_port, machine_info, uvicorn_argv
from tests.bench.seed_large import TreeSize, database_url, drop_database, recreate_database, seed

DB_NAME = "tenantry_bench_jobs"
REDIS_BASE = os.environ.get("TENANTRY_BENCH_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = 11
NAMESPACE = "tenantry-bench"
KIND = "diagnostics.noop"
TENANTRY = str(Path(sys.executable).with_name("tenantry"))
TINY = TreeSize(resellers=1, companies=2, locations_per_company=1, users=10)
SUBSCRIPTION = (
    "subscription($id: ID!) { jobUpdated(id: $id) "
    "{ state progressPercent progressMessage heartbeatAt finishedAt } }"
)
PROTOCOL = "graphql-transport-ws"
CREATORS = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class JobsPlan:
    quick: bool
    jobs: int
    warmup_jobs: int
    low_rate_jobs: int
    low_rate_interval_ms: float
    steps: int
    step_seconds: float
    progress_runs: int
    out: Path
    keep: bool
    results: dict[str, Any] = field(default_factory=dict)


def plan_for(quick: bool, out: Path | None = None, keep: bool = False) -> JobsPlan:
    return JobsPlan(
        quick=quick,
        jobs=200 if quick else 2_000,
        warmup_jobs=20 if quick else 50,
        low_rate_jobs=200,
        low_rate_interval_ms=10.0,
        steps=50,
        step_seconds=0.05,
        progress_runs=1 if quick else 3,
        out=out or default_out("jobs", quick),
        keep=keep,
    )


def redis_url(db: int = REDIS_DB) -> str:
    """A suite's own Redis database (this one's by default; the failover suite has another)."""
    return f"{REDIS_BASE.rstrip('/')}/{db}"


def flush_redis(db: int = REDIS_DB) -> None:
    import redis

    client = redis.Redis.from_url(redis_url(db))
    try:
        client.flushdb()
    finally:
        client.close()


class Proc:
    """A subprocess in its own process group (the dramatiq master and its worker processes
    go together), logging to a temporary file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log")
        self.proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the group (from /proc)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])
        return total / CLK_TCK

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM once (a second one can hang the dramatiq master), SIGKILL the group after
        `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self.log.close()


def service_env(url: str) -> dict[str, str]:
    env = base_env(url)
    env.update(
        REDIS_URL=redis_url(),
        TENANTRY_REDIS_NAMESPACE=NAMESPACE,
        TENANTRY_EMBEDDED_WORKER="0",
        TENANTRY_EMBEDDED_SCHEDULER="0",
    )
    return env


def start_workers(url: str) -> Proc:
    argv = [TENANTRY, "worker", "--processes", "2", "--threads", "4", "--shutdown-timeout", "10"]
    workers = Proc("worker", argv, service_env(url))
    deadline = time.monotonic() + 60
    while workers.output().count("Worker process is ready for action") < 2:
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"workers not ready after 60 s:\n{workers.output()[-3000:]}")
        time.sleep(0.1)
    return workers


def start_api(url: str) -> tuple[Proc, int]:
    port = free_port()
    api = Proc("api", uvicorn_argv("app.main:create_app", port), service_env(url))
    deadline = time.monotonic() + 60
    while True:
        api.check_alive()
        try:
            resp = httpx.post(
                f"http://127.0.0.1:{port}/graphql", json={"query": "{ __typename }"}, timeout=2
            )
            if resp.status_code == 200:
                return api, port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"the API is not ready after 60 s:\n{api.output()[-3000:]}")
        time.sleep(0.2)


def ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000


def summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 2),
        "p90_ms": round(percentile(ordered, 90), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2) if ordered else float("nan"),
    }


# --- in this process: the ORM, the broker, the jobs ------------------------------------------


def bench_settings(url: str) -> Any:
    from app.settings import Settings

    return Settings(
        database_url=url, redis_url=redis_url(), redis_namespace=NAMESPACE, seed_demo=False
    )


async def wait_finished(ids: list[int], workers: Proc, within: float) -> None:
    from app.models import Job, JobState

    deadline = time.monotonic() + within
    lo, hi = min(ids), max(ids)
    while True:
        done = await Job.filter(
            id__gte=lo, id__lte=hi, state__in=[JobState.SUCCEEDED, JobState.FAILED]
        ).count()
        if done >= len(ids):
            break
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{done} of {len(ids)} jobs finished after {within:.0f} s")
        await asyncio.sleep(0.05)
    failed = await Job.filter(id__gte=lo, id__lte=hi, state=JobState.FAILED).values("id", "error")
    if failed:
        raise BenchError(f"{len(failed)} jobs FAILED, e.g. {failed[0]}")


async def create_many(org: Any, n: int, concurrency: int = CREATORS) -> list[int]:
    from app.services import jobs

    ids: list[int] = []
    remaining = iter(range(n))

    async def creator() -> None:
        for _ in remaining:
            job, _created = await jobs.create(None, KIND, org, {"steps": 0})
            ids.append(job.id)

    await asyncio.gather(*(creator() for _ in range(concurrency)))
    return sorted(ids)


async def rows_of(ids: list[int]) -> list[dict[str, Any]]:
    from app.models import Job

    return await Job.filter(id__in=ids).values(
        "id", "state", "attempts", "worker_id", "created_at", "enqueued_at", "started_at",
        "finished_at",
    )  # fmt: skip


def not_claimed(workers: Proc) -> int:
    return len(re.findall(r"job \d+ not claimed", workers.output()))


async def duplicate_probe(job_id: int, workers: Proc) -> bool:
    """Send a finished job again: the worker must log it as not claimed and leave the row as
    it was. Proves that the duplicate counter above would have counted."""
    from app.models import Job
    from app.services import jobs

    before_row = await Job.get(id=job_id)
    before = not_claimed(workers)
    await jobs.dispatch(job_id)
    deadline = time.monotonic() + 10
    while not_claimed(workers) == before:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    after = await Job.get(id=job_id)
    return (after.state, after.attempts, after.finished_at) == (
        before_row.state, before_row.attempts, before_row.finished_at,
    )  # fmt: skip


async def throughput(plan: JobsPlan, org: Any, workers: Proc) -> dict[str, Any]:
    warm = await create_many(org, plan.warmup_jobs)
    await wait_finished(warm, workers, within=60)
    skipped_before = not_claimed(workers)
    cpu_before = workers.cpu_seconds()
    began = time.perf_counter()
    ids = await create_many(org, plan.jobs)
    created = time.perf_counter() - began
    await wait_finished(ids, workers, within=max(60.0, plan.jobs / 10))
    observed = time.perf_counter() - began
    worker_cpu = workers.cpu_seconds() - cpu_before
    rows = await rows_of(ids)
    first_created = min(r["created_at"] for r in rows)
    first_started = min(r["started_at"] for r in rows)
    last_finished = max(r["finished_at"] for r in rows)
    processes: dict[str, int] = {}
    for r in rows:
        pid = r["worker_id"].split(":")[1] if r["worker_id"].count(":") >= 2 else r["worker_id"]
        processes[pid] = processes.get(pid, 0) + 1
    attempts = sorted({r["attempts"] for r in rows})
    duplicates = not_claimed(workers) - skipped_before
    probe = await duplicate_probe(ids[0], workers)
    wall_created = ms(last_finished, first_created) / 1000
    wall_started = ms(last_finished, first_started) / 1000
    return {
        "jobs": len(rows),
        "succeeded": sum(1 for r in rows if r["state"] == "SUCCEEDED"),
        "create_seconds": round(created, 3),
        "create_rate": round(len(rows) / created, 1),
        "observed_seconds": round(observed, 3),
        "worker_cpu_seconds": round(worker_cpu, 2),
        "worker_cpu_cores": round(worker_cpu / observed, 2),
        "worker_cpu_ms_per_job": round(1000 * worker_cpu / len(rows), 2),
        "created_to_finished_seconds": round(wall_created, 3),
        "started_to_finished_seconds": round(wall_started, 3),
        "jobs_per_second": round(len(rows) / wall_created, 1),
        "jobs_per_second_started_to_finished": round(len(rows) / wall_started, 1),
        "attempts": attempts,
        "all_attempts_one": attempts == [1],
        "duplicate_deliveries": duplicates,
        "duplicate_counter_checked": probe,
        "jobs_per_worker_process": dict(sorted(processes.items())),
        "threads_seen": len({r["worker_id"] for r in rows}),
        "enqueue_to_start": summary([ms(r["started_at"], r["created_at"]) for r in rows]),
    }


async def low_rate(plan: JobsPlan, org: Any, workers: Proc) -> dict[str, Any]:
    from app.services import jobs

    ids: list[int] = []
    interval = plan.low_rate_interval_ms / 1000
    t0 = time.perf_counter()
    for i in range(plan.low_rate_jobs):
        delay = t0 + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        job, _created = await jobs.create(None, KIND, org, {"steps": 0})
        ids.append(job.id)
    sent = time.perf_counter() - t0
    await wait_finished(ids, workers, within=60)
    rows = await rows_of(ids)
    return {
        "jobs": len(rows),
        "interval_ms": plan.low_rate_interval_ms,
        "achieved_rate": round(len(rows) / sent, 1),
        "attempts": sorted({r["attempts"] for r in rows}),
        "created_to_started": summary([ms(r["started_at"], r["created_at"]) for r in rows]),
        "enqueued_to_started": summary([ms(r["started_at"], r["enqueued_at"]) for r in rows]),
    }


# --- progress events to a subscriber -----------------------------------------------------------


class Subscriber(threading.Thread):
    """graphql-transport-ws client on its own thread; notes the wall-clock receive time of
    each `next` message."""

    def __init__(self, port: int, token: str, job_gid: str) -> None:
        super().__init__(name="bench-subscriber", daemon=True)
        self.url = f"ws://127.0.0.1:{port}/graphql"
        self.token = token
        self.job_gid = job_gid
        self.ready = threading.Event()
        self.stop_event = threading.Event()
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.completed = False
        self.error: str | None = None

    def run(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.url, subprotocols=[PROTOCOL], open_timeout=10) as ws:  # type: ignore[list-item]
                ws.send(json.dumps({"type": "connection_init", "payload": {
                    "Authorization": f"Bearer {self.token}"}}))  # fmt: skip
                if json.loads(ws.recv(timeout=10))["type"] != "connection_ack":
                    raise BenchError("no connection_ack")
                ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
                    "query": SUBSCRIPTION, "variables": {"id": self.job_gid}}}))  # fmt: skip
                while not self.stop_event.is_set():
                    try:
                        raw = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    at = time.time()
                    message = json.loads(raw)
                    kind = message["type"]
                    if kind == "next":
                        if message["payload"].get("errors"):
                            raise BenchError(f"subscription errors: {message['payload']}")
                        self.received.append((at, message["payload"]["data"]["jobUpdated"]))
                        self.ready.set()
                    elif kind == "complete":
                        self.completed = True
                        return
                    elif kind == "error":
                        raise BenchError(f"subscription refused: {message['payload']}")
                    elif kind == "ping":
                        ws.send(json.dumps({"type": "pong"}))
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def event_delays(sub: Subscriber) -> tuple[list[float], set[str], float | None]:
    """(delay of each progress event in ms, distinct steps seen, delay of the final event)."""
    delays: list[float] = []
    steps: set[str] = set()
    final: float | None = None
    for at, job in sub.received[1:]:  # the first message is the row as it was at subscribe
        received = datetime.fromtimestamp(at, UTC)
        if job["state"] in {"SUCCEEDED", "FAILED", "CANCELLED"}:
            finished = parse_ts(job["finishedAt"])
            final = ms(received, finished) if finished else None
        elif job["progressMessage"].startswith("step "):
            beat = parse_ts(job["heartbeatAt"])
            if beat is not None:
                delays.append(ms(received, beat))
                steps.add(job["progressMessage"])
    return delays, steps, final


async def drive_in_process(job_id: int, plan: JobsPlan) -> None:
    """What the noop kind does, from this process: claim, then per step a pause and a
    `jobs.progress` write (published on the Redis hub), then success."""
    from app.services import jobs

    worker = "bench-driver"
    if await jobs.claim(job_id, worker) is None:
        raise BenchError(f"the driver could not claim job {job_id}")
    completed: list[int] = []
    for i in range(plan.steps):
        await asyncio.sleep(plan.step_seconds)
        completed.append(i)
        await jobs.progress(
            job_id, worker, 100 * (i + 1) / plan.steps, f"step {i + 1} of {plan.steps}",
            {"completed": completed},
        )  # fmt: skip
    await jobs.succeed(job_id, worker, {"steps": plan.steps})


async def progress_run(
    plan: JobsPlan, org: Any, port: int, token: str, workers: Proc, by: str
) -> dict[str, Any]:
    from app.graphql.ids import to_global_id
    from app.jobs import registry
    from app.models import Job
    from app.services import jobs

    kind = registry.get(KIND)
    params = {"steps": plan.steps, "step_seconds": plan.step_seconds}
    # The row first, undispatched (the fields jobs.create writes): the subscriber is listening
    # before the job can start; jobs.dispatch() then sends it.
    job = await Job.create(
        kind=KIND, functionality=kind.functionality.value, organization=org, params=params,
        max_attempts=kind.max_attempts,
    )  # fmt: skip
    sub = Subscriber(port, token, to_global_id("Job", job.id))
    sub.start()
    await asyncio.to_thread(sub.ready.wait, 15)
    if sub.error or not sub.received:
        raise BenchError(f"the subscriber got nothing: {sub.error}")
    started = time.perf_counter()
    if by == "workers":
        await jobs.dispatch(job.id)
        await wait_finished([job.id], workers, within=60)
    else:
        await drive_in_process(job.id, plan)
    ran = time.perf_counter() - started
    # The last event may still be in flight; a subscription that never completes (no events
    # reach it) is stopped after the grace period.
    await asyncio.to_thread(sub.join, 3)
    sub.stop_event.set()
    await asyncio.to_thread(sub.join, 5)
    if sub.error:
        raise BenchError(f"subscriber: {sub.error}")
    delays, steps, final = event_delays(sub)
    return {
        "by": by,
        "job": job.id,
        "run_seconds": round(ran, 3),
        "messages": len(sub.received),
        "progress_events": len(delays),
        "distinct_steps_seen": len(steps),
        "completed": sub.completed,
        "final_event_delay_ms": round(final, 2) if final is not None else None,
        "delays_ms": [round(d, 2) for d in delays],
    }


def merge_progress(runs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    delays = [d for r in runs for d in r["delays_ms"]]
    finals = [r["final_event_delay_ms"] for r in runs if r["final_event_delay_ms"] is not None]
    return {
        "runs": len(runs),
        "steps_per_run": steps,
        "progress_events": len(delays),
        "distinct_steps_seen": sum(r["distinct_steps_seen"] for r in runs),
        "completed_streams": sum(1 for r in runs if r["completed"]),
        "latency": summary(delays) if delays else None,
        "final_event_delay_ms": finals,
        "per_run": [{k: v for k, v in r.items() if k != "delays_ms"} for r in runs],
    }


async def measure(plan: JobsPlan, url: str, token: str, workers: Proc, api_port: list[int],
                  procs: list[Proc]) -> None:  # fmt: skip
    from tortoise import Tortoise

    from app.db import tortoise_config
    from app.models import Organization
    from app.services import events
    from workers import broker

    settings = bench_settings(url)
    await Tortoise.init(config=tortoise_config(settings), _enable_global_fallback=True)
    try:
        broker.setup(settings)  # dispatch sends `run_job` messages to Redis
        org = await Organization.get(id=1)  # the provider
        print(f"· throughput: {plan.jobs} no-op jobs, 2 worker processes × 4 threads", flush=True)
        plan.results["throughput"] = await throughput(plan, org, workers)
        print(f"· low rate: {plan.low_rate_jobs} jobs, one every {plan.low_rate_interval_ms:g} ms",
              flush=True)  # fmt: skip
        plan.results["low_rate"] = await low_rate(plan, org, workers)
        print("· progress events: uvicorn + jobUpdated subscriber", flush=True)
        api, port = await asyncio.to_thread(start_api, url)
        procs.append(api)
        api_port.append(port)
        by_workers = [
            await progress_run(plan, org, port, token, workers, "workers")
            for _ in range(plan.progress_runs)
        ]
        events.install(settings)  # this process publishes on the Redis hub from here on
        by_driver = [
            await progress_run(plan, org, port, token, workers, "in-process driver")
            for _ in range(plan.progress_runs)
        ]
        plan.results["progress_workers"] = merge_progress(by_workers, plan.steps)
        plan.results["progress_driver"] = merge_progress(by_driver, plan.steps)
    finally:
        await events.shutdown()
        await Tortoise.close_connections()


# --- report ----------------------------------------------------------------------------------


def fmt_latency(s: dict[str, Any] | None) -> str:
    if not s:
        return "—"
    return f"p50 {s['p50_ms']:8.1f}  p99 {s['p99_ms']:8.1f}  max {s['max_ms']:8.1f} ms  (n={s['count']})"


def report(plan: JobsPlan, total: float, load_before: float) -> dict[str, Any]:
    r = plan.results
    t, low = r["throughput"], r["low_rate"]
    pw, pd = r["progress_workers"], r["progress_driver"]
    cpus = os.cpu_count() or 0
    notes = [
        f"This machine has {cpus} CPU core(s), shared by the 2 worker processes, the creating "
        "process, PostgreSQL and Redis: jobs/s is a lower bound for a deployment with separate "
        "hosts.",
        "jobs/s = jobs / (last finished_at − first created_at), and / (last finished_at − first "
        "started_at); the rows' own timestamps, written by the same machine's clock.",
        "Enqueue-to-start = started_at − created_at (both written by the application). In the "
        "throughput run the jobs queue behind the backlog; the low-rate run shows the "
        "pipeline's own latency (commit, dispatch UPDATE, Redis, worker claim).",
        "Progress delay = subscriber receive time − the row's heartbeatAt, which jobs.progress "
        "sets in the same UPDATE as the progress; the subscriber re-reads the row after each "
        "wake-up, so each event carries the timestamp of the write it shows. Coalesced "
        "wake-ups mean fewer events than steps, never a wrong delay.",
        f"Load average before the run: {load_before:.2f} (1 min).",
    ]
    if pw["progress_events"] == 0:
        notes.append(
            "With the real worker processes NO progress event reached the subscriber: the "
            "worker processes do not install the event hub (app.services.events.install is "
            "only called by the API's lifespan), so job changes made by `tenantry worker` are "
            "never published; the subscription only sees them at its quiet re-check "
            "(15 s). The in-process-driver run shows the latency once a publisher is installed."
        )
    data = {
        "benchmark": "jobs",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": plan.quick,
        "machine": machine_info(cpus, load_before),
        "workers": {"processes": 2, "threads": 4},
        "redis": redis_url(),
        **r,
        "total_seconds": round(total, 1),
        "notes": notes,
    }
    print()
    print(f"Tenantry background-work benchmark{' (--quick)' if plan.quick else ''}: "
          f"tenantry worker --processes 2 --threads 4, PostgreSQL + Redis")  # fmt: skip
    print()
    print(f"throughput ({t['jobs']} diagnostics.noop jobs, steps 0, {CREATORS} creators)")
    print(f"  jobs/s created→finished      {t['jobs_per_second']:>8.1f}   "
          f"({t['created_to_finished_seconds']:.2f} s)")  # fmt: skip
    print(f"  jobs/s started→finished      {t['jobs_per_second_started_to_finished']:>8.1f}   "
          f"({t['started_to_finished_seconds']:.2f} s)")  # fmt: skip
    print(
        f"  creation rate                {t['create_rate']:>8.1f}   ({t['create_seconds']:.2f} s)"
    )
    print(f"  succeeded                    {t['succeeded']:>8} / {t['jobs']}")
    print(f"  attempts                     {t['attempts']}  duplicate deliveries "
          f"{t['duplicate_deliveries']} (counter self-check: "
          f"{'ok' if t['duplicate_counter_checked'] else 'FAILED'})")  # fmt: skip
    print(f"  worker CPU                   {t['worker_cpu_cores']:>8.2f} cores, "
          f"{t['worker_cpu_ms_per_job']:.2f} ms per job")  # fmt: skip
    print(f"  jobs per worker process      {t['jobs_per_worker_process']} "
          f"({t['threads_seen']} threads)")  # fmt: skip
    print()
    print("enqueue-to-start (created_at → started_at)")
    print(f"  backlog ({t['jobs']} at once)      {fmt_latency(t['enqueue_to_start'])}")
    print(f"  low rate ({low['achieved_rate']:.0f}/s)          "
          f"{fmt_latency(low['created_to_started'])}")  # fmt: skip
    print(f"  low rate, enqueued → started {fmt_latency(low['enqueued_to_started'])}")
    print()
    print(f"progress events to a jobUpdated subscriber ({plan.steps} steps × "
          f"{plan.step_seconds * 1000:g} ms, {plan.progress_runs} run(s) each)")  # fmt: skip
    for label, p in (("real workers", pw), ("in-process driver", pd)):
        print(f"  {label:<20} {fmt_latency(p['latency'])}")
        print(f"  {'':<20} steps seen {p['distinct_steps_seen']}/{p['runs'] * plan.steps}, "
              f"streams completed {p['completed_streams']}/{p['runs']}, "
              f"final event delay {p['final_event_delay_ms']} ms")  # fmt: skip
    print()
    for note in notes:
        print(f"note: {note}")
    print(f"total {total:.0f} s; results in {plan.out}")
    return data


def run(quick: bool = False, out: Path | None = None, keep: bool = False) -> int:
    """The jobs suite; 0 when it measured, 1 when it could not give trustworthy figures."""
    plan = plan_for(quick, out, keep)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    url = database_url(DB_NAME)
    procs: list[Proc] = []
    port: list[int] = []
    try:
        print(f"· jobs benchmark: database {DB_NAME}, Redis {redis_url()}", flush=True)
        asyncio.run(recreate_database(DB_NAME))
        flush_redis()
        seeded = asyncio.run(seed(url, TINY))
        workers = start_workers(url)
        procs.append(workers)
        asyncio.run(measure(plan, url, seeded.provider_token, workers, port, procs))
        data = report(plan, time.perf_counter() - started, load_before)
        write_results(plan.out, data)
        if plan.keep:
            print(f"kept {url}; provider token {seeded.provider_token}")
    except BenchError as exc:
        print(f"\nJOBS BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in reversed(procs):
            proc.stop()
        flush_redis()
        if not plan.keep:
            asyncio.run(drop_database(DB_NAME))
    return 0


main = suite_main(
    run,
    "Tenantry background-work benchmark",
    "200 jobs instead of 2,000",
    f"keep the {DB_NAME} database",
)


if __name__ == "__main__":
    raise SystemExit(main())
