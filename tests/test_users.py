"""Portal user management through GraphQL, on the world fixture."""

from __future__ import annotations

import pytest

from app.authz.engine import portal_for
from app.authz.matrix import RoleScope, load_matrix
from app.graphql.ids import to_global_id
from app.models import AuditEntry, OrgKind, SessionToken, User
from tests.factories import PASSWORD

NEW_PASSWORD = "Another-Long-Secret-42"

CREATE = """
mutation($input: UserCreateInput!) {
  userCreate(input: $input) {
    id email role scopeRestricted primary
    organization { id name kind }
    scopeLocations { name }
    scopeCompanies { name }
  }
}
"""
UPDATE = "mutation($input: UserUpdateInput!) { userUpdate(input: $input) { id name email role scopeRestricted scopeLocations { name } } }"
DISABLE = "mutation($id: ID!) { userDisable(id: $id) { id enabled } }"
ENABLE = "mutation($id: ID!) { userEnable(id: $id) { id enabled } }"
DELETE = "mutation($id: ID!) { userDelete(id: $id) { deletedId } }"
RESET = "mutation($input: UserPasswordResetInput!) { userPasswordReset(input: $input) { id } }"
USERS = "query($f: UserFilter) { users(first: 500, filter: $f) { totalCount nodes { email role organization { name kind } } } }"


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def org_gid(world, key: str) -> str:
    org = world.orgs[key]
    name = {
        OrgKind.PROVIDER: "ServiceProvider",
        OrgKind.RESELLER: "Reseller",
        OrgKind.COMPANY: "Company",
    }[org.kind]
    return gid(name, org.id)


def roles(
    kind: OrgKind, *, primary: bool | None = None, scope: RoleScope | None = None
) -> list[str]:
    portal = portal_for(kind, False)
    return [
        r.name
        for r in load_matrix().portals[portal].roles
        if (primary is None or r.primary is primary) and (scope is None or r.scope is scope)
    ]


def code(body: dict) -> str:
    assert body.get("errors"), body
    return body["errors"][0]["extensions"]["code"]


def new_user(world, org: str, role: str, email: str, **extra) -> dict:
    return {
        "input": {
            "organizationId": org_gid(world, org),
            "email": email,
            "name": email.split("@")[0],
            "password": PASSWORD,
            "role": role,
            **extra,
        }
    }


# Roles of the world (names appear only in tests, seeds and the matrix).
GA = "Service Provider Global Administrator"
SPA = "Service Provider Administrator"
OPERATOR = "Service Provider Operator"
SP_USER = "Service Provider User"
OWNER = "Company Owner"
CADMIN = "Company Administrator"
LADMIN = "Location Administrator"
LUSER = "Location User"


def test_world_roles_match_matrix():
    assert roles(OrgKind.RESELLER, primary=True) == [GA]
    assert roles(OrgKind.COMPANY, primary=True) == [OWNER]
    assert LUSER in roles(OrgKind.COMPANY, scope=RoleScope.LOCATIONS)
    assert OPERATOR in roles(OrgKind.RESELLER, scope=RoleScope.COMPANIES)


async def test_provider_ga_creates_company_and_reseller_users(world, gql):
    token = world.token("Provider", GA)
    body = await gql(
        CREATE,
        new_user(
            world,
            "A1",
            LUSER,
            "lu.new@example.test",
            locationIds=[gid("Location", world.locations["A1-East"].id)],
        ),
        token=token,
    )
    assert "errors" not in body, body
    created = body["data"]["userCreate"]
    assert created["role"] == LUSER
    assert created["organization"] == {"id": org_gid(world, "A1"), "name": "A1", "kind": "COMPANY"}
    assert created["scopeRestricted"] is True
    assert created["scopeLocations"] == [{"name": "East"}]
    assert created["primary"] is False

    body = await gql(CREATE, new_user(world, "R1", SPA, "r1.admin2@example.test"), token=token)
    assert "errors" not in body, body
    assert body["data"]["userCreate"]["organization"]["kind"] == "RESELLER"
    assert body["data"]["userCreate"]["scopeLocations"] is None
    user = await User.get(email="r1.admin2@example.test")
    assert user.organization_id == world.orgs["R1"].id  # type: ignore[attr-defined]
    entry = await AuditEntry.filter(action="userCreate", outcome="SUCCESS").order_by("-id").first()
    assert entry is not None and entry.object_id == str(user.id)
    assert entry.organization_id == world.orgs["R1"].id


async def test_provider_staff_with_limited_companies(world, gql):
    token = world.token("Provider", GA)
    p1 = gid("Company", world.orgs["P1"].id)
    body = await gql(
        CREATE,
        new_user(world, "Provider", OPERATOR, "op.p1@example.test", companyIds=[p1]),
        token=token,
    )
    assert "errors" not in body, body
    assert body["data"]["userCreate"]["scopeCompanies"] == [{"name": "P1"}]
    # companyIds for a role that sees the whole organization
    body = await gql(
        CREATE, new_user(world, "Provider", SPA, "x@example.test", companyIds=[p1]), token=token
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "companyIds"
    # a company of another organization's tree (B1 is R2's) for an R1 operator
    b1 = gid("Company", world.orgs["B1"].id)
    body = await gql(
        CREATE, new_user(world, "R1", OPERATOR, "y@example.test", companyIds=[b1]), token=token
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "companyIds"


async def test_reseller_admin_cannot_create_in_other_resellers_company(world, gql):
    token = world.token("R1", GA)
    body = await gql(CREATE, new_user(world, "B1", LUSER, "intruder@example.test"), token=token)
    assert code(body) == "NOT_FOUND"
    assert not await User.filter(email="intruder@example.test").exists()
    body = await gql(CREATE, new_user(world, "A1", CADMIN, "a1.admin2@example.test"), token=token)
    assert "errors" not in body, body


async def test_operator_manages_only_company_users(world, gql):
    token = world.token("Provider", OPERATOR)
    body = await gql(CREATE, new_user(world, "A1", CADMIN, "op.made@example.test"), token=token)
    assert "errors" not in body, body
    body = await gql(
        CREATE, new_user(world, "Provider", SP_USER, "staff@example.test"), token=token
    )
    assert code(body) == "FORBIDDEN"
    body = await gql(USERS, token=token)
    assert "errors" not in body, body
    kinds = {n["organization"]["kind"] for n in body["data"]["users"]["nodes"]}
    assert kinds == {"COMPANY"}
    expected = await User.filter(organization__kind="COMPANY").count()
    assert body["data"]["users"]["totalCount"] == expected
    # a provider staff user is not even visible
    staff = world.user("Provider", SP_USER)
    body = await gql(
        "query($id: ID!) { user(id: $id) { id } }", {"id": gid("User", staff.id)}, token=token
    )
    assert code(body) == "NOT_FOUND"
    body = await gql(DISABLE, {"id": gid("User", staff.id)}, token=token)
    assert code(body) == "NOT_FOUND"


async def test_service_provider_user_cannot_see_users(world, gql):
    body = await gql(USERS, token=world.token("Provider", SP_USER))
    assert code(body) == "FORBIDDEN"
    body = await gql(
        CREATE,
        new_user(world, "A1", LUSER, "z@example.test"),
        token=world.token("Provider", SP_USER),
    )
    assert code(body) == "FORBIDDEN"


async def test_company_admin_cannot_manage_owner_but_manages_location_user(world, gql):
    token = world.token("A1", CADMIN)
    owner = gid("User", world.user("A1", OWNER).id)
    assert (
        code(await gql(UPDATE, {"input": {"id": owner, "name": "Renamed"}}, token=token))
        == "FORBIDDEN"
    )
    assert code(await gql(DISABLE, {"id": owner}, token=token)) == "FORBIDDEN"
    assert code(await gql(DELETE, {"id": owner}, token=token)) == "FORBIDDEN"
    assert (
        code(await gql(RESET, {"input": {"id": owner, "newPassword": NEW_PASSWORD}}, token=token))
        == "FORBIDDEN"
    )
    row = await User.get(id=world.user("A1", OWNER).id)
    assert (row.name, row.enabled) == (f"A1:{OWNER}", True)

    body = await gql(
        "query($id: ID!) { user(id: $id) { primary viewerCanUpdate viewerCanDelete viewerCanResetPassword } }",
        {"id": owner},
        token=token,
    )
    assert body["data"]["user"] == {
        "primary": True,
        "viewerCanUpdate": False,
        "viewerCanDelete": False,
        "viewerCanResetPassword": False,
    }

    lu = gid("User", world.user("A1", LUSER).id)
    body = await gql(
        "query($id: ID!) { user(id: $id) { primary viewerCanUpdate viewerCanDelete viewerCanResetPassword } }",
        {"id": lu},
        token=token,
    )
    assert body["data"]["user"] == {
        "primary": False,
        "viewerCanUpdate": True,
        "viewerCanDelete": True,
        "viewerCanResetPassword": True,
    }
    body = await gql(UPDATE, {"input": {"id": lu, "name": "Renamed LU"}}, token=token)
    assert body["data"]["userUpdate"]["name"] == "Renamed LU"
    assert (await gql(DISABLE, {"id": lu}, token=token))["data"]["userDisable"]["enabled"] is False
    assert (await gql(ENABLE, {"id": lu}, token=token))["data"]["userEnable"]["enabled"] is True
    body = await gql(RESET, {"input": {"id": lu, "newPassword": NEW_PASSWORD}}, token=token)
    assert "errors" not in body, body
    body = await gql(DELETE, {"id": lu}, token=token)
    assert body["data"]["userDelete"]["deletedId"] == lu
    assert not await User.filter(id=world.user("A1", LUSER).id).exists()


async def test_owner_edits_themselves_but_not_their_role(world, gql):
    token = world.token("A1", OWNER)
    me = gid("User", world.user("A1", OWNER).id)
    body = await gql(UPDATE, {"input": {"id": me, "name": "The Owner"}}, token=token)
    assert body["data"]["userUpdate"]["name"] == "The Owner"
    body = await gql(UPDATE, {"input": {"id": me, "role": CADMIN}}, token=token)
    assert code(body) == "FORBIDDEN"
    assert (await User.get(id=world.user("A1", OWNER).id)).role == OWNER


async def test_primary_role_cannot_be_given_or_taken(world, gql):
    token = world.token("Provider", GA)
    owner = gid("User", world.user("A1", OWNER).id)
    admin = gid("User", world.user("A1", CADMIN).id)
    assert (
        code(await gql(UPDATE, {"input": {"id": owner, "role": CADMIN}}, token=token))
        == "FORBIDDEN"
    )
    assert (
        code(await gql(UPDATE, {"input": {"id": admin, "role": OWNER}}, token=token)) == "FORBIDDEN"
    )
    # staff of a parent organization may manage the owner otherwise
    body = await gql(UPDATE, {"input": {"id": owner, "name": "Renamed by provider"}}, token=token)
    assert "errors" not in body, body
    # ...but nobody removes the primary user
    assert code(await gql(DELETE, {"id": owner}, token=token)) == "FORBIDDEN"


async def test_owner_cannot_create_second_owner(world, gql):
    body = await gql(
        CREATE, new_user(world, "A1", OWNER, "owner2@example.test"), token=world.token("A1", OWNER)
    )
    assert code(body) == "FORBIDDEN"
    assert not await User.filter(email="owner2@example.test").exists()


async def test_location_admin_limits(world, gql):
    token = world.token("A1", LADMIN)
    east = gid("Location", world.locations["A1-East"].id)
    default = gid("Location", world.locations["A1-Default"].id)
    body = await gql(
        CREATE, new_user(world, "A1", LUSER, "east@example.test", locationIds=[east]), token=token
    )
    assert "errors" not in body, body
    assert body["data"]["userCreate"]["scopeLocations"] == [{"name": "East"}]
    body = await gql(
        CREATE, new_user(world, "A1", LUSER, "def@example.test", locationIds=[default]), token=token
    )
    assert code(body) == "FORBIDDEN"
    body = await gql(CREATE, new_user(world, "A1", LUSER, "wide@example.test"), token=token)
    assert code(body) == "FORBIDDEN"
    body = await gql(CREATE, new_user(world, "A1", CADMIN, "ca@example.test"), token=token)
    assert code(body) == "FORBIDDEN"
    # a location of another company is not the company's
    other = gid("Location", world.locations["A2-Default"].id)
    body = await gql(
        CREATE, new_user(world, "A1", LUSER, "oth@example.test", locationIds=[other]), token=token
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "locationIds"

    # users limited to East and Default: wider than the Location Administrator, so invisible
    wider = await User.create(
        email="both@example.test",
        name="both",
        role=LUSER,
        password_hash="x",
        organization=world.orgs["A1"],
        scope_restricted=True,
    )
    await wider.scope_locations.add(world.locations["A1-East"], world.locations["A1-Default"])

    body = await gql(
        "{ users(first: 100) { totalCount nodes { email scopeLocations { name } } } }", token=token
    )
    assert "errors" not in body, body
    emails = sorted(n["email"] for n in body["data"]["users"]["nodes"])
    assert emails == sorted(
        ["east@example.test", world.user("A1", LADMIN).email, world.user("A1", LUSER).email]
    )
    assert body["data"]["users"]["totalCount"] == 3
    assert all(n["scopeLocations"] == [{"name": "East"}] for n in body["data"]["users"]["nodes"])
    assert (
        code(
            await gql(
                RESET,
                {"input": {"id": gid("User", wider.id), "newPassword": NEW_PASSWORD}},
                token=token,
            )
        )
        == "NOT_FOUND"
    )


async def test_limited_operator_cannot_create_outside_their_companies(world, gql):
    token = world.token("Provider", f"{OPERATOR}:P1")
    # A1 is outside the operator's companies: not found.
    body = await gql(CREATE, new_user(world, "A1", LUSER, "a@example.test"), token=token)
    assert code(body) == "NOT_FOUND"
    # An unrestricted Operator is provider staff: the provider is outside their scope.
    body = await gql(CREATE, new_user(world, "Provider", OPERATOR, "b@example.test"), token=token)
    assert code(body) == "NOT_FOUND"
    # Users of P1 itself, whatever their role's scope, are within theirs.
    body = await gql(CREATE, new_user(world, "P1", CADMIN, "c@example.test"), token=token)
    assert "errors" not in body, body
    body = await gql(USERS, token=token)
    assert {n["organization"]["name"] for n in body["data"]["users"]["nodes"]} == {"P1"}


async def test_disable_revokes_sessions(world, gql):
    admin = world.token("A1", CADMIN)
    victim_token = world.token("A1", LADMIN)
    assert "errors" not in await gql("{ users { totalCount } }", token=victim_token)
    victim = gid("User", world.user("A1", LADMIN).id)
    body = await gql(DISABLE, {"id": victim}, token=admin)
    assert body["data"]["userDisable"]["enabled"] is False
    assert (
        await SessionToken.filter(user_id=world.user("A1", LADMIN).id, revoked_at=None).count() == 0
    )
    assert code(await gql("{ users { totalCount } }", token=victim_token)) == "UNAUTHENTICATED"


async def test_password_reset_revokes_sessions_and_checks_policy(world, gql):
    admin = world.token("A1", CADMIN)
    victim = world.user("A1", LADMIN)
    victim_token = world.token("A1", LADMIN)
    body = await gql(
        RESET, {"input": {"id": gid("User", victim.id), "newPassword": "short"}}, token=admin
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "newPassword"
    assert "errors" not in await gql("{ users { totalCount } }", token=victim_token)
    body = await gql(
        RESET, {"input": {"id": gid("User", victim.id), "newPassword": NEW_PASSWORD}}, token=admin
    )
    assert "errors" not in body, body
    assert code(await gql("{ users { totalCount } }", token=victim_token)) == "UNAUTHENTICATED"
    row = await User.get(id=victim.id)
    assert row.password_changed_at is not None
    from app.auth.passwords import verify_password

    assert verify_password(row.password_hash, NEW_PASSWORD)


async def test_bad_input_and_conflicts(world, gql):
    token = world.token("A1", CADMIN)
    taken = world.user("A2", LUSER).email
    body = await gql(CREATE, new_user(world, "A1", LUSER, taken), token=token)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["extensions"]["field"] == "email"
    body = await gql(CREATE, new_user(world, "A1", "Chief Wizard", "w@example.test"), token=token)
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "role"
    # a reseller role for a company does not exist either
    body = await gql(CREATE, new_user(world, "A1", SPA, "w@example.test"), token=token)
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "role"
    lu = gid("User", world.user("A1", LUSER).id)
    body = await gql(UPDATE, {"input": {"id": lu, "email": taken}}, token=token)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["extensions"]["field"] == "email"
    failures = await AuditEntry.filter(outcome="FAILURE", action="userUpdate").count()
    assert failures == 1


async def test_delete_yourself_is_forbidden(world, gql):
    me = world.user("A1", CADMIN)
    body = await gql(DELETE, {"id": gid("User", me.id)}, token=world.token("A1", CADMIN))
    assert code(body) == "FORBIDDEN"
    assert await User.filter(id=me.id).exists()
    body = await gql(DISABLE, {"id": gid("User", me.id)}, token=world.token("A1", CADMIN))
    assert code(body) == "BAD_USER_INPUT"


async def test_update_role_and_scope(world, gql):
    token = world.token("A1", CADMIN)
    lu = world.user("A1", LUSER)
    default = gid("Location", world.locations["A1-Default"].id)
    body = await gql(
        UPDATE, {"input": {"id": gid("User", lu.id), "locationIds": [default]}}, token=token
    )
    assert body["data"]["userUpdate"]["scopeLocations"] == [{"name": "Default location"}]
    body = await gql(UPDATE, {"input": {"id": gid("User", lu.id), "scopeAll": True}}, token=token)
    assert body["data"]["userUpdate"]["scopeRestricted"] is False
    assert body["data"]["userUpdate"]["scopeLocations"] is None
    body = await gql(
        UPDATE,
        {"input": {"id": gid("User", lu.id), "role": LADMIN, "locationIds": [default]}},
        token=token,
    )
    assert body["data"]["userUpdate"]["role"] == LADMIN
    assert body["data"]["userUpdate"]["scopeLocations"] == [{"name": "Default location"}]
    # A restriction means nothing for a role that sees the whole company: it is lifted.
    body = await gql(UPDATE, {"input": {"id": gid("User", lu.id), "role": CADMIN}}, token=token)
    assert body["data"]["userUpdate"]["scopeRestricted"] is False
    body = await gql(
        UPDATE, {"input": {"id": gid("User", lu.id), "locationIds": [default]}}, token=token
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "locationIds"


async def test_location_admin_cannot_promote(world, gql):
    token = world.token("A1", LADMIN)
    lu = gid("User", world.user("A1", LUSER).id)
    assert (
        code(await gql(UPDATE, {"input": {"id": lu, "role": CADMIN}}, token=token)) == "FORBIDDEN"
    )
    assert (
        code(await gql(UPDATE, {"input": {"id": lu, "scopeAll": True}}, token=token)) == "FORBIDDEN"
    )
    body = await gql(UPDATE, {"input": {"id": lu, "name": "ok"}}, token=token)
    assert "errors" not in body, body


async def test_node_resolves_users_in_scope_only(world, gql):
    owner_b1 = gid("User", world.user("B1", OWNER).id)
    q = "query($id: ID!) { node(id: $id) { ... on User { email } } }"
    assert code(await gql(q, {"id": owner_b1}, token=world.token("R1", GA))) == "NOT_FOUND"
    body = await gql(q, {"id": owner_b1}, token=world.token("R2", GA))
    assert body["data"]["node"]["email"] == world.user("B1", OWNER).email


async def test_users_filter(world, gql):
    token = world.token("Provider", GA)
    body = await gql(
        USERS, {"f": {"organizationId": org_gid(world, "A1"), "role": LUSER}}, token=token
    )
    assert [n["email"] for n in body["data"]["users"]["nodes"]] == [world.user("A1", LUSER).email]
    body = await gql(USERS, {"f": {"emailContains": "r2"}}, token=token)
    assert {n["organization"]["name"] for n in body["data"]["users"]["nodes"]} == {"R2"}
    await User.filter(id=world.user("A2", LUSER).id).update(enabled=False)
    body = await gql(USERS, {"f": {"enabled": False}}, token=token)
    assert [n["email"] for n in body["data"]["users"]["nodes"]] == [world.user("A2", LUSER).email]


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def count_queries(db, monkeypatch):
    conn = db.db()
    counter = QueryCounter()
    for name in ("execute_query", "execute_query_dict"):
        original = getattr(conn, name)

        async def wrapped(*args, _original=original, **kwargs):
            counter.count += 1
            return await _original(*args, **kwargs)

        monkeypatch.setattr(conn, name, wrapped)
    return counter


async def test_listing_users_costs_constant_queries(world, gql, count_queries):
    token = world.token("Provider", GA)
    for i in range(30):  # restricted users of both kinds, so that the scope lists load rows
        u = await User.create(
            email=f"extra-lu{i}@example.test",
            name=f"lu{i}",
            role=LUSER,
            password_hash="x",
            organization=world.orgs["A1"],
            scope_restricted=True,
        )
        await u.scope_locations.add(world.locations["A1-East"], world.locations["A1-Default"])
        u = await User.create(
            email=f"extra-op{i}@example.test",
            name=f"op{i}",
            role=OPERATOR,
            password_hash="x",
            organization=world.orgs["Provider"],
            scope_restricted=True,
        )
        await u.scope_companies.add(world.orgs["P1"], world.orgs["A1"])
    query = """query($f: UserFilter) { users(first: %d, filter: $f) { nodes { email primary viewerCanUpdate
                organization { id name } scopeLocations { name } scopeCompanies { name } } } }"""

    async def cost(n: int) -> int:
        count_queries.count = 0
        body = await gql(query % n, {"f": {"emailContains": "extra-"}}, token=token)
        assert "errors" not in body, body
        nodes = body["data"]["users"]["nodes"]
        assert len(nodes) == n
        assert nodes[0]["scopeLocations"] == [{"name": "Default location"}, {"name": "East"}]
        assert nodes[1]["scopeCompanies"] == [{"name": "A1"}, {"name": "P1"}]
        return count_queries.count

    small = await cost(2)
    assert small > 0  # the counter does see the queries
    assert await cost(50) == small
