"""The tenant tree through GraphQL: registration, cascade, removal rules."""

from __future__ import annotations

from app.graphql.ids import to_global_id
from app.models import Location, Organization, SessionToken, User
from tests.factories import PASSWORD

GA = "Service Provider Global Administrator"

COMPANY_CREATE = """
mutation($input: CompanyCreateInput!) {
  companyCreate(input: $input) {
    id name active reseller { name }
    locations { name isDefault }
    owner { email role }
  }
}"""


def gid(kind: str, pk: int) -> str:
    return to_global_id(kind, pk)


async def test_reseller_registration_creates_its_global_administrator(world, gql):
    body = await gql(
        """mutation($input: ResellerCreateInput!) {
             resellerCreate(input: $input) { id name globalAdministrator { email role } }
           }""",
        {
            "input": {
                "name": "Contoso Backup",
                "admin": {"email": "ga@contoso.example", "name": "Gail", "password": PASSWORD},
            }
        },
        token=world.token("Provider", GA),
    )
    assert "errors" not in body, body
    reseller = body["data"]["resellerCreate"]
    assert reseller["globalAdministrator"] == {"email": "ga@contoso.example", "role": GA}


async def test_company_registration_under_a_reseller_creates_owner_and_default_location(world, gql):
    body = await gql(
        COMPANY_CREATE,
        {
            "input": {
                "name": "Northwind",
                "resellerId": gid("Reseller", world.orgs["R1"].id),
                "owner": {"email": "owner@northwind.example", "name": "Nora", "password": PASSWORD},
                "defaultLocationName": "HQ",
            }
        },
        token=world.token("Provider", GA),
    )
    assert "errors" not in body, body
    company = body["data"]["companyCreate"]
    assert company["reseller"] == {"name": "R1"}
    assert company["locations"] == [{"name": "HQ", "isDefault": True}]
    assert company["owner"] == {"email": "owner@northwind.example", "role": "Company Owner"}
    assert company["active"] is True


async def test_reseller_staff_register_companies_under_their_own_reseller(world, gql):
    body = await gql(
        COMPANY_CREATE,
        {
            "input": {
                "name": "Fabrikam",
                "owner": {"email": "owner@fabrikam.example", "name": "Fab", "password": PASSWORD},
            }
        },
        token=world.token("R1", GA),
    )
    assert body["data"]["companyCreate"]["reseller"] == {"name": "R1"}


async def test_duplicate_company_name_under_one_parent_is_a_conflict_and_writes_nothing(world, gql):
    body = await gql(
        COMPANY_CREATE,
        {
            "input": {
                "name": "A1",
                "resellerId": gid("Reseller", world.orgs["R1"].id),
                "owner": {"email": "new-owner@a1.example", "name": "X", "password": PASSWORD},
            }
        },
        token=world.token("Provider", GA),
    )
    assert body["errors"][0]["extensions"] == {"code": "CONFLICT", "field": "name"}
    assert not await User.filter(email="new-owner@a1.example").exists()


async def test_a_weak_owner_password_names_the_field(world, gql):
    body = await gql(
        COMPANY_CREATE,
        {
            "input": {
                "name": "Weak Co",
                "owner": {"email": "o@weak.example", "name": "W", "password": "short"},
            }
        },
        token=world.token("Provider", GA),
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "owner.password"}
    assert not await Organization.filter(name="Weak Co").exists()


async def test_disabling_a_reseller_cascades_to_its_companies_and_their_sessions(world, gql):
    token = world.token("A1", "Company Owner")
    me = await gql("{ me { role } }", token=token)
    assert me["data"]["me"]["role"] == "Company Owner"

    body = await gql(
        "mutation($id: ID!) { resellerDisable(id: $id) { enabled active } }",
        {"id": gid("Reseller", world.orgs["R1"].id)},
        token=world.token("Provider", GA),
    )
    assert body["data"]["resellerDisable"] == {"enabled": False, "active": False}

    # The company keeps its own switch on but is no longer active; its users are locked out.
    company = await gql(
        "query($id: ID!) { company(id: $id) { enabled active } }",
        {"id": gid("Company", world.orgs["A1"].id)},
        token=world.token("Provider", GA),
    )
    assert company["data"]["company"] == {"enabled": True, "active": False}
    denied = await gql("{ me { role } }", token=token)
    assert denied["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    owner = world.user("A1", "Company Owner")
    assert not await SessionToken.filter(user_id=owner.id, revoked_at=None).exists()
    login = await gql(
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
        {"e": owner.email, "p": PASSWORD},
    )
    assert login["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # Enabling the reseller again brings the company back; sessions stay revoked.
    await gql(
        "mutation($id: ID!) { resellerEnable(id: $id) { enabled } }",
        {"id": gid("Reseller", world.orgs["R1"].id)},
        token=world.token("Provider", GA),
    )
    login = await gql(
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
        {"e": owner.email, "p": PASSWORD},
    )
    assert login["data"]["login"]["token"]


async def test_nobody_disables_their_own_organization(world, gql):
    body = await gql(
        "mutation($id: ID!) { companyDisable(id: $id) { enabled } }",
        {"id": gid("Company", world.orgs["A1"].id)},
        token=world.token("A1", "Company Owner"),
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await Organization.get(id=world.orgs["A1"].id)).enabled is True


async def test_deleting_a_reseller_moves_its_companies_to_the_provider(world, gql):
    r1 = world.orgs["R1"]
    body = await gql(
        "mutation($id: ID!) { resellerDelete(id: $id) { deletedId } }",
        {"id": gid("Reseller", r1.id)},
        token=world.token("Provider", GA),
    )
    assert "errors" not in body, body
    moved = await Organization.filter(name__in=["A1", "A2"]).values_list("parent_id", flat=True)
    assert set(moved) == {world.orgs["Provider"].id}
    assert not await Organization.filter(id=r1.id).exists()
    assert not await User.filter(organization_id=r1.id).exists()
    # The companies' own users stay.
    assert await User.filter(organization_id=world.orgs["A1"].id).count() == 6


async def test_deleting_a_company_removes_what_belongs_to_it(world, gql):
    a2 = world.orgs["A2"]
    body = await gql(
        "mutation($id: ID!) { companyDelete(id: $id) { deletedId } }",
        {"id": gid("Company", a2.id)},
        token=world.token("Provider", GA),
    )
    assert "errors" not in body, body
    assert not await Organization.filter(id=a2.id).exists()
    assert not await Location.filter(company_id=a2.id).exists()
    assert not await User.filter(organization_id=a2.id).exists()


async def test_a_location_with_users_cannot_be_deleted(world, gql):
    east = world.locations["A1-East"]
    body = await gql(
        "mutation($id: ID!) { locationDelete(id: $id) { deletedId } }",
        {"id": gid("Location", east.id)},
        token=world.token("A1", "Company Owner"),
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "CONFLICT"
    assert "user" in error["message"]
    assert await Location.filter(id=east.id).exists()


async def test_the_default_location_cannot_be_deleted(world, gql):
    default = world.locations["A1-Default"]
    body = await gql(
        "mutation($id: ID!) { locationDelete(id: $id) { deletedId } }",
        {"id": gid("Location", default.id)},
        token=world.token("A1", "Company Owner"),
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}


async def test_location_lifecycle(world, gql):
    token = world.token("A1", "Company Administrator")
    created = await gql(
        "mutation($input: LocationCreateInput!) { locationCreate(input: $input) { id name viewerCanDelete } }",
        {"input": {"companyId": gid("Company", world.orgs["A1"].id), "name": "West"}},
        token=token,
    )
    loc = created["data"]["locationCreate"]
    assert loc["name"] == "West" and loc["viewerCanDelete"] is True
    dup = await gql(
        "mutation($input: LocationUpdateInput!) { locationUpdate(input: $input) { name } }",
        {"input": {"id": loc["id"], "name": "East"}},
        token=token,
    )
    assert dup["errors"][0]["extensions"] == {"code": "CONFLICT", "field": "name"}
    renamed = await gql(
        "mutation($input: LocationUpdateInput!) { locationUpdate(input: $input) { name } }",
        {"input": {"id": loc["id"], "name": "West Wing"}},
        token=token,
    )
    assert renamed["data"]["locationUpdate"]["name"] == "West Wing"
    deleted = await gql(
        "mutation($id: ID!) { locationDelete(id: $id) { deletedId } }",
        {"id": loc["id"]},
        token=token,
    )
    assert deleted["data"]["locationDelete"]["deletedId"] == loc["id"]


async def test_pagination_walks_every_company_once(world, gql):
    token = world.token("Provider", GA)
    seen, after = [], None
    while True:
        body = await gql(
            "query($after: String) { companies(first: 3, after: $after) { totalCount pageInfo { hasNextPage endCursor } nodes { name } } }",
            {"after": after},
            token=token,
        )
        page = body["data"]["companies"]
        seen += [n["name"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["A1", "A2", "B1", "P1"]
    assert page["totalCount"] == 4


async def test_every_organization_id_the_api_hands_out_resolves_through_node(world, gql):
    token = world.token("Provider", GA)
    me = await gql("{ me { organization { id name kind } } }", token=token)
    org = me["data"]["me"]["organization"]
    assert org["kind"] == "PROVIDER"
    node = await gql(
        "query($id: ID!) { node(id: $id) { __typename ... on Organization { name viewerCanUpdate } } }",
        {"id": org["id"]},
        token=token,
    )
    assert node["data"]["node"] == {
        "__typename": "ServiceProvider",
        "name": "Provider",
        "viewerCanUpdate": False,
    }
    # Reseller staff: the provider is outside their scope.
    hidden = await gql(
        "query($id: ID!) { node(id: $id) { id } }", {"id": org["id"]}, token=world.token("R1", GA)
    )
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert hidden["data"] == {"node": None}


async def test_a_denied_field_leaves_the_rest_of_the_answer(world, gql):
    body = await gql(
        "{ me { role } companies { totalCount } }", token=world.token("A1", "Location User")
    )
    assert body["data"] == {"me": {"role": "Location User"}, "companies": None}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["companies"]
