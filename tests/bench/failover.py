"""`make bench --suite failover`: failover plans run by real worker processes.

On a fresh PostgreSQL database (`tenantry_bench_failover`, dropped at the end unless `--keep`)
and Redis database 12 (flushed at the start and the end, namespace `tenantry-bench-failover`),
with `tenantry worker` processes in their own process group and the hypervisor simulator
(`TENANTRY_HV_SIM_BOOT_SECONDS`), plans started through `app.services.failover_runs.start` from
this process (the Redis broker of `workers.broker.setup`):

1. **One big plan**: 1,000 VMs (quick: 200), no delays, zero boot time, one worker process of
   2 threads: session `started_at` → `finished_at` (the rows' own timestamps), so every
   millisecond is orchestration (3 steps per VM, each committed before the next); ms per VM
   and per step, the worker group's CPU per VM, and the start request itself (the plan's
   steps and its job written in one transaction).
2. **Many plans at once**: 50 plans of 20 VMs (quick: 10 of 10) started concurrently, zero boot
   time, `--processes 2 --threads 4`: total (first `started_at` → last `finished_at`),
   sessions/s, VMs/s, and p50/p99 per-plan duration, requested → finished (queueing for a
   worker thread included) and claimed → finished (the run alone).
3. **Killed worker to resumed progress**: a plan of 30 VMs (quick: 20) with a 0.2 s boot time,
   one worker process and a `tenantry scheduler` running the recovery sweep every second. With
   some VMs up, the worker group is killed with SIGKILL and a new one started at once (what a
   supervisor does); measured from the kill to the next step finished (its `finished_at`),
   with the new worker's boot and the job's reclaim on the way. The windows are the short
   ones the worker tests use (job heartbeat 200 ms, stale after 1.5 s, Redis heartbeat timeout
   2 s); the production defaults (stale after 30 s, Redis heartbeat timeout 15 s, sweep every
   15 s) put the same path at about 30–45 s. Full: 3 rounds, quick: 1. Each VM must have been
   powered on once (the simulator's `power_on_count`), or the benchmark fails.
4. **Booting plans at once** (`failover_boots.py`): 40 plans of 3 VMs (quick: 16 of 2) with a
   3 s boot time, started concurrently on `--processes 2 --threads 4`: total against the ideal
   (one plan alone: VMs × boot time) and how many plans were booting before the first one
   finished.

    .venv/bin/python -m tests.bench.failover [--quick] [--keep] [--out PATH]
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.bench.fresh_db import fresh_database, orm
from tests.bench.jobs import TENANTRY, Proc, ms, redis_url, summary
from tests.bench.results import suite_main
from tests.bench.run import BenchError, base_env
from tests.bench.seed_large import apply_schema
from tests.bench.suite import run_suite
from tests.workerproc import FAST_ENV

DB_NAME = "tenantry_bench_failover"
REDIS_DB = 12
NAMESPACE = "tenantry-bench-failover"
READY_LINE = "Worker process is ready for action"


@dataclass(frozen=True)
class Size:
    big_vms: int = 1_000
    plans: int = 50
    vms_per_plan: int = 20
    kill_vms: int = 30
    kill_boot_seconds: float = 0.2
    kill_rounds: int = 3
    boot_plans: int = 40
    boot_vms: int = 3
    boot_seconds: float = 3.0


FULL = Size()
QUICK = Size(
    big_vms=200, plans=10, vms_per_plan=10, kill_vms=20, kill_rounds=1, boot_plans=16, boot_vms=2
)


def service_env(url: str, boot_seconds: float) -> dict[str, str]:
    env = base_env(url)
    env.update(
        FAST_ENV,
        REDIS_URL=redis_url(REDIS_DB),
        TENANTRY_REDIS_NAMESPACE=NAMESPACE,
        TENANTRY_EMBEDDED_WORKER="0",
        TENANTRY_EMBEDDED_SCHEDULER="0",
        TENANTRY_HYPERVISOR_DRIVER="simulator",
        TENANTRY_HV_SIM_BOOT_SECONDS=str(boot_seconds),
        # The scheduler runs the recovery sweep every second and nothing else.
        TENANTRY_SCHEDULE_RECOVERY="* * * * * *",
        TENANTRY_SCHEDULE_PURGE="",
        TENANTRY_SCHEDULE_LICENSING="",
        TENANTRY_SCHEDULE_DISCOVERY="",
    )
    return env


def start_workers(url: str, processes: int, threads: int, boot_seconds: float) -> Proc:
    argv = [TENANTRY, "worker", "--processes", str(processes), "--threads", str(threads),
            "--shutdown-timeout", "10"]  # fmt: skip
    return Proc("worker", argv, service_env(url, boot_seconds))


async def until_ready(workers: Proc, processes: int, within: float = 60) -> float:
    """Wait for every worker process of the group to take messages; the time.time() then."""
    deadline = time.monotonic() + within
    while workers.output().count(READY_LINE) < processes:
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"workers not ready after {within:.0f} s:\n{workers.output()[-3000:]}")
        await asyncio.sleep(0.01)
    return time.time()


# --- in this process: the ORM, the broker, the plans -----------------------------------------


@dataclass
class Site:
    actor: Any
    company: Any
    account: Any


async def seed_site() -> Site:
    from app.auth.authenticate import build_principal
    from app.authz.matrix import Portal, load_matrix
    from app.models import Organization, OrgKind, User
    from app.models.cloud import TenantAccount, TenantAccountType
    from app.services.actor import Actor

    provider = await Organization.create(kind=OrgKind.PROVIDER, name="Provider")
    company = await Organization.create(kind=OrgKind.COMPANY, name="Company", parent=provider)
    primary = next(r for r in load_matrix().portals[Portal.RESELLER].roles if r.primary)
    user = await User.create(
        email="bench@example.test", name="bench", role=primary.name, organization=provider,
        password_hash="not-a-login",
    )  # fmt: skip
    await user.fetch_related("organization__parent")
    account = await TenantAccount.create(
        company=company, name="tenant", type=TenantAccountType.STANDALONE, password_hash="x"
    )
    return Site(Actor(await build_principal(user)), company, account)


async def make_plan(site: Site, name: str, vms: int) -> int:
    from app.models.cloud import VmReplica
    from app.models.failover import FailoverPlan, FailoverPlanVm

    point = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    await VmReplica.bulk_create(
        [
            VmReplica(
                tenant_account=site.account,
                name=f"{name}-vm{i:04}",
                source_vm=f"vm{i}",
                restore_points=[point],
            )
            for i in range(vms)
        ],
        batch_size=500,
    )
    replicas = await VmReplica.filter(name__startswith=f"{name}-vm").order_by("name")
    plan = await FailoverPlan.create(company=site.company, tenant_account=site.account, name=name)
    await FailoverPlanVm.bulk_create(
        [FailoverPlanVm(plan=plan, replica=r, position=i) for i, r in enumerate(replicas)],
        batch_size=500,
    )
    return plan.id


async def start(site: Site, plan_id: int) -> Any:
    from app.models.failover import SessionKind
    from app.services import failover_runs

    return await failover_runs.start(site.actor, plan_id, SessionKind.FAILOVER)


async def wait_sessions(ids: list[int], workers: Proc, within: float) -> list[dict[str, Any]]:
    from app.models.failover import FailoverSession, FailoverSessionState

    deadline = time.monotonic() + within
    while True:
        running = await FailoverSession.filter(
            id__in=ids, state=FailoverSessionState.RUNNING
        ).count()
        if running == 0:
            break
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{running} of {len(ids)} sessions still running after {within:.0f} s")
        await asyncio.sleep(0.02)
    rows = await FailoverSession.filter(id__in=ids).values(
        "id", "state", "error", "vms_total", "vms_up", "started_at", "finished_at", "job_id",
        "job__started_at",
    )  # fmt: skip
    bad = [r for r in rows if r["state"] != "SUCCEEDED" or r["vms_up"] != r["vms_total"]]
    if bad:
        raise BenchError(f"{len(bad)} session(s) did not succeed, e.g. {bad[0]}")
    return rows


async def check_powered_on_once(plan_ids: list[int]) -> int:
    """Every VM of the plans powered on exactly once (the simulator's count); the VMs."""
    from app.models.failover import FailoverPlanVm, SimulatedVm

    vms = await FailoverPlanVm.filter(plan_id__in=plan_ids).values_list(
        "replica_id", "replica__name"
    )
    refs = [f"replica/{rid}/{name}" for rid, name in vms]
    counts = dict(await SimulatedVm.filter(vm_ref__in=refs).values_list("vm_ref", "power_on_count"))
    wrong = {ref: counts.get(ref, 0) for ref in refs if counts.get(ref, 0) != 1}
    if wrong:
        raise BenchError(
            f"{len(wrong)} VM(s) not powered on exactly once, e.g. {list(wrong.items())[:3]}"
        )
    return len(refs)


async def big_plan(site: Site, url: str, size: Size) -> dict[str, Any]:
    from app.models.failover import FailoverStep

    plan_id = await make_plan(site, "big", size.big_vms)
    workers = start_workers(url, 1, 2, boot_seconds=0)
    try:
        await until_ready(workers, 1)
        cpu_before = workers.cpu_seconds()
        began = time.perf_counter()
        session = await start(site, plan_id)
        start_ms = (time.perf_counter() - began) * 1000
        [row] = await wait_sessions([session.id], workers, within=max(120.0, size.big_vms * 0.2))
        observed = time.perf_counter() - began
        cpu = workers.cpu_seconds() - cpu_before
    finally:
        workers.stop()
    steps = await FailoverStep.filter(session_id=session.id).count()
    await check_powered_on_once([plan_id])
    run_ms = ms(row["finished_at"], row["started_at"])
    return {
        "vms": size.big_vms,
        "steps": steps,
        "start_request_ms": round(start_ms, 1),
        "total_seconds": round(run_ms / 1000, 3),
        "observed_seconds": round(observed, 3),
        "ms_per_vm": round(run_ms / size.big_vms, 2),
        "ms_per_step": round(run_ms / steps, 2),
        "worker_cpu_ms_per_vm": round(1000 * cpu / size.big_vms, 2),
        "worker_cpu_cores": round(cpu / observed, 2),
    }


async def many_plans(site: Site, url: str, size: Size) -> dict[str, Any]:
    plan_ids = [await make_plan(site, f"p{i:03}", size.vms_per_plan) for i in range(size.plans)]
    workers = start_workers(url, 2, 4, boot_seconds=0)
    try:
        await until_ready(workers, 2)
        began = time.perf_counter()
        sessions = await asyncio.gather(*(start(site, pid) for pid in plan_ids))
        starts_ms = (time.perf_counter() - began) * 1000
        rows = await wait_sessions([s.id for s in sessions], workers, within=300)
    finally:
        workers.stop()
    vms = await check_powered_on_once(plan_ids)
    first = min(r["started_at"] for r in rows)
    last = max(r["finished_at"] for r in rows)
    total = ms(last, first) / 1000
    return {
        "plans": size.plans,
        "vms_per_plan": size.vms_per_plan,
        "workers": {"processes": 2, "threads": 4},
        "starts_ms": round(starts_ms, 1),
        "total_seconds": round(total, 3),
        "sessions_per_second": round(len(rows) / total, 2),
        "vms_per_second": round(vms / total, 1),
        "requested_to_finished": summary([ms(r["finished_at"], r["started_at"]) for r in rows]),
        "claimed_to_finished": summary([ms(r["finished_at"], r["job__started_at"]) for r in rows]),
    }


async def kill_round(site: Site, url: str, size: Size, n: int) -> dict[str, Any]:
    from app.models import Job
    from app.models.failover import FailoverSession, FailoverStep, StepState

    plan_id = await make_plan(site, f"kill{n}", size.kill_vms)
    workers = start_workers(url, 1, 2, boot_seconds=size.kill_boot_seconds)
    new: Proc | None = None
    try:
        await until_ready(workers, 1)
        session = await start(site, plan_id)
        deadline = time.monotonic() + 60
        while (await FailoverSession.get(id=session.id)).vms_up < size.kill_vms // 3:
            workers.check_alive()
            if time.monotonic() > deadline:
                raise BenchError("the plan made no progress before the kill")
            await asyncio.sleep(0.01)
        os.killpg(workers.proc.pid, signal.SIGKILL)
        killed = datetime.now(UTC)
        workers.proc.wait(timeout=10)
        up_at_kill = (await FailoverSession.get(id=session.id)).vms_up
        new = start_workers(url, 1, 2, boot_seconds=size.kill_boot_seconds)
        ready_at: float | None = None
        reclaimed: datetime | None = None
        resumed: datetime | None = None
        deadline = time.monotonic() + 60
        while resumed is None:
            new.check_alive()
            if ready_at is None and READY_LINE in new.output():
                ready_at = time.time()
            if reclaimed is None and (await Job.get(id=session.job_id)).attempts >= 2:
                reclaimed = datetime.now(UTC)
            step = (
                await FailoverStep.filter(
                    session_id=session.id, state=StepState.DONE, finished_at__gt=killed
                )
                .order_by("finished_at")
                .first()
            )
            if step is not None:
                resumed = step.finished_at
            if time.monotonic() > deadline:
                raise BenchError(f"no progress 60 s after the kill:\n{new.output()[-3000:]}")
            await asyncio.sleep(0.01)
        await wait_sessions([session.id], new, within=120)
    finally:
        workers.stop()
        if new is not None:
            new.stop()
    await check_powered_on_once([plan_id])
    ready = datetime.fromtimestamp(ready_at, UTC) if ready_at else None
    return {
        "vms": size.kill_vms,
        "vms_up_at_kill": up_at_kill,
        "kill_to_progress_ms": round(ms(resumed, killed), 1),
        "kill_to_worker_ready_ms": round(ms(ready, killed), 1) if ready else None,
        "kill_to_reclaimed_ms": round(ms(reclaimed, killed), 1) if reclaimed else None,
        "reclaimed_to_progress_ms": round(ms(resumed, reclaimed), 1) if reclaimed else None,
    }


async def kill_and_resume(site: Site, url: str, size: Size) -> dict[str, Any]:
    scheduler = Proc(
        "scheduler", [TENANTRY, "scheduler", "--log-level", "WARNING"], service_env(url, 0)
    )
    try:
        rounds = [await kill_round(site, url, size, n) for n in range(size.kill_rounds)]
        scheduler.check_alive()
    finally:
        scheduler.stop()
    return {
        "boot_seconds": size.kill_boot_seconds,
        "windows_ms": {
            "job_heartbeat": int(FAST_ENV["TENANTRY_JOB_HEARTBEAT_MS"]),
            "job_stale_after": int(FAST_ENV["TENANTRY_JOB_STALE_AFTER_MS"]),
            "redis_heartbeat_timeout": int(FAST_ENV["TENANTRY_REDIS_HEARTBEAT_TIMEOUT_MS"]),
            "recovery_sweep_every": 1000,
        },
        "rounds": rounds,
        "kill_to_progress": summary([r["kill_to_progress_ms"] for r in rounds]),
    }


async def measure(size: Size, keep: bool) -> dict[str, Any]:
    from app.settings import Settings
    from workers import broker

    results: dict[str, Any] = {}
    async with fresh_database(DB_NAME, keep) as url:
        await apply_schema(url)
        async with orm(url):
            settings = Settings(database_url=url, seed_demo=False)
            broker.setup(
                replace(settings, redis_url=redis_url(REDIS_DB), redis_namespace=NAMESPACE)
            )
            site = await seed_site()
            print(f"· one plan of {size.big_vms} VMs, zero boot time and delays", flush=True)
            results["big_plan"] = await big_plan(site, url, size)
            print(f"· {size.plans} plans of {size.vms_per_plan} VMs at once", flush=True)
            results["many_plans"] = await many_plans(site, url, size)
            print(f"· killed worker to resumed progress, {size.kill_rounds} round(s)", flush=True)
            results["kill"] = await kill_and_resume(site, url, size)
            from tests.bench.failover_boots import booting_plans

            print(f"· {size.boot_plans} plans booting at once", flush=True)
            results["booting_plans"] = await booting_plans(
                site, url, size.boot_plans, size.boot_vms, size.boot_seconds
            )
        if keep:
            print(f"kept {url}")
    return results


def fmt(s: dict[str, Any]) -> str:
    return f"p50 {s['p50_ms']:9.1f}  p99 {s['p99_ms']:9.1f}  max {s['max_ms']:9.1f} ms (n={s['count']})"


def report(r: dict[str, Any], quick: bool) -> None:
    big, many, kill = r["big_plan"], r["many_plans"], r["kill"]
    print()
    print(
        f"Tenantry failover benchmark{' (--quick)' if quick else ''}: simulator, PostgreSQL + Redis"
    )
    print()
    print(f"one plan of {big['vms']} VMs ({big['steps']} steps), 1 worker process × 2 threads")
    print(f"  total                      {big['total_seconds']:>9.2f} s")
    print(
        f"  orchestration per VM       {big['ms_per_vm']:>9.2f} ms ({big['ms_per_step']:.2f} ms per step)"
    )
    print(
        f"  worker CPU per VM          {big['worker_cpu_ms_per_vm']:>9.2f} ms ({big['worker_cpu_cores']:.2f} cores)"
    )
    print(f"  start request              {big['start_request_ms']:>9.1f} ms")
    print()
    print(
        f"{many['plans']} plans of {many['vms_per_plan']} VMs at once, 2 worker processes × 4 threads"
    )
    print(f"  total                      {many['total_seconds']:>9.2f} s")
    print(
        f"  sessions/s                 {many['sessions_per_second']:>9.2f}  ({many['vms_per_second']:.0f} VMs/s)"
    )
    print(f"  requested → finished       {fmt(many['requested_to_finished'])}")
    print(f"  claimed → finished         {fmt(many['claimed_to_finished'])}")
    print()
    print(
        f"killed worker → resumed progress ({kill['rounds'][0]['vms']} VMs, boot {kill['boot_seconds']} s)"
    )
    print(f"  kill → next step done      {fmt(kill['kill_to_progress'])}")
    for i, rd in enumerate(kill["rounds"]):
        print(f"  round {i + 1}: {rd['vms_up_at_kill']} VMs up at the kill; new worker ready "
              f"{rd['kill_to_worker_ready_ms']} ms, job reclaimed {rd['kill_to_reclaimed_ms']} ms, "
              f"next step done {rd['kill_to_progress_ms']} ms after the kill")  # fmt: skip
    from tests.bench import failover_boots

    print()
    failover_boots.report(r["booting_plans"], fmt)


def run(quick: bool = False, out: Path | None = None, keep: bool = False) -> int:
    """The failover suite; 0 when it measured, 1 when it could not give trustworthy figures."""
    size = QUICK if quick else FULL
    return run_suite(
        "failover",
        quick=quick,
        out=out,
        size=size,
        database=DB_NAME,
        redis_db=REDIS_DB,
        measure=lambda: measure(size, keep),
        report=lambda results: report(results, quick),
    )


main = suite_main(
    run,
    "Tenantry failover benchmark",
    "smaller plans, one kill round",
    f"keep the {DB_NAME} database",
)


if __name__ == "__main__":
    raise SystemExit(main())
