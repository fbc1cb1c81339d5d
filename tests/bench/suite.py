"""The frame the PostgreSQL + Redis suites (failover, billing, alarms) share around their own
measurements: Redis flushed before and after, a BenchError turned into exit status 1, the
report printed, and the JSON results written with the machine, the size and the total time."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.jobs import flush_redis, redis_url
from tests.bench.results import default_out, write_results
from tests.bench.run import BenchError, machine_info

Results = dict[str, Any]


def run_suite(
    name: str,
    *,
    quick: bool,
    out: Path | None,
    size: Any,
    database: str,
    redis_db: int,
    measure: Callable[[], Coroutine[Any, Any, Results]],
    report: Callable[[Results], None],
    extra: dict[str, Any] | None = None,
) -> int:
    """Run `measure()` and report it; 0 when it measured, 1 when it could not give trustworthy
    figures. `size` is the suite's size dataclass; `extra` goes into the JSON before the
    results."""
    out = out or default_out(name, quick)
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    print(f"· {name} benchmark: database {database}, Redis {redis_url(redis_db)}", flush=True)
    flush_redis(redis_db)
    try:
        results = asyncio.run(measure())
    except BenchError as exc:
        print(f"\n{name.upper()} BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        flush_redis(redis_db)
    total = time.perf_counter() - began
    report(results)
    write_results(
        out,
        {
            "benchmark": name,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "machine": machine_info(os.cpu_count(), load_before),
            "size": asdict(size),
            **(extra or {}),
            **results,
            "total_seconds": round(total, 1),
        },
    )
    print(f"total {total:.0f} s; results in {out}")
    return 0
