"""In-process micro-measure: the benchmark's query through `schema.execute`, no HTTP.

Separates GraphQL execution (parsing is cached, resolvers, guards, loaders, ORM) from the
HTTP server's share. Run by the runner in its own process with DATABASE_URL set:
`python -m tests.bench.inprocess --token ... --iterations 200`; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from tests.bench.loadgen import percentile

QUERY = (
    "query Page($first:Int!){ companies(first:$first){ nodes { id name reseller { name } "
    "locations { name } owner { email } } } }"
)


def _summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "iterations": len(samples),
        "mean_ms": sum(samples) / len(samples) * 1000,
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
    }


async def measure(token: str, iterations: int, first: int) -> dict[str, Any]:
    from app import db
    from app.auth.authenticate import principal_for_bearer
    from app.graphql.context import Context
    from app.graphql.loaders import Loaders
    from app.graphql.schema import schema

    await db.init()
    try:
        principal = await principal_for_bearer(token)
        out: dict[str, Any] = {}

        auth: list[float] = []
        for i in range(iterations + 5):
            t0 = time.perf_counter()
            await principal_for_bearer(token)
            if i >= 5:
                auth.append(time.perf_counter() - t0)
        out["authenticate"] = _summary(auth)

        # Guards on and bypassed alternate, so that background load hits both alike.
        modes = {"execute_authz": False, "execute_bypass": True}
        samples: dict[str, list[float]] = {label: [] for label in modes}
        nodes: dict[str, int] = {}
        for i in range(iterations + 5):  # five warm-up runs fill the parser/validation caches
            for label, bypass in modes.items():
                ctx = Context(
                    request=None,
                    response=None,
                    principal=principal,
                    loaders=Loaders(principal),
                    bypass_authorization=bypass,
                )
                t0 = time.perf_counter()
                result = await schema.execute(
                    QUERY, variable_values={"first": first}, context_value=ctx
                )
                elapsed = time.perf_counter() - t0
                if result.errors:
                    raise RuntimeError(f"{label}: {result.errors}")
                if i >= 5:
                    samples[label].append(elapsed)
                nodes[label] = len(result.data["companies"]["nodes"])  # type: ignore[index]
        for label in modes:
            out[label] = {**_summary(samples[label]), "nodes": nodes[label]}
        return out
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--token", required=True)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--first", type=int, default=100)
    args = parser.parse_args(argv)
    coro = measure(args.token, args.iterations, args.first)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
