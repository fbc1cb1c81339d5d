"""The failover benchmark's "booting plans at once" case (`tests/bench/failover.py`, step 4):
the day a provider's data centre fails, many tenants' plans start together and each waits
minutes for its VMs to boot. N plans of a few VMs with a simulated boot time, started
concurrently on `tenantry worker --processes 2 --threads 4`, against the ideal: one plan's own
duration (VMs × boot time, the plan boots its VMs one after the other).

Figures, all from the rows' own timestamps: total (first session `started_at` → last
`finished_at`) and its ratio to the ideal; per plan requested → finished and claimed →
finished; how many plans had powered on their first VM before the first plan finished (with
a worker thread held for a whole run, at most the 8 threads' plans can); and the wake-ups
(`attempts` of every WAIT_HEALTHY step must stay 1: a wait continued later is not a retry).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.bench.jobs import ms, summary


async def booting_plans(site: Any, url: str, plans: int, vms: int, boot: float) -> dict[str, Any]:
    from app.models.failover import FailoverStep, StepKind
    from tests.bench.failover import (
        check_powered_on_once,
        make_plan,
        start,
        start_workers,
        until_ready,
        wait_sessions,
    )

    plan_ids = [await make_plan(site, f"boot{i:03}", vms) for i in range(plans)]
    workers = start_workers(url, 2, 4, boot_seconds=boot)
    try:
        await until_ready(workers, 2)
        cpu_before = workers.cpu_seconds()
        began = time.perf_counter()
        sessions = await asyncio.gather(*(start(site, pid) for pid in plan_ids))
        within = 120 + plans * vms * boot  # the old, one-thread-per-plan code must finish too
        rows = await wait_sessions([s.id for s in sessions], workers, within=within)
        observed = time.perf_counter() - began
        cpu = workers.cpu_seconds() - cpu_before
    finally:
        workers.stop()
    await check_powered_on_once(plan_ids)
    ids = [r["id"] for r in rows]
    first_finish = min(r["finished_at"] for r in rows)
    power_ons = await FailoverStep.filter(session_id__in=ids, kind=StepKind.POWER_ON).values(
        "session_id", "started_at"
    )
    first_on: dict[int, Any] = {}
    for p in power_ons:
        sid = p["session_id"]
        first_on[sid] = min(first_on.get(sid, p["started_at"]), p["started_at"])
    started_before = sum(1 for at in first_on.values() if at < first_finish)
    waits = await FailoverStep.filter(session_id__in=ids, kind=StepKind.WAIT_HEALTHY).values_list(
        "attempts", flat=True
    )
    first = min(r["started_at"] for r in rows)
    last = max(r["finished_at"] for r in rows)
    total = ms(last, first) / 1000
    ideal = vms * boot
    return {
        "plans": plans,
        "vms_per_plan": vms,
        "boot_seconds": boot,
        "workers": {"processes": 2, "threads": 4},
        "ideal_seconds": ideal,
        "total_seconds": round(total, 3),
        "total_over_ideal": round(total / ideal, 2),
        "observed_seconds": round(observed, 3),
        "plans_booting_before_the_first_finished": started_before,
        "requested_to_finished": summary([ms(r["finished_at"], r["started_at"]) for r in rows]),
        "claimed_to_finished": summary([ms(r["finished_at"], r["job__started_at"]) for r in rows]),
        "wait_steps_with_attempts_above_1": sum(1 for a in waits if a != 1),
        "worker_cpu_seconds": round(cpu, 2),
    }


def report(b: dict[str, Any], fmt: Any) -> None:
    print(
        f"{b['plans']} plans of {b['vms_per_plan']} VMs booting {b['boot_seconds']} s each, "
        f"at once, 2 worker processes × 4 threads"
    )
    print(
        f"  total                      {b['total_seconds']:>9.2f} s (ideal, one plan alone: "
        f"{b['ideal_seconds']:.1f} s; {b['total_over_ideal']:.2f}× the ideal)"
    )
    print(
        f"  plans booting before the first finished  {b['plans_booting_before_the_first_finished']}"
        f" of {b['plans']}"
    )
    print(f"  requested → finished       {fmt(b['requested_to_finished'])}")
    print(f"  claimed → finished         {fmt(b['claimed_to_finished'])}")
    print(f"  worker CPU                 {b['worker_cpu_seconds']:>9.2f} s")
