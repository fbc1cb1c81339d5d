"""The seeds' prose rules, end to end through GraphQL, for every role the matrix gives user
management: the primary user (Owner / Global Administrator) is never removed and, within their
own organization, modified by nobody but themselves; nobody removes their own account; nobody
manages a peer whose role is wider than their own."""

from __future__ import annotations

import pytest

from app.authz.engine import grants_for, portal_for
from app.authz.matrix import Action, Functionality, load_matrix
from app.authz.principal import Principal, Target
from app.authz.rules import RULES
from app.graphql.ids import to_global_id
from app.models import AuditEntry, OrgKind, User

NEW_PASSWORD = "Another-Long-Secret-42"

UPDATE = 'mutation($id: ID!) { userUpdate(input: {id: $id, name: "Changed"}) { name } }'
DISABLE = "mutation($id: ID!) { userDisable(id: $id) { enabled } }"
DELETE = "mutation($id: ID!) { userDelete(id: $id) { deletedId } }"
RESET = (
    'mutation($id: ID!) { userPasswordReset(input: {id: $id, newPassword: "'
    + NEW_PASSWORD
    + '"}) { id } }'
)
VIEWER = "query($id: ID!) { user(id: $id) { primary viewerCanUpdate viewerCanDelete viewerCanResetPassword } }"


def _roles(kind: OrgKind):
    return load_matrix().portals[portal_for(kind, False)].roles


def primary_role(kind: OrgKind) -> str:
    return next(r.name for r in _roles(kind) if r.primary)


def managers(kind: OrgKind) -> list[str]:
    """Non-primary roles whose cell lets them update portal users."""
    result = []
    for role in _roles(kind):
        cell = load_matrix().cell(role.portal, role.name, Functionality.CONFIGURATION)
        if not role.primary and cell is not None and Action.UPDATE in cell.actions:
            result.append(role.name)
    return result


# (org of the world, kind) pairs whose managers are unrestricted in the world fixture.
ORGS = [("R1", OrgKind.RESELLER), ("A2", OrgKind.COMPANY)]
CASES = [(org, kind, role) for org, kind in ORGS for role in managers(kind)]


def hidden_from_own_org(kind: OrgKind, role: str) -> bool:
    """The role's cell rule narrows its lists to users of other organizations (SQL filter)
    and refuses users of an organization of this kind: its own peers are out of reach."""
    cell = load_matrix().cell(portal_for(kind, False), role, Functionality.CONFIGURATION)
    assert cell is not None
    rule = RULES[cell.rule] if cell.rule else None
    return bool(
        rule and rule.filter and not rule.check(_p(kind, role), Action.READ, "user", _t(kind))
    )


def _p(kind: OrgKind, role: str) -> Principal:
    r = load_matrix().role(portal_for(kind, False), role)
    return Principal(1, "e@x.test", "n", r, 1, kind, None, grants_for(r))


def _t(kind: OrgKind) -> Target:
    return Target(kind="user", organization_id=1, organization_kind=kind, user_id=2)


def code(body: dict) -> str:
    assert body.get("errors"), body
    return body["errors"][0]["extensions"]["code"]


def test_cases_come_from_the_matrix():
    # Both portals give user management to at least one non-primary role, and at least one
    # case exercises the refusals (not only the hidden branch).
    assert {kind for _, kind, _ in CASES} == {OrgKind.RESELLER, OrgKind.COMPANY}
    assert any(not hidden_from_own_org(kind, role) for _, kind, role in CASES)
    assert any(hidden_from_own_org(kind, role) for _, kind, role in CASES)


@pytest.mark.parametrize(("org", "kind", "role"), CASES)
async def test_same_organization_cannot_touch_the_primary_user(world, gql, org, kind, role):
    token = world.token(org, role)
    primary = world.user(org, primary_role(kind))
    pid = to_global_id("User", primary.id)
    body = await gql(VIEWER, {"id": pid}, token=token)
    if hidden_from_own_org(kind, role):
        assert code(body) == "NOT_FOUND"
        return
    assert body["data"]["user"] == {
        "primary": True,
        "viewerCanUpdate": False,
        "viewerCanDelete": False,
        "viewerCanResetPassword": False,
    }
    for mutation in (UPDATE, DISABLE, DELETE, RESET):
        assert code(await gql(mutation, {"id": pid}, token=token)) == "FORBIDDEN", mutation
    row = await User.get(id=primary.id)
    assert (row.name, row.enabled, row.password_hash) == (primary.name, True, primary.password_hash)


@pytest.mark.parametrize(("org", "kind"), ORGS)
async def test_primary_user_edits_themselves_but_never_removes_themselves(world, gql, org, kind):
    primary = world.user(org, primary_role(kind))
    token = world.token(org, primary_role(kind))
    pid = to_global_id("User", primary.id)
    body = await gql(VIEWER, {"id": pid}, token=token)
    assert body["data"]["user"] == {
        "primary": True,
        "viewerCanUpdate": True,
        "viewerCanDelete": False,
        "viewerCanResetPassword": False,
    }
    assert (await gql(UPDATE, {"id": pid}, token=token))["data"]["userUpdate"]["name"] == "Changed"
    assert code(await gql(DELETE, {"id": pid}, token=token)) == "FORBIDDEN"
    assert code(await gql(DISABLE, {"id": pid}, token=token)) == "BAD_USER_INPUT"
    assert code(await gql(RESET, {"id": pid}, token=token)) == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("parent", "org", "kind"), [("Provider", "R1", OrgKind.RESELLER), ("R1", "A1", OrgKind.COMPANY)]
)
async def test_parent_staff_manage_the_primary_user_but_never_remove_them(
    world, gql, parent, org, kind
):
    token = world.token(parent, primary_role(OrgKind.RESELLER))
    pid = to_global_id("User", world.user(org, primary_role(kind)).id)
    body = await gql(VIEWER, {"id": pid}, token=token)
    assert body["data"]["user"] == {
        "primary": True,
        "viewerCanUpdate": True,
        "viewerCanDelete": False,
        "viewerCanResetPassword": True,
    }
    assert (await gql(DISABLE, {"id": pid}, token=token))["data"]["userDisable"]["enabled"] is False
    assert "errors" not in await gql(RESET, {"id": pid}, token=token)
    assert code(await gql(DELETE, {"id": pid}, token=token)) == "FORBIDDEN"
    assert await User.filter(id=world.user(org, primary_role(kind)).id).exists()
    assert await AuditEntry.filter(action="userDisable", outcome="SUCCESS").count() == 1


@pytest.mark.parametrize(("org", "kind", "role"), CASES)
async def test_nobody_removes_their_own_account(world, gql, org, kind, role):
    me = world.user(org, role)
    body = await gql(DELETE, {"id": to_global_id("User", me.id)}, token=world.token(org, role))
    assert code(body) in {
        "FORBIDDEN",
        "NOT_FOUND",
    }  # NOT_FOUND: users of their org are out of reach
    assert await User.filter(id=me.id).exists()


async def test_nobody_manages_a_wider_peer(world, gql):
    # A2's Location Administrator is unrestricted in the world: they see every A2 user, but
    # their role is narrower than the Company Administrator's.
    token = world.token("A2", "Location Administrator")
    admin = to_global_id("User", world.user("A2", "Company Administrator").id)
    body = await gql(VIEWER, {"id": admin}, token=token)
    assert body["data"]["user"]["viewerCanResetPassword"] is False
    for mutation in (UPDATE, DISABLE, DELETE, RESET):
        assert code(await gql(mutation, {"id": admin}, token=token)) == "FORBIDDEN", mutation
    peer = to_global_id("User", world.user("A2", "Location User").id)
    assert "errors" not in await gql(RESET, {"id": peer}, token=token)
