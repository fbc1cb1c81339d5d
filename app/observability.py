"""Prometheus metrics, in a registry of our own (never the process-global default one).

HTTP metrics are recorded by `app.middleware.RequestMiddleware`; GraphQL operations are recorded
by whoever runs them through `record_graphql_operation(name, outcome)`.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "metrics_text",
    "path_label",
    "record_graphql_operation",
    "record_http_request",
]

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "tenantry_http_requests_total",
    "HTTP requests answered, by method, route and status code.",
    ["method", "path", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "tenantry_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route.",
    ["method", "path"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
GRAPHQL_OPERATIONS = Counter(
    "tenantry_graphql_operations_total",
    "GraphQL operations executed, by operation name and outcome.",
    ["operation", "outcome"],
    registry=REGISTRY,
)

# Label values come from clients (paths, operation names): keep their number bounded.
KNOWN_PATHS = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})
MAX_OPERATION_NAMES = 500
_OPERATION_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")
_seen_operations: set[str] = set()
HTTP_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


def path_label(path: str) -> str:
    """A route label: known paths as they are, static files as one, anything else as 'other'."""
    if path in KNOWN_PATHS:
        return path
    if path.startswith("/static/"):
        return "/static"
    return "other"


def record_http_request(method: str, path: str, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "OTHER"
    route = path_label(path)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    if not _OPERATION_NAME.match(name):
        return "invalid"
    if name not in _seen_operations:
        if len(_seen_operations) >= MAX_OPERATION_NAMES:
            return "other"
        _seen_operations.add(name)
    return name


def record_graphql_operation(name: str | None, outcome: str) -> None:
    """Count one GraphQL operation. `outcome` is a small fixed set chosen by the caller,
    e.g. "success", "error" or an error code such as "FORBIDDEN"."""
    GRAPHQL_OPERATIONS.labels(operation_label(name), outcome).inc()


def metrics_text() -> bytes:
    return generate_latest(REGISTRY)


# --- background jobs: gauges refreshed from the database at each scrape --------------------

JOBS_BY_STATE = Gauge(
    "tenantry_jobs",
    "Jobs by state (all processes, from the database).",
    ["state"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "tenantry_job_queue_depth", "Jobs waiting for a worker (state QUEUED).", registry=REGISTRY
)
JOB_DURATION = Gauge(
    "tenantry_job_duration_seconds",
    "Run time of jobs finished in the last hour, by kind and quantile.",
    ["kind", "quantile"],
    registry=REGISTRY,
)
JOB_WAIT = Gauge(
    "tenantry_job_wait_seconds",
    "Time from creation to start of jobs started in the last hour, by kind and quantile.",
    ["kind", "quantile"],
    registry=REGISTRY,
)
QUANTILES = (0.5, 0.95, 0.99)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def refresh_job_metrics() -> None:
    from app.services.job_stats import collect

    stats = await collect()
    for state, n in stats.by_state.items():
        JOBS_BY_STATE.labels(state).set(n)
    QUEUE_DEPTH.set(stats.by_state.get("QUEUED", 0))
    for gauge, series in ((JOB_DURATION, stats.durations), (JOB_WAIT, stats.waits)):
        gauge.clear()
        for kind, values in series.items():
            for q in QUANTILES:
                gauge.labels(kind, str(q)).set(_quantile(values, q))
