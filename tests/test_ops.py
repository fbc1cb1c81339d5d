"""Operations surface: health, readiness, metrics, request ids, client address, body limit,
access log and the self-hosted GraphiQL page."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.logging_setup import JsonFormatter, request_id_var
from app.main import create_app
from app.middleware import RequestMiddleware
from app.observability import REGISTRY, record_graphql_operation
from tests.conftest import ON_POSTGRES, TEST_SETTINGS

TOO_LARGE = {
    "errors": [{"message": "request body too large", "extensions": {"code": "BAD_USER_INPUT"}}]
}


def client_for(app, client=("10.0.0.1", 4242)) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_healthz_answers_ok(client):
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_readyz_ok_with_database(client):
    resp = await client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_readyz_503_when_the_database_is_unreachable(db):
    # Settings naming the other backend: its connection is not configured, so SELECT 1 fails.
    other = "sqlite://:memory:" if ON_POSTGRES else "postgres://nobody@127.0.0.1:1/none"
    app = create_app(replace(TEST_SETTINGS, database_url=other), manage_orm=False)
    async with client_for(app) as c:
        resp = await c.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("database unavailable: ")


async def test_metrics_count_requests_and_graphql_operations(client):
    labels = {"method": "GET", "path": "/healthz", "status": "200"}
    before = REGISTRY.get_sample_value("tenantry_http_requests_total", labels) or 0.0
    await client.get("/healthz")
    await client.get("/healthz")
    after = REGISTRY.get_sample_value("tenantry_http_requests_total", labels)
    assert after == before + 2

    record_graphql_operation("companiesPage", "success")
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'tenantry_http_requests_total{method="GET",path="/healthz",status="200"}' in text
    assert (
        'tenantry_http_request_duration_seconds_bucket{le="0.005",method="GET",path="/healthz"}'
        in text
    )
    assert 'tenantry_graphql_operations_total{operation="companiesPage",outcome="success"}' in text
    # The default process-wide registry is not ours: nothing of Python's GC in our output.
    assert "python_gc_objects_collected_total" not in text


async def test_metrics_labels_stay_bounded(client):
    await client.get("/no/such/page/12345")
    labels = {"method": "GET", "path": "other", "status": "404"}
    assert REGISTRY.get_sample_value("tenantry_http_requests_total", labels) >= 1
    record_graphql_operation("not a valid name; DROP", "error")
    record_graphql_operation(None, "success")
    assert (
        REGISTRY.get_sample_value(
            "tenantry_graphql_operations_total", {"operation": "invalid", "outcome": "error"}
        )
        >= 1
    )
    assert (
        REGISTRY.get_sample_value(
            "tenantry_graphql_operations_total", {"operation": "anonymous", "outcome": "success"}
        )
        >= 1
    )


async def test_request_id_is_echoed_or_made(client):
    resp = await client.get("/healthz", headers={"X-Request-ID": "abc-123.trace:7"})
    assert resp.headers["x-request-id"] == "abc-123.trace:7"

    resp = await client.post("/graphql", json={"query": "{ __typename }"})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])

    # Not sane (spaces, too long): replaced, never reflected.
    resp = await client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])
    resp = await client.get("/healthz", headers={"X-Request-ID": "a" * 129})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])


def _echo_state_app(trusted: tuple[str, ...] = ()) -> RequestMiddleware:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "request_id": request.state.request_id,
                "client_address": request.state.client_address,
                "context_var": request_id_var.get(),
            }
        )

    inner = Starlette(routes=[Route("/", echo)])
    return RequestMiddleware(inner, max_body_bytes=100, trusted_proxies=trusted)


async def test_request_state_carries_request_id_and_client_address():
    async with client_for(_echo_state_app()) as c:
        resp = await c.get("/", headers={"X-Request-ID": "rid-1", "X-Forwarded-For": "1.2.3.4"})
    # The peer is not a trusted proxy: X-Forwarded-For is the client's word and ignored.
    assert resp.json() == {
        "request_id": "rid-1",
        "client_address": "10.0.0.1",
        "context_var": "rid-1",
    }
    assert request_id_var.get() is None


async def test_forwarded_for_is_used_only_behind_a_trusted_proxy():
    app = _echo_state_app(trusted=("10.0.0.0/8",))
    async with client_for(app) as c:
        resp = await c.get("/", headers={"X-Forwarded-For": "6.6.6.6, 1.2.3.4, 10.9.9.9"})
        assert resp.json()["client_address"] == "1.2.3.4"  # right-most hop not a proxy
        resp = await c.get("/")
        assert resp.json()["client_address"] == "10.0.0.1"
        resp = await c.get("/", headers={"X-Forwarded-For": "not-an-ip"})
        assert resp.json()["client_address"] == "10.0.0.1"
    async with client_for(app, client=("192.0.2.7", 1)) as c:
        resp = await c.get("/", headers={"X-Forwarded-For": "1.2.3.4"})
        assert resp.json()["client_address"] == "192.0.2.7"


async def test_client_address_reaches_the_graphql_context(db):
    from app.graphql.context import build_context

    seen = {}

    async def probe(request: Request) -> JSONResponse:
        ctx = await build_context(request)
        seen.update(request_id=ctx.request_id, client_address=ctx.client_address)
        return JSONResponse({})

    app = RequestMiddleware(
        Starlette(routes=[Route("/", probe)]), max_body_bytes=10, trusted_proxies=("10.0.0.1",)
    )
    async with client_for(app) as c:
        await c.get("/", headers={"X-Request-ID": "ctx-7", "X-Forwarded-For": "203.0.113.9"})
    assert seen == {"request_id": "ctx-7", "client_address": "203.0.113.9"}


async def test_body_over_the_limit_is_413_with_a_code(db):
    app = create_app(replace(TEST_SETTINGS, max_body_bytes=64), manage_orm=False)
    async with client_for(app) as c:
        small = await c.post("/graphql", json={"query": "{ __typename }"})
        assert small.status_code == 200

        declared = await c.post(
            "/graphql", content=b"x" * 65, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json() == TOO_LARGE
        assert declared.headers["x-request-id"]

        async def chunks():
            for _ in range(4):
                yield b"{" * 20

        # No Content-Length (chunked): the streamed bytes are counted.
        streamed = await c.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413
        assert streamed.json() == TOO_LARGE

    labels = {"method": "POST", "path": "/graphql", "status": "413"}
    assert REGISTRY.get_sample_value("tenantry_http_requests_total", labels) >= 2


async def test_access_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="tenantry.access"):
        await client.get("/healthz", headers={"X-Request-ID": "log-1"})
    records = [r for r in caplog.records if r.name == "tenantry.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "log-1"
    assert line["method"] == "GET"
    assert line["path"] == "/healthz"
    assert line["status"] == 200
    assert line["client"] == "10.0.0.1"
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "INFO"
    assert line["logger"] == "tenantry.access"


def test_json_formatter_takes_the_request_id_from_the_context_and_formats_exceptions():
    token = request_id_var.set("rid-ctx")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.getLogger("tenantry.test").makeRecord(
                "tenantry.test", logging.ERROR, __file__, 1, "failed %s", ("x",), None
            )
            import sys

            record.exc_info = sys.exc_info()
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "failed x"
    assert line["request_id"] == "rid-ctx"
    assert line["level"] == "ERROR"
    assert "ValueError: boom" in line["exc_info"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


async def test_graphiql_page_is_ours_and_its_assets_are_served(client):
    resp = await client.get("/graphql", headers={"Accept": "text/html"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "Tenantry GraphiQL" in page
    # Nothing from outside: every script and stylesheet is ours.
    assert "https://" not in page and "http://" not in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(assets) == [
        "/static/graphiql/graphiql.min.css",
        "/static/graphiql/graphiql.min.js",
        "/static/graphiql/react-dom.production.min.js",
        "/static/graphiql/react.production.min.js",
    ]
    assert '\\"url\\"' not in page and '"url": "/graphql"' in page
    assert "Bearer <token>" in page
    assert "login(email:" in page
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        kind = "text/css" if asset.endswith(".css") else "javascript"
        assert kind in served.headers["content-type"], asset
        assert len(served.content) > 1000


async def test_graphql_get_without_html_is_not_the_ide(client):
    resp = await client.get("/graphql", params={"query": "{ __typename }"})
    assert resp.status_code == 200
    assert resp.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("path", ["/static/graphiql/../../settings.py", "/static/nothing.js"])
async def test_static_files_stay_inside_their_folder(client, path):
    resp = await client.get(path)
    assert resp.status_code == 404


async def test_metrics_count_graphql_operations_by_outcome(client, world):
    token = world.token("A1", "Location User")
    await client.post(
        "/graphql",
        json={"query": "query PageOfCompanies { companies { totalCount } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    await client.post("/graphql", json={"query": "query MatrixRows { roleMatrix { role } }"})
    text = (await client.get("/metrics")).text
    forbidden = [
        line
        for line in text.splitlines()
        if 'operation="PageOfCompanies"' in line and 'outcome="FORBIDDEN"' in line
    ]
    ok = [
        line
        for line in text.splitlines()
        if 'operation="MatrixRows"' in line and 'outcome="success"' in line
    ]
    assert forbidden and float(forbidden[0].rsplit(" ", 1)[1]) >= 1
    assert ok and float(ok[0].rsplit(" ", 1)[1]) >= 1


async def test_metrics_include_job_gauges_from_the_database(client, db):
    from app.models import Job

    await Job.create(kind="diagnostics.noop", functionality="CONFIGURATION")
    text = (await client.get("/metrics")).text
    assert "tenantry_job_queue_depth 1.0" in text
    assert 'tenantry_jobs{state="QUEUED"} 1.0' in text
