"""Cross-cutting request limits and input errors: each leaves with a documented code, and a
refused document is never executed."""

from __future__ import annotations

import pytest

from app.graphql.ids import to_global_id
from app.models import AuditEntry, Organization

GA = "Service Provider Global Administrator"


def codes(body: dict) -> list[str]:
    return [e["extensions"]["code"] for e in body["errors"]]


def nested_companies(levels: int) -> str:
    """companies → nodes → locations → company → locations → company …, `levels` round trips."""
    inner = "name"
    for _ in range(levels):
        inner = f"locations {{ name company {{ {inner} }} }}"
    return f"{{ companies {{ nodes {{ name {inner} }} }} }}"


def depth_of(levels: int) -> int:
    """Depth as graphql-depth-limit counts it (the root field is 0): companies 0, nodes 1, each
    round trip adds locations + company, and the leaf `name` one more."""
    return 2 + 2 * levels


def levels_within(max_depth: int) -> int:
    return (max_depth - 2) // 2


@pytest.fixture
def token(world) -> str:
    return world.token("Provider", GA)


async def test_query_within_depth_limit_runs(settings, gql, token):
    levels = levels_within(settings.max_query_depth)
    assert depth_of(levels) == settings.max_query_depth
    body = await gql(nested_companies(levels), token=token)
    assert "errors" not in body, body
    assert [n["name"] for n in body["data"]["companies"]["nodes"]] == ["A1", "A2", "B1", "P1"]


async def test_query_deeper_than_limit_is_refused_unexecuted(settings, gql, token, monkeypatch):
    levels = levels_within(settings.max_query_depth) + 1
    assert depth_of(levels) > settings.max_query_depth
    executed: list[str] = []
    import app.graphql.tenancy.queries as tq

    real = tq.paginate

    async def spy(*args, **kwargs):
        executed.append("companies")
        return await real(*args, **kwargs)

    monkeypatch.setattr(tq, "paginate", spy)
    body = await gql(nested_companies(levels), token=token)
    assert codes(body) and set(codes(body)) == {"BAD_USER_INPUT"}
    assert (
        f"exceeds maximum operation depth of {settings.max_query_depth}"
        in (body["errors"][0]["message"])
    )
    assert body.get("data") is None
    assert executed == []


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: __typename" for i in range(count)) + " }"


async def test_alias_limit(settings, gql, token):
    body = await gql(aliases(settings.max_aliases), token=token)
    assert "errors" not in body, body
    body = await gql(aliases(settings.max_aliases + 1), token=token)
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body.get("data") is None


async def test_alias_limit_stops_mutations_before_they_run(settings, gql, token, world):
    a1 = to_global_id("Company", world.orgs["A1"].id)
    fields = " ".join(
        f'm{i}: companyUpdate(input: {{id: "{a1}", email: "x{i}@a1.example"}}) {{ id }}'
        for i in range(settings.max_aliases + 1)
    )
    body = await gql(f"mutation {{ {fields} }}", token=token)
    assert codes(body) == ["BAD_USER_INPUT"]
    assert await AuditEntry.all().count() == 0
    assert (await Organization.get(id=world.orgs["A1"].id)).email == ""


async def test_token_limit(settings, gql, token):
    huge = "{ " + "__typename " * (settings.max_tokens + 10) + "}"
    body = await gql(huge, token=token)
    assert f"more than {settings.max_tokens} tokens" in body["errors"][0]["message"]
    assert "data" not in body or body["data"] is None
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body.get("data") is None


async def test_invalid_syntax(gql, token):
    body = await gql("{ companies { nodes { name }", token=token)
    assert body["errors"][0]["message"].startswith("Syntax Error")
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body.get("data") is None


async def test_unknown_field(gql, token):
    body = await gql("{ companies { nodes { name secretColumn } } }", token=token)
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "secretColumn" in body["errors"][0]["message"]
    assert body.get("data") is None


async def test_wrong_argument_type(gql, token):
    body = await gql('{ companies(first: "ten") { nodes { name } } }', token=token)
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_no_token(world, gql):
    body = await gql("{ companies { nodes { name } } }")
    assert codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] == {"companies": None}


@pytest.mark.parametrize(
    "credential", ["garbage", "tnts_" + "A" * 43, "tntk_nothing_here", "Bearer", "x" * 500]
)
async def test_garbage_token(world, gql, credential):
    body = await gql("{ companies { nodes { name } } }", token=credential)
    assert codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] == {"companies": None}


async def test_non_bearer_scheme_is_unauthenticated(world, client):
    resp = await client.post(
        "/graphql",
        json={"query": "{ companies { nodes { name } } }"},
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
    )
    assert [e["extensions"]["code"] for e in resp.json()["errors"]] == ["UNAUTHENTICATED"]


async def test_page_size_above_maximum(settings, gql, token):
    body = await gql(
        "query($n: Int) { companies(first: $n) { nodes { name } } }",
        {"n": settings.page_size_max + 1},
        token=token,
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    assert body["data"] == {"companies": None}


async def test_page_size_at_maximum_is_fine(settings, gql, token):
    body = await gql(
        "query($n: Int) { companies(first: $n) { nodes { name } } }",
        {"n": settings.page_size_max},
        token=token,
    )
    assert "errors" not in body, body


async def test_negative_page_size(gql, token):
    body = await gql("{ companies(first: -1) { nodes { name } } }", token=token)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}


@pytest.mark.parametrize("cursor", ["not-a-cursor", "Yzp4", "eDox", "", "%%%"])
async def test_bad_cursor(gql, token, cursor):
    body = await gql(
        "query($after: String) { companies(first: 2, after: $after) { nodes { name } } }",
        {"after": cursor},
        token=token,
    )
    if cursor == "":
        # An empty cursor means "from the start".
        assert "errors" not in body, body
        return
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}


@pytest.mark.parametrize("bad_id", ["garbage", "%%%", to_global_id("Company", 1)[:-3] + "!!!"])
async def test_malformed_global_id(gql, token, bad_id):
    body = await gql("query($id: ID!) { company(id: $id) { name } }", {"id": bad_id}, token=token)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}


async def test_global_id_of_another_type(world, gql, token):
    reseller = to_global_id("Reseller", world.orgs["R1"].id)
    body = await gql("query($id: ID!) { company(id: $id) { name } }", {"id": reseller}, token=token)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}


async def test_malformed_id_in_node(gql, token):
    body = await gql("query($id: ID!) { node(id: $id) { id } }", {"id": "garbage"}, token=token)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}


async def test_malformed_id_in_mutation_input(gql, token):
    body = await gql(
        'mutation { locationCreate(input: {companyId: "garbage", name: "X"}) { id } }',
        token=token,
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "companyId"}
    assert await AuditEntry.all().count() == 0
