"""The demo tree: one user per role of every active portal, scopes to explore, idempotent."""

from __future__ import annotations

from collections import defaultdict

from app.auth.passwords import verify_password
from app.authz.engine import portal_for
from app.authz.matrix import RoleScope, load_matrix
from app.demo import demo_user_table, demo_users, seed_demo
from app.models import Location, Organization, OrgKind, User


def roles_of(kind: OrgKind, enterprise: bool) -> list[str]:
    return [r.name for r in load_matrix().portals[portal_for(kind, enterprise)].roles]


async def _roles_by_org() -> dict[tuple[str, str], list[str]]:
    rows = (
        await User.all()
        .order_by("id")
        .values_list("organization__name", "organization__kind", "role")
    )
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for org, kind, role in rows:
        found[org, str(kind)].append(role)
    return found


async def _check_tree(enterprise: bool) -> None:
    found = await _roles_by_org()
    staff = roles_of(OrgKind.RESELLER, enterprise)
    client = roles_of(OrgKind.COMPANY, enterprise)
    operator = next(
        r.name
        for r in load_matrix().portals[portal_for(OrgKind.RESELLER, enterprise)].roles
        if r.scope is RoleScope.COMPANIES
    )
    assert found.pop(("Tenantry Cloud", "PROVIDER")) == [*staff, operator]
    resellers = sorted(k for k in found if k[1] == "RESELLER")
    assert resellers == [("Blue Harbor IT", "RESELLER"), ("Northwind Backup", "RESELLER")]
    for key in resellers:
        assert found.pop(key) == staff
    assert len(found) == 6
    for (org, kind), roles in found.items():
        assert kind == "COMPANY", org
        assert roles == client, org
    # Companies under the provider and under each reseller.
    parents = await Organization.filter(kind=OrgKind.COMPANY.value).values_list(
        "parent__name", flat=True
    )
    assert sorted(set(parents)) == ["Blue Harbor IT", "Northwind Backup", "Tenantry Cloud"]


async def test_demo_seed_creates_one_user_per_role_and_is_idempotent(db, settings):
    assert await seed_demo() is True
    await _check_tree(enterprise=False)
    users = await User.all().count()
    orgs = await Organization.all().count()
    assert users == len(demo_users(False)) == 5 * 3 + 1 + 6 * 6
    assert orgs == 1 + 2 + 6
    assert await Location.all().count() == 12

    assert await seed_demo() is False
    assert await User.all().count() == users
    assert await Organization.all().count() == orgs


async def test_demo_seed_in_the_enterprise_edition_uses_department_roles(db, use_settings):
    use_settings(edition="enterprise")
    assert await seed_demo() is True
    await _check_tree(enterprise=True)
    department_roles = {
        r.name for r in load_matrix().portals[portal_for(OrgKind.COMPANY, True)].roles
    }
    company_roles = set(
        await User.filter(organization__kind=OrgKind.COMPANY.value).values_list("role", flat=True)
    )
    assert company_roles == department_roles


async def test_demo_seed_does_nothing_when_a_provider_exists(db):
    await Organization.create(kind=OrgKind.PROVIDER, name="Real Provider")
    assert await seed_demo() is False
    assert await User.all().count() == 0


async def test_demo_scopes_can_be_explored(db):
    await seed_demo()
    # Location-scoped roles see the branch office only.
    location_roles = [
        r.name
        for r in load_matrix().portals[portal_for(OrgKind.COMPANY, False)].roles
        if r.scope is RoleScope.LOCATIONS
    ]
    assert location_roles
    for user in await User.filter(role__in=location_roles).prefetch_related(
        "scope_locations", "organization"
    ):
        assert user.scope_restricted is True
        assert [loc.name for loc in user.scope_locations] == ["Branch office"]
        assert (await user.scope_locations.all().first()).company_id == user.organization.id
    # Exactly one provider Operator limited to one company.
    limited = await User.filter(
        scope_restricted=True, organization__kind=OrgKind.PROVIDER.value
    ).prefetch_related("scope_companies")
    assert [(u.email, [c.name for c in u.scope_companies]) for u in limited] == [
        ("operator-acme-corp@tenantry.demo", ["Acme Corp"])
    ]
    # Everyone else sees their whole organization.
    assert await User.filter(scope_restricted=True).count() == len(limited) + len(
        await User.filter(role__in=location_roles)
    )
    # One default location per company.
    defaults = await Location.filter(is_default=True).values_list("company__name", "name")
    assert len(defaults) == 6 and {name for _, name in defaults} == {"Headquarters"}


async def test_demo_users_share_the_demo_password_hashed_once(db, settings):
    await seed_demo()
    hashes = set(await User.all().values_list("password_hash", flat=True))
    assert len(hashes) == 1
    assert verify_password(hashes.pop(), settings.demo_password)


async def test_demo_user_can_log_in(db, gql, settings):
    await seed_demo()
    body = await gql(
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token user { email role } } }",
        {"e": "owner@acme.demo", "p": settings.demo_password},
    )
    assert "errors" not in body, body
    assert body["data"]["login"]["user"] == {
        "email": "owner@acme.demo",
        "role": next(
            r.name
            for r in load_matrix().portals[portal_for(OrgKind.COMPANY, False)].roles
            if r.primary
        ),
    }
    assert body["data"]["login"]["token"]


def test_demo_user_table_is_readable_and_unique():
    table = demo_user_table(enterprise=False)
    emails = [email for _, _, email in table]
    assert len(emails) == len(set(emails))
    assert ("Client Portal", "Company Owner", "owner@acme.demo") in table
    assert (
        "Reseller Portal",
        "Service Provider Global Administrator",
        "global-administrator@tenantry.demo",
    ) in table
    assert ("Reseller Portal", "Service Provider Operator", "operator@northwind.demo") in table
    assert ("Client Portal", "Location User", "location-user@initech.demo") in table
    enterprise = demo_user_table(enterprise=True)
    assert ("Department Portal", "Department Owner", "owner@acme.demo") in enterprise
