"""Another tenant's objects do not exist for you: NOT_FOUND, no data, and nothing changes.

A table of (principal, attempt on an object outside its scope). Where the principal's role
has no right to the field at all, the answer is FORBIDDEN whatever the object (the field
guard answers before any object is looked at); the expectation is computed from the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.matrix import Action
from app.graphql.ids import to_global_id
from app.models import Location, Organization, User
from tests.factories import World
from tests.permission_cases import CAPABILITIES, NEW_PASSWORD, org_gid

# Principals (world keys) and what lies outside their scope.
R2_ADMIN = "R2:Service Provider Global Administrator"
B1_OWNER = "B1:Company Owner"
A2_OWNER = "A2:Company Owner"
P1_OWNER = "P1:Company Owner"
A1_LOCATION_USER = "A1:Location User"  # limited to A1-East
A1_LOCATION_ADMIN = "A1:Location Administrator"  # limited to A1-East
P1_OPERATOR = "Provider:Service Provider Operator:P1"  # limited to company P1


def uid(w: World, key: str) -> str:
    return to_global_id("User", w.users[key].id)


def loc(w: World, key: str) -> str:
    return to_global_id("Location", w.locations[key].id)


@dataclass(frozen=True)
class Attempt:
    name: str
    capability: str
    action: Action
    document: str
    variables: Callable[[World], dict[str, Any]]

    @property
    def field(self) -> str:
        return self.document.split("{", 1)[1].split("(", 1)[0].strip()


def _q(field: str, arg: str = "$id: ID!", call: str = "id: $id", sel: str = "{ id }") -> str:
    return f"query({arg}) {{ {field}({call}) {sel} }}"


def _m(field: str, arg: str = "$id: ID!", call: str = "id: $id", sel: str = "{ id }") -> str:
    return f"mutation({arg}) {{ {field}({call}) {sel} }}"


def _input(kind: str) -> tuple[str, str]:
    return f"$input: {kind}!", "input: $input"


def company_attempts(company: str, location: str, user: str, reseller: str) -> list[Attempt]:
    """Attempts on objects of another tenant: its company, one of its locations, one of its
    users, its reseller."""
    upd = _input("OrganizationUpdateInput")
    return [
        Attempt(
            "company",
            "COMPANIES",
            Action.READ,
            _q("company"),
            lambda w: {"id": org_gid(w.orgs[company])},
        ),
        Attempt(
            "node(Company)",
            "COMPANIES",
            Action.READ,
            _q("node"),
            lambda w: {"id": org_gid(w.orgs[company])},
        ),
        Attempt(
            "reseller",
            "RESELLERS",
            Action.READ,
            _q("reseller"),
            lambda w: {"id": org_gid(w.orgs[reseller])},
        ),
        Attempt(
            "node(Reseller)",
            "RESELLERS",
            Action.READ,
            _q("node"),
            lambda w: {"id": org_gid(w.orgs[reseller])},
        ),
        Attempt(
            "location", "LOCATIONS", Action.READ, _q("location"), lambda w: {"id": loc(w, location)}
        ),
        Attempt(
            "node(Location)",
            "LOCATIONS",
            Action.READ,
            _q("node"),
            lambda w: {"id": loc(w, location)},
        ),
        Attempt("user", "USERS", Action.READ, _q("user"), lambda w: {"id": uid(w, user)}),
        Attempt("node(User)", "USERS", Action.READ, _q("node"), lambda w: {"id": uid(w, user)}),
        Attempt(
            "companyUpdate",
            "COMPANIES",
            Action.UPDATE,
            _m("companyUpdate", *upd),
            lambda w: {"input": {"id": org_gid(w.orgs[company]), "name": "Hijacked"}},
        ),
        Attempt(
            "companyDisable",
            "COMPANIES",
            Action.UPDATE,
            _m("companyDisable"),
            lambda w: {"id": org_gid(w.orgs[company])},
        ),
        Attempt(
            "companyDelete",
            "COMPANIES",
            Action.DELETE,
            _m("companyDelete", sel="{ deletedId }"),
            lambda w: {"id": org_gid(w.orgs[company])},
        ),
        Attempt(
            "resellerUpdate",
            "RESELLERS",
            Action.UPDATE,
            _m("resellerUpdate", *upd),
            lambda w: {"input": {"id": org_gid(w.orgs[reseller]), "name": "Hijacked"}},
        ),
        Attempt(
            "locationCreate",
            "LOCATIONS",
            Action.CREATE,
            _m("locationCreate", *_input("LocationCreateInput")),
            lambda w: {"input": {"companyId": org_gid(w.orgs[company]), "name": "Intruder"}},
        ),
        Attempt(
            "locationUpdate",
            "LOCATIONS",
            Action.UPDATE,
            _m("locationUpdate", *_input("LocationUpdateInput")),
            lambda w: {"input": {"id": loc(w, location), "name": "Hijacked"}},
        ),
        Attempt(
            "locationDelete",
            "LOCATIONS",
            Action.DELETE,
            _m("locationDelete", sel="{ deletedId }"),
            lambda w: {"id": loc(w, location)},
        ),
        Attempt(
            "userCreate",
            "USERS",
            Action.CREATE,
            _m("userCreate", *_input("UserCreateInput")),
            lambda w: {
                "input": {
                    "organizationId": org_gid(w.orgs[company]),
                    "email": "intruder@example.test",
                    "name": "Intruder",
                    "password": NEW_PASSWORD,
                    "role": w.users[user].role,
                }
            },
        ),
        Attempt(
            "userUpdate",
            "USERS",
            Action.UPDATE,
            _m("userUpdate", *_input("UserUpdateInput")),
            lambda w: {"input": {"id": uid(w, user), "name": "Hijacked"}},
        ),
        Attempt(
            "userDisable", "USERS", Action.UPDATE, _m("userDisable"), lambda w: {"id": uid(w, user)}
        ),
        Attempt(
            "userDelete",
            "USERS",
            Action.DELETE,
            _m("userDelete", sel="{ deletedId }"),
            lambda w: {"id": uid(w, user)},
        ),
    ]


# principal → (foreign company, one of its non-default locations or its default, a user, a reseller)
FOREIGN: dict[str, tuple[str, str, str, str]] = {
    R2_ADMIN: ("A1", "A1-East", "A1:Company Administrator", "R1"),
    B1_OWNER: ("A1", "A1-East", "A1:Company Administrator", "R1"),
    A2_OWNER: ("A1", "A1-Default", "A1:Company Administrator", "R2"),  # A1: same reseller
    P1_OWNER: ("B1", "B1-Default", "B1:Company Administrator", "R2"),
    A1_LOCATION_USER: ("A2", "A2-Default", "A2:Location User", "R2"),
    P1_OPERATOR: ("A1", "A1-East", "A1:Company Administrator", "R1"),
}

CASES = [
    (principal, attempt)
    for principal, (company, location, user, reseller) in FOREIGN.items()
    for attempt in company_attempts(company, location, user, reseller)
]

# A location-limited principal and objects of its own company outside its locations.
CASES += [
    (A1_LOCATION_ADMIN, a)
    for a in company_attempts("A2", "A1-Default", "A1:Company Administrator", "R1")
    if a.capability in {"USERS", "LOCATIONS"}
]


async def snapshot() -> tuple[list[Any], list[Any], list[Any]]:
    return (
        await Organization.all().order_by("id").values_list("id", "name", "enabled", "parent_id"),
        await Location.all().order_by("id").values_list("id", "name", "company_id"),
        await User.all().order_by("id").values_list("id", "name", "email", "role", "enabled"),
    )


@pytest.mark.parametrize(
    ("principal", "attempt"),
    CASES,
    ids=[f"{p}/{a.name}" for p, a in CASES],
)
async def test_other_tenants_objects_are_not_found(
    world: World, gql, principal: str, attempt: Attempt
) -> None:
    p = await principal_for_bearer(world.tokens[principal])
    allowed = engine.allows(p, CAPABILITIES[attempt.capability], attempt.action)
    expected = "NOT_FOUND" if allowed else "FORBIDDEN"
    before = await snapshot()
    body = await gql(attempt.document, attempt.variables(world), token=world.tokens[principal])
    assert [e["extensions"]["code"] for e in body.get("errors", [])] == [expected], body
    assert (body.get("data") or {}).get(attempt.field) is None, body
    assert await snapshot() == before, "the database changed"


def test_the_table_mostly_reaches_the_object() -> None:
    """Guard against a table of field-level refusals only: most attempts are on fields the
    principal may use, so that they test scope (NOT_FOUND), not the matrix."""
    from app.authz.matrix import Portal
    from tests.permission_cases import make_principal

    def portal(key: str) -> Portal:
        return Portal.RESELLER if key.split(":")[0] in {"Provider", "R1", "R2"} else Portal.CLIENT

    reaching = [
        (key, a.name)
        for key, a in CASES
        if engine.allows(
            make_principal(portal(key), key.split(":")[1]), CAPABILITIES[a.capability], a.action
        )
    ]
    assert len(reaching) >= 60, len(reaching)
    assert {key for key, _ in reaching} == (set(FOREIGN) | {A1_LOCATION_ADMIN}) - {A1_LOCATION_USER}


# --- lists never show other tenants -------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    principal: str
    document: str
    variables: Callable[[World], dict[str, Any]]
    path: tuple[str, ...]
    key: str
    expected: Callable[[World], set[str]]


def names(*keys: str) -> Callable[[World], set[str]]:
    return lambda w: set(keys)


def emails_of(
    org: str, where: Callable[[str], bool] = lambda k: True
) -> Callable[[World], set[str]]:
    return lambda w: {u.email for k, u in w.users.items() if k.split(":")[0] == org and where(k)}


LISTINGS = [
    Listing(
        R2_ADMIN,
        "query($id: ID!) { reseller(id: $id) { companies(first: 50) { nodes { name } } } }",
        lambda w: {"id": org_gid(w.orgs["R2"])},
        ("reseller", "companies", "nodes"),
        "name",
        names("B1"),
    ),
    Listing(
        R2_ADMIN,
        "{ companies(first: 50) { nodes { name } } }",
        lambda w: {},
        ("companies", "nodes"),
        "name",
        names("B1"),
    ),
    Listing(
        R2_ADMIN,
        "{ resellers(first: 50) { nodes { name } } }",
        lambda w: {},
        ("resellers", "nodes"),
        "name",
        names("R2"),
    ),
    Listing(
        P1_OPERATOR,
        "{ companies(first: 50) { nodes { name } } }",
        lambda w: {},
        ("companies", "nodes"),
        "name",
        names("P1"),
    ),
    Listing(
        P1_OPERATOR,
        "{ resellers(first: 50) { nodes { name } } }",
        lambda w: {},
        ("resellers", "nodes"),
        "name",
        names(),
    ),
    Listing(
        P1_OPERATOR,
        "{ users(first: 100) { nodes { email } } }",
        lambda w: {},
        ("users", "nodes"),
        "email",
        emails_of("P1"),
    ),
    Listing(
        B1_OWNER,
        "{ users(first: 100) { nodes { email } } }",
        lambda w: {},
        ("users", "nodes"),
        "email",
        emails_of("B1"),
    ),
    Listing(
        B1_OWNER,
        "{ companies(first: 50) { nodes { name locations { name } } } }",
        lambda w: {},
        ("companies", "nodes"),
        "name",
        names("B1"),
    ),
    Listing(
        A2_OWNER,
        "{ locations(first: 50) { nodes { id } } }",
        lambda w: {},
        ("locations", "nodes"),
        "id",
        lambda w: {loc(w, "A2-Default")},
    ),
    Listing(
        A1_LOCATION_ADMIN,
        "{ users(first: 100) { nodes { email } } }",
        lambda w: {},
        ("users", "nodes"),
        "email",
        # Only users limited to A1-East, itself included; never the company-wide ones.
        lambda w: {w.users[k].email for k in ("A1:Location Administrator", "A1:Location User")},
    ),
]


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


@pytest.mark.parametrize(
    "listing", LISTINGS, ids=[f"{x.principal}/{'.'.join(x.path)}" for x in LISTINGS]
)
async def test_lists_show_only_your_tenants(world: World, gql, listing: Listing) -> None:
    body = await gql(
        listing.document, listing.variables(world), token=world.tokens[listing.principal]
    )
    assert "errors" not in body, body
    got = {n[listing.key] for n in _dig(body["data"], listing.path)}
    assert got == listing.expected(world)


async def test_a_location_limited_user_sees_only_its_locations_of_its_company(
    world: World, gql
) -> None:
    body = await gql(
        "query($id: ID!) { company(id: $id) { locations { name } } }",
        {"id": org_gid(world.orgs["A1"])},
        token=world.tokens[A1_LOCATION_ADMIN],
    )
    assert body.get("data") == {"company": {"locations": [{"name": "East"}]}}, body
