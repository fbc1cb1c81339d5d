"""Unexpected errors never leak: the client gets a fixed message, a code and a request id; the
traceback goes to the log under the same request id."""

from __future__ import annotations

import json
import logging

import pytest

from app.graphql.ids import to_global_id
from app.models import AuditEntry, Location

GA = "Service Provider Global Administrator"
SECRET = "secret SQL detail"

LOCATION_UPDATE = """
mutation($input: LocationUpdateInput!) { locationUpdate(input: $input) { id name } }
"""


@pytest.fixture
def broken_update_location(monkeypatch):
    import app.graphql.tenancy.mutations as mutations

    async def boom(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(mutations.tenancy, "update_location", boom)


async def test_unexpected_error_is_masked_and_logged(world, client, broken_update_location, caplog):
    token = world.token("Provider", GA)
    location = world.locations["A1-East"]
    caplog.set_level(logging.ERROR, logger="tenantry.graphql")

    resp = await client.post(
        "/graphql",
        json={
            "query": LOCATION_UPDATE,
            "variables": {"input": {"id": to_global_id("Location", location.id), "name": "X"}},
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    raw = resp.text
    body = resp.json()

    assert body["data"] is None
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["path"] == ["locationUpdate"]
    assert set(error["extensions"]) == {"code", "requestId"}
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    request_id = error["extensions"]["requestId"]
    assert isinstance(request_id, str) and len(request_id) >= 16

    for leak in ("secret", "RuntimeError", "Traceback", "boom", ".py", "stacktrace"):
        assert leak.lower() not in raw.lower(), leak
    assert set(body) == {"data", "errors"}
    assert "extensions" not in body  # no debug payload at the top level either

    records = [r for r in caplog.records if r.name == "tenantry.graphql"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert request_id in record.getMessage()
    assert "locationUpdate" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert SECRET in caplog.text and "Traceback" in caplog.text
    assert "raise RuntimeError(SECRET)" in caplog.text

    # Nothing changed, and the unexpected failure left no half-written audit entry.
    assert (await Location.get(id=location.id)).name == "East"
    assert await AuditEntry.all().count() == 0


async def test_each_request_gets_its_own_request_id(world, gql, broken_update_location, caplog):
    token = world.token("Provider", GA)
    variables = {
        "input": {"id": to_global_id("Location", world.locations["A1-East"].id), "name": "X"}
    }
    caplog.set_level(logging.ERROR, logger="tenantry.graphql")
    first = await gql(LOCATION_UPDATE, variables, token=token)
    second = await gql(LOCATION_UPDATE, variables, token=token)
    ids = [b["errors"][0]["extensions"]["requestId"] for b in (first, second)]
    assert ids[0] != ids[1]
    logged = [r.getMessage() for r in caplog.records if r.name == "tenantry.graphql"]
    assert len(logged) == 2
    assert ids[0] in logged[0] and ids[1] in logged[1]


async def test_domain_errors_are_not_masked(world, gql, caplog):
    """Expected errors keep their message and code, and are not logged as failures."""
    caplog.set_level(logging.ERROR, logger="tenantry.graphql")
    token = world.token("Provider", GA)
    default = world.locations["A1-Default"]
    body = await gql(
        "mutation($id: ID!) { locationDelete(id: $id) { deletedId } }",
        {"id": to_global_id("Location", default.id)},
        token=token,
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}
    assert "default location" in body["errors"][0]["message"]
    assert [r for r in caplog.records if r.name == "tenantry.graphql"] == []


async def test_masked_error_in_a_nested_resolver(world, client, monkeypatch, caplog):
    """A failure deep inside a list is masked too, and keeps its path."""
    from app.graphql.tenancy.types import LocationType

    def broken_can(self, info):
        raise RuntimeError(SECRET)

    # viewer_can_update is a plain method on the strawberry type; patch its resolver.
    field = next(
        f for f in LocationType.__strawberry_definition__.fields if f.name == "viewer_can_update"
    )
    monkeypatch.setattr(field.base_resolver, "wrapped_func", broken_can)
    caplog.set_level(logging.ERROR, logger="tenantry.graphql")
    resp = await client.post(
        "/graphql",
        json={
            "query": "{ companies(first: 1) { nodes { name locations { name viewerCanUpdate } } } }"
        },
        headers={"Authorization": f"Bearer {world.token('Provider', GA)}"},
    )
    body = resp.json()
    assert SECRET not in resp.text
    assert {e["extensions"]["code"] for e in body["errors"]} == {"INTERNAL_SERVER_ERROR"}
    assert {e["message"] for e in body["errors"]} == {"Internal server error"}
    assert body["errors"][0]["path"] == ["companies", "nodes", 0, "locations", 0, "viewerCanUpdate"]
    assert all(e["extensions"]["requestId"] for e in body["errors"])
    assert all(SECRET in r.getMessage() or r.exc_info for r in caplog.records)
    assert json.dumps(body).count("Internal server error") == len(body["errors"])
