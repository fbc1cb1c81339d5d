"""No N+1: a page of companies with their reseller, locations and owner costs the same, small,
number of SQL statements whatever the page size."""

from __future__ import annotations

from app.authz.matrix import Portal, load_matrix
from app.models import Location, Organization, OrgKind, User
from app.services.sessions import issue_session
from tests.factories import password_hash
from tests.querycount import count_queries

COMPANIES_PAGE = """
query($first: Int) {
  companies(first: $first) {
    nodes { name reseller { name } locations { name } owner { email } }
  }
}
"""

# One statement each: the page of companies, their parents (reseller), their locations, their
# owners. Authentication is measured separately and subtracted.
EXPECTED_STATEMENTS = 4


def primary_role(portal: Portal) -> str:
    return next(r.name for r in load_matrix().portals[portal].roles if r.primary)


async def _provider_admin() -> tuple[Organization, Organization, str]:
    provider = await Organization.create(kind=OrgKind.PROVIDER, name="Provider")
    reseller = await Organization.create(kind=OrgKind.RESELLER, name="Reseller", parent=provider)
    admin = await User.create(
        email="admin@provider.test",
        name="Admin",
        role=primary_role(Portal.RESELLER),
        organization=provider,
        password_hash=password_hash(),
    )
    token, _ = await issue_session(admin)
    return provider, reseller, token


async def _add_companies(
    provider: Organization, reseller: Organization, start: int, end: int
) -> None:
    owner_role = primary_role(Portal.CLIENT)
    for i in range(start, end):
        # Alternate parents so `reseller` resolves to both a reseller and null.
        company = await Organization.create(
            kind=OrgKind.COMPANY, name=f"Company {i:03d}", parent=reseller if i % 2 else provider
        )
        await Location.bulk_create(
            [Location(company=company, name=f"Site {n}", is_default=n == 0) for n in range(3)]
        )
        await User.create(
            email=f"owner{i}@example.test",
            name=f"Owner {i}",
            role=owner_role,
            organization=company,
            password_hash=password_hash(),
        )


async def _statements(gql, token: str, first: int) -> tuple[list[str], dict]:
    with count_queries() as auth_only:
        body = await gql("{ __typename }", token=token)
    assert body == {"data": {"__typename": "Query"}}
    with count_queries() as total:
        body = await gql(COMPANIES_PAGE, {"first": first}, token=token)
    assert "errors" not in body, body
    # The authentication statements come first in every request: drop them.
    assert total.statements[: auth_only.count] == auth_only.statements
    page = total.statements[auth_only.count :]
    print(f"first={first}: {auth_only.count} for authentication + {len(page)} for the page")
    return page, body


async def test_company_page_statements_do_not_grow_with_page_size(db, gql):
    provider, reseller, token = await _provider_admin()

    await _add_companies(provider, reseller, 0, 5)
    small, body = await _statements(gql, token, 5)
    nodes = body["data"]["companies"]["nodes"]
    assert len(nodes) == 5
    assert nodes[0] == {
        "name": "Company 000",
        "reseller": None,
        "locations": [{"name": "Site 0"}, {"name": "Site 1"}, {"name": "Site 2"}],
        "owner": {"email": "owner0@example.test"},
    }
    assert nodes[1]["reseller"] == {"name": "Reseller"}

    await _add_companies(provider, reseller, 5, 40)
    large, body = await _statements(gql, token, 40)
    nodes = body["data"]["companies"]["nodes"]
    assert len(nodes) == 40
    assert all(len(n["locations"]) == 3 and n["owner"] for n in nodes)
    assert nodes[39]["owner"] == {"email": "owner39@example.test"}

    assert len(small) == len(large) == EXPECTED_STATEMENTS, large
    for table in ("organizations", "locations", "users"):
        assert len([s for s in large if f'FROM "{table}"' in s]) == (
            2 if table == "organizations" else 1
        )


async def test_counter_sees_statements_inside_transactions(world, gql):
    """Mutations run inside `audited` (a transaction): their statements are counted too."""
    from app.graphql.ids import to_global_id

    token = world.token("Provider", "Service Provider Global Administrator")
    with count_queries() as queries:
        body = await gql(
            "mutation($input: LocationCreateInput!) { locationCreate(input: $input) { id } }",
            {"input": {"companyId": to_global_id("Company", world.orgs["A1"].id), "name": "N"}},
            token=token,
        )
    assert "errors" not in body, body
    assert len(queries.matching("audit_log")) == 1
    assert any(s.lstrip().upper().startswith("INSERT") for s in queries.matching("locations"))


async def test_audit_log_page_statements_do_not_grow_with_page_size(db, gql):
    """The organization kind behind `organizationId` comes from one batched load per page."""
    from app.models import AuditEntry

    provider, reseller, token = await _provider_admin()
    await _add_companies(provider, reseller, 0, 40)
    companies = await Organization.filter(kind=OrgKind.COMPANY.value).order_by("id")
    await AuditEntry.bulk_create(
        [
            AuditEntry(
                action="companyUpdate",
                object_type="Company",
                object_id=str(c.id),
                organization_id=c.id,
            )
            for c in companies
        ]
        + [
            AuditEntry(
                action="resellerUpdate",
                object_type="Reseller",
                object_id=str(reseller.id),
                organization_id=reseller.id,
            )
        ]
    )
    query = (
        "query($first: Int) { auditLog(first: $first) { nodes { id organizationId objectId } } }"
    )
    counts = []
    for first in (5, 40):
        with count_queries() as auth_only:
            await gql("{ __typename }", token=token)
        with count_queries() as total:
            body = await gql(query, {"first": first}, token=token)
        assert "errors" not in body, body
        assert len(body["data"]["auditLog"]["nodes"]) == first
        counts.append(total.count - auth_only.count)
    # The page (with its scope subquery) and one load of organization kinds.
    assert counts == [2, 2]
