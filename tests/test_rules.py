"""Each named rule on its own, with hand-built principals and targets; and the registry."""

from __future__ import annotations

import json

import pytest
from tortoise.expressions import Q

from app.authz import engine
from app.authz.capabilities import USERS
from app.authz.matrix import MATRIX_FILE, Action, Portal, load_matrix
from app.authz.principal import Target
from app.authz.rules import (
    PROSE_RULES,
    RULES,
    nobody_acts_on_themselves_destructively,
    primary_user_is_protected,
)
from app.models import OrgKind, User
from tests.permission_cases import make_principal

ALL_ACTIONS = tuple(Action)


def _rule(name: str):  # type: ignore[no-untyped-def]
    return RULES[name]


# --- registry ------------------------------------------------------------------------------


def test_every_rule_named_in_the_file_is_registered_and_every_registered_rule_is_used() -> None:
    data = json.loads(MATRIX_FILE.read_text(encoding="utf-8"))
    named = {spec["rule"] for spec in data["cells"].values() if spec.get("rule")}
    assert named <= set(RULES), f"unregistered: {named - set(RULES)}"
    used = {
        cell.rule
        for pm in load_matrix().portals.values()
        for row in pm.rows
        for cell in row.cells.values()
        if cell.rule
    }
    assert set(RULES) == used, f"registered but used by no cell: {set(RULES) - used}"
    for name, rule in RULES.items():
        assert rule.name == name
        assert rule.description


def test_prose_rules_are_the_two_of_the_seeds() -> None:
    assert set(PROSE_RULES) == {primary_user_is_protected, nobody_acts_on_themselves_destructively}


# --- except_creation_and_removal ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["company", "reseller"])
def test_except_creation_and_removal_refuses_create_and_delete_of_companies(kind: str) -> None:
    p = make_principal(Portal.RESELLER, "Service Provider Operator")
    check = _rule("except_creation_and_removal").check
    target = Target(kind=kind, organization_id=10, organization_kind=OrgKind.COMPANY)
    for t in (None, target):
        assert check(p, Action.READ, kind, t) is True
        assert check(p, Action.UPDATE, kind, t) is True
        assert check(p, Action.CREATE, kind, t) is False
        assert check(p, Action.DELETE, kind, t) is False


def test_except_creation_and_removal_leaves_locations_to_the_operator() -> None:
    p = make_principal(Portal.RESELLER, "Service Provider Operator")
    check = _rule("except_creation_and_removal").check
    for action in ALL_ACTIONS:
        assert check(p, action, "location", None) is True
        assert check(p, action, "location", Target(kind="location", organization_id=10)) is True


def test_except_creation_and_removal_through_the_engine() -> None:
    from app.authz.capabilities import COMPANIES, LOCATIONS

    p = make_principal(Portal.RESELLER, "Service Provider Operator")
    assert [a for a in ALL_ACTIONS if engine.allows(p, COMPANIES, a)] == [
        Action.READ,
        Action.UPDATE,
    ]
    assert all(engine.allows(p, LOCATIONS, a) for a in ALL_ACTIONS)
    assert engine.rule_filter(p, COMPANIES) is None  # a check, not a row filter


# --- only_managed_companies_users ---------------------------------------------------------


def test_only_managed_companies_users_check() -> None:
    p = make_principal(Portal.RESELLER, "Service Provider Operator")
    check = _rule("only_managed_companies_users").check
    for action in ALL_ACTIONS:
        assert check(p, action, "user", None) is True
        company_user = Target(kind="user", organization_id=5, organization_kind=OrgKind.COMPANY)
        assert check(p, action, "user", company_user) is True
        for kind in (OrgKind.PROVIDER, OrgKind.RESELLER):
            staff = Target(kind="user", organization_id=1, organization_kind=kind)
            assert check(p, action, "user", staff) is False
        # Configuration tasks other than users (company info, locations): nothing.
        assert check(p, action, "company", None) is False
        assert check(p, action, "location", None) is False


def test_only_managed_companies_users_filter() -> None:
    p = make_principal(Portal.RESELLER, "Service Provider Operator")
    f = _rule("only_managed_companies_users").filter
    assert f is not None
    assert f(p, "user") == Q(organization__kind=OrgKind.COMPANY.value)
    assert f(p, "company") is None
    assert engine.rule_filter(p, USERS) == Q(organization__kind=OrgKind.COMPANY.value)


async def test_only_managed_companies_users_filter_in_sql(world) -> None:
    p = make_principal(Portal.RESELLER, "Service Provider Operator")
    q = engine.rule_filter(p, USERS)
    rows = await User.filter(q).select_related("organization")
    assert rows, "the world has company users"
    assert {u.organization.kind for u in rows} == {OrgKind.COMPANY}
    expected = await User.filter(organization__kind=OrgKind.COMPANY.value).count()
    assert len(rows) == expected < await User.all().count()


# --- only_portal_users --------------------------------------------------------------------


def test_only_portal_users() -> None:
    p = make_principal(Portal.CLIENT, "Location Administrator")
    check = _rule("only_portal_users").check
    assert _rule("only_portal_users").filter is None
    for action in ALL_ACTIONS:
        assert check(p, action, "user", None) is True
        assert check(p, action, "user", Target(kind="user", organization_id=5)) is True
        # Locations and company info are readable, never created, modified or removed.
        readable = action is Action.READ
        assert check(p, action, "location", None) is readable
        assert check(p, action, "company", None) is readable
        assert check(p, action, "reseller", None) is False


# --- only_generated_invoices --------------------------------------------------------------


def test_only_generated_invoices() -> None:
    p = make_principal(Portal.RESELLER, "Service Provider Invoice Auditor")
    rule = _rule("only_generated_invoices")
    for action in ALL_ACTIONS:
        assert rule.check(p, action, "invoice", None) is True
        assert rule.check(p, action, "invoice", Target(kind="invoice", generated=True)) is True
        assert rule.check(p, action, "invoice", Target(kind="invoice", generated=False)) is False
        assert rule.check(p, action, "invoice", Target(kind="invoice")) is False
        assert rule.check(p, action, "company", None) is False
    assert rule.filter is not None
    assert rule.filter(p, "invoice") == Q(generated=True)
    assert rule.filter(p, "company") is None


# --- subtenant_own_computers --------------------------------------------------------------


@pytest.mark.parametrize("portal", [Portal.CLIENT, Portal.ENTERPRISE])
def test_subtenant_own_computers(portal: Portal, db: None) -> None:
    p = make_principal(portal, "Subtenant", user_id=42)
    rule = _rule("subtenant_own_computers")
    for action in ALL_ACTIONS:
        assert rule.check(p, action, "computer", None) is True
        assert (
            rule.check(p, action, "computer", Target(kind="computer", subtenant_user_id=42)) is True
        )
        assert (
            rule.check(p, action, "computer", Target(kind="computer", subtenant_user_id=7)) is False
        )
        assert rule.check(p, action, "computer", Target(kind="computer")) is False
    assert rule.filter is not None
    from app.models import ManagedComputer

    sql = ManagedComputer.filter(rule.filter(p, "computer")).sql()
    assert 'WHERE "subtenant_id" IN (SELECT "id" "id" FROM "subtenants" WHERE "user_id"=' in sql


# --- prose rules --------------------------------------------------------------------------

ORG = 30  # a company
PARENT = 20  # its reseller


def _owner_target(user_id: int = 1, org: int = ORG) -> Target:
    return Target(
        kind="user",
        organization_id=org,
        organization_kind=OrgKind.COMPANY,
        user_id=user_id,
        role=load_matrix().portals[Portal.CLIENT].roles[0].name,
        primary=True,
    )


def _primary_role(portal: Portal) -> str:
    return next(r.name for r in load_matrix().portals[portal].roles if r.primary)


def _non_primary_with_full_configuration(portal: Portal) -> str:
    from app.authz.matrix import Functionality

    pm = load_matrix().portals[portal]
    return next(
        r.name
        for r in pm.roles
        if not r.primary
        and set(pm.grants(r.name)[Functionality.CONFIGURATION].actions) == set(Action)
        and pm.grants(r.name)[Functionality.CONFIGURATION].rule is None
    )


def test_admin_of_the_same_organization_cannot_update_or_delete_the_owner() -> None:
    admin = make_principal(
        Portal.CLIENT, _non_primary_with_full_configuration(Portal.CLIENT), user_id=2, org=ORG
    )
    owner = _owner_target(user_id=1)
    assert primary_user_is_protected(admin, Action.READ, "user", owner) is True
    assert primary_user_is_protected(admin, Action.UPDATE, "user", owner) is False
    assert primary_user_is_protected(admin, Action.DELETE, "user", owner) is False
    # ...and through the engine, whose cell alone would allow it.
    assert engine.allows(admin, USERS, Action.UPDATE)
    assert engine.can(admin, USERS, Action.UPDATE, owner) is False
    assert engine.can(admin, USERS, Action.DELETE, owner) is False
    assert engine.can(admin, USERS, Action.READ, owner) is True


def test_owner_can_update_but_not_delete_themselves() -> None:
    owner_p = make_principal(Portal.CLIENT, _primary_role(Portal.CLIENT), user_id=1, org=ORG)
    me = _owner_target(user_id=1)
    assert primary_user_is_protected(owner_p, Action.UPDATE, "user", me) is True
    assert primary_user_is_protected(owner_p, Action.DELETE, "user", me) is False
    assert engine.can(owner_p, USERS, Action.UPDATE, me) is True
    assert engine.can(owner_p, USERS, Action.DELETE, me) is False


def test_staff_of_the_parent_organization_can_update_but_not_delete_the_owner() -> None:
    staff = make_principal(
        Portal.RESELLER,
        _non_primary_with_full_configuration(Portal.RESELLER),
        user_id=9,
        org=PARENT,
        org_kind=OrgKind.RESELLER,
    )
    owner = _owner_target(user_id=1)
    assert primary_user_is_protected(staff, Action.UPDATE, "user", owner) is True
    assert primary_user_is_protected(staff, Action.DELETE, "user", owner) is False
    assert engine.can(staff, USERS, Action.UPDATE, owner) is True
    assert engine.can(staff, USERS, Action.DELETE, owner) is False


def test_primary_rule_leaves_other_users_and_kinds_alone() -> None:
    admin = make_principal(
        Portal.CLIENT, _non_primary_with_full_configuration(Portal.CLIENT), user_id=2, org=ORG
    )
    colleague = Target(
        kind="user", organization_id=ORG, organization_kind=OrgKind.COMPANY, user_id=3
    )
    for action in ALL_ACTIONS:
        assert primary_user_is_protected(admin, action, "user", colleague) is True
        # A company (kind) is never "the primary user", whatever the flag.
        company = Target(kind="company", organization_id=ORG, primary=True)
        assert primary_user_is_protected(admin, action, "company", company) is True


def test_nobody_deletes_themselves() -> None:
    for portal in Portal:
        for role in load_matrix().portals[portal].roles:
            p = make_principal(portal, role.name, user_id=5, org=ORG)
            me = Target(
                kind="user", organization_id=ORG, organization_kind=OrgKind.COMPANY, user_id=5
            )
            other = Target(
                kind="user", organization_id=ORG, organization_kind=OrgKind.COMPANY, user_id=6
            )
            assert nobody_acts_on_themselves_destructively(p, Action.DELETE, "user", me) is False
            assert nobody_acts_on_themselves_destructively(p, Action.DELETE, "user", other) is True
            for action in (Action.READ, Action.UPDATE, Action.CREATE):
                assert nobody_acts_on_themselves_destructively(p, action, "user", me) is True
            assert engine.can(p, USERS, Action.DELETE, me) is False
