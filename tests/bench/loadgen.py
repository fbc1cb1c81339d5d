"""Closed-loop load generator: N concurrent clients over HTTP/1.1 keep-alive (httpx).

Runs in its own process (the runner starts it with `python -m tests.bench.loadgen ...`) and
prints one JSON object: requests/s, p50/p99 latency, errors. A request counts in the
measurement when it completes inside the window that follows the warm-up. A response is an
error when its status is not 200 or its body carries a GraphQL `errors` key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass

import httpx


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    first_error: str | None
    latencies_ms: list[float] | None = None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def is_error(status: int, content: bytes) -> bool:
    # Cheap check on the raw bytes: the benchmark's data never contains the word.
    return status != 200 or b'"errors"' in content


async def run_load(
    url: str,
    body: bytes,
    token: str,
    concurrency: int,
    warmup: float,
    duration: float,
) -> Result:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    timeout = httpx.Timeout(60.0)

    async with httpx.AsyncClient(limits=limits, http1=True, http2=False, timeout=timeout) as client:
        begin = time.perf_counter()
        window_start = begin + warmup
        window_end = window_start + duration

        async def worker() -> None:
            nonlocal errors, first_error
            while True:
                t0 = time.perf_counter()
                if t0 >= window_end:
                    return
                try:
                    resp = await client.post(url, content=body, headers=headers)
                    status, content = resp.status_code, resp.content
                except httpx.HTTPError as exc:
                    status, content = 0, repr(exc).encode()
                t1 = time.perf_counter()
                if window_start <= t1 <= window_end:
                    latencies.append(t1 - t0)
                    if is_error(status, content):
                        errors += 1
                        if first_error is None:
                            first_error = f"HTTP {status}: {content[:500].decode(errors='replace')}"
                elif is_error(status, content) and first_error is None:
                    # Errors during the warm-up also fail the run.
                    errors += 1
                    first_error = f"HTTP {status}: {content[:500].decode(errors='replace')}"

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    latencies.sort()
    count = len(latencies)
    return Result(
        requests=count,
        errors=errors,
        seconds=duration,
        rps=count / duration,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        mean_ms=(sum(latencies) / count * 1000) if count else float("nan"),
        max_ms=(latencies[-1] * 1000) if count else float("nan"),
        first_error=first_error,
        latencies_ms=[x * 1000 for x in latencies],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--body", required=True, help="the JSON request body")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--raw", action="store_true", help="also print every latency (ms)")
    args = parser.parse_args(argv)

    coro = run_load(
        args.url, args.body.encode(), args.token, args.concurrency, args.warmup, args.duration
    )
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    if not args.raw:
        result.latencies_ms = None
    json.dump(asdict(result), sys.stdout)
    sys.stdout.write("\n")
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
