"""Delegation: nobody grants more than they hold (role_within, may_assign_role, may_assign_scope)."""

from __future__ import annotations

from app.authz import engine
from app.authz.capabilities import ALL, AUDIT_LOG, COMPANIES, LOCATIONS, RESELLERS, USERS
from app.authz.matrix import Action, Portal, RoleScope, load_matrix
from app.models import OrgKind
from tests.permission_cases import make_principal

P1, A1 = 401, 301
EAST, WEST = 901, 902


def role(portal: Portal, name: str):  # type: ignore[no-untyped-def]
    return load_matrix().role(portal, name)


def test_location_administrator_cannot_grant_company_administrator() -> None:
    la = make_principal(Portal.CLIENT, "Location Administrator", location_ids={EAST})
    ca = role(Portal.CLIENT, "Company Administrator")
    assert engine.role_within(ca, la) is False
    reason = engine.may_assign_role(la, ca, OrgKind.COMPANY, enterprise=False)
    assert reason is not None and "wider than your own role" in reason


def test_company_administrator_can_grant_location_user() -> None:
    ca = make_principal(Portal.CLIENT, "Company Administrator")
    lu = role(Portal.CLIENT, "Location User")
    assert engine.role_within(lu, ca) is True
    assert engine.may_assign_role(ca, lu, OrgKind.COMPANY, enterprise=False) is None
    assert engine.may_assign_scope(ca, lu, None, frozenset({EAST})) is None


def test_location_administrator_can_grant_location_user_within_their_locations() -> None:
    la = make_principal(Portal.CLIENT, "Location Administrator", location_ids={EAST})
    lu = role(Portal.CLIENT, "Location User")
    assert engine.may_assign_role(la, lu, OrgKind.COMPANY, enterprise=False) is None
    assert engine.may_assign_scope(la, lu, None, frozenset({EAST})) is None
    assert engine.may_assign_scope(la, lu, None, frozenset({EAST, WEST})) is not None
    assert engine.may_assign_scope(la, lu, None, None) is not None  # all locations


def test_nobody_grants_a_primary_role() -> None:
    for portal in Portal:
        pm = load_matrix().portals[portal]
        primary = next(r for r in pm.roles if r.primary)
        org_kind = OrgKind.RESELLER if portal is Portal.RESELLER else OrgKind.COMPANY
        enterprise = portal is Portal.ENTERPRISE
        for granter in pm.roles:
            p = make_principal(portal, granter.name)
            reason = engine.may_assign_role(p, primary, org_kind, enterprise)
            assert reason is not None and "exactly one" in reason, (portal, granter.name)
        # Not even provider staff, into a company.
        if portal is not Portal.RESELLER:
            sp = make_principal(
                Portal.RESELLER, load_matrix().portals[Portal.RESELLER].roles[0].name
            )
            assert engine.may_assign_role(sp, primary, org_kind, enterprise) is not None


def test_a_role_of_another_portal_or_edition_is_refused() -> None:
    ca = make_principal(Portal.CLIENT, "Company Administrator")
    sp_user = role(Portal.RESELLER, "Service Provider User")
    assert "does not exist" in (engine.may_assign_role(ca, sp_user, OrgKind.COMPANY, False) or "")
    dept_user = role(Portal.ENTERPRISE, "Department User")
    assert engine.may_assign_role(ca, dept_user, OrgKind.COMPANY, enterprise=False) is not None
    lu = role(Portal.CLIENT, "Location User")
    assert engine.may_assign_role(ca, lu, OrgKind.COMPANY, enterprise=True) is not None


def test_staff_may_give_company_roles_to_company_users() -> None:
    """Staff roles live in another portal: role_within does not apply across portals."""
    admin = make_principal(Portal.RESELLER, "Service Provider Administrator")
    for r in load_matrix().portals[Portal.CLIENT].roles:
        expected = None if not r.primary else "primary"
        got = engine.may_assign_role(admin, r, OrgKind.COMPANY, enterprise=False)
        assert (got is None) == (expected is None), r.name


def test_operator_limited_to_p1_cannot_widen_the_scope() -> None:
    op = make_principal(Portal.RESELLER, "Service Provider Operator", company_ids={P1})
    same = role(Portal.RESELLER, "Service Provider Operator")
    assert engine.may_assign_scope(op, same, frozenset({P1}), None) is None
    assert engine.may_assign_scope(op, same, frozenset(), None) is None
    assert engine.may_assign_scope(op, same, frozenset({P1, A1}), None) is not None
    assert engine.may_assign_scope(op, same, None, None) is not None  # unrestricted
    admin = role(Portal.RESELLER, "Service Provider Administrator")
    assert admin.scope is RoleScope.ORGANIZATION
    assert engine.may_assign_scope(op, admin, None, None) is not None


def test_unrestricted_operator_may_give_any_company_scope() -> None:
    op = make_principal(Portal.RESELLER, "Service Provider Operator")
    same = role(Portal.RESELLER, "Service Provider Operator")
    assert engine.may_assign_scope(op, same, frozenset({P1, A1}), None) is None
    assert engine.may_assign_scope(op, same, None, None) is None


def test_role_within_is_reflexive_and_the_owner_holds_every_role_of_its_portal() -> None:
    for portal in Portal:
        pm = load_matrix().portals[portal]
        owner = make_principal(portal, next(r.name for r in pm.roles if r.primary))
        for r in pm.roles:
            assert engine.role_within(r, make_principal(portal, r.name)), r.name
            assert engine.role_within(r, owner), r.name


def test_operator_cannot_grant_a_role_whose_cells_lack_its_rule() -> None:
    """Service Provider User reads Client companies without the Operator's rule: the rule of
    the outer cell must be carried by the inner one, so the grant is refused."""
    op = make_principal(Portal.RESELLER, "Service Provider Operator")
    assert engine.role_within(role(Portal.RESELLER, "Service Provider User"), op) is False
    assert engine.role_within(role(Portal.RESELLER, "Service Provider Invoice Auditor"), op) is True


def test_allows_follows_the_cells() -> None:
    """Field level: every capability × action agrees with the principal's cell (and its rule)."""
    for portal in Portal:
        pm = load_matrix().portals[portal]
        for r in pm.roles:
            p = make_principal(portal, r.name)
            for cap in ALL:
                functionality = cap.functionality_for(portal)
                cell = pm.grants(r.name).get(functionality) if functionality else None
                for action in Action:
                    expected = (
                        cap.supports(p, action) and cell is not None and action in cell.actions
                    )
                    if expected and cell is not None and cell.rule:
                        from app.authz.rules import RULES

                        expected = RULES[cell.rule].check(p, action, cap.kind, None)
                    assert engine.allows(p, cap, action) is expected, (
                        portal,
                        r.name,
                        cap.kind,
                        action,
                    )


def test_representative_allows() -> None:
    la = make_principal(Portal.CLIENT, "Location Administrator")
    assert engine.allows(la, USERS, Action.CREATE)
    assert not engine.allows(la, LOCATIONS, Action.CREATE)
    assert not engine.allows(la, COMPANIES, Action.UPDATE)
    owner = make_principal(Portal.CLIENT, "Company Owner")
    assert not engine.allows(owner, AUDIT_LOG, Action.READ)  # logs are a Reseller Portal row
    sp_user = make_principal(Portal.RESELLER, "Service Provider User")
    assert engine.allows(sp_user, COMPANIES, Action.READ)
    assert not engine.allows(sp_user, COMPANIES, Action.UPDATE)
    assert not engine.allows(sp_user, AUDIT_LOG, Action.READ)
    # Company users keep their company's info; they do not register or remove companies.
    assert engine.allows(owner, COMPANIES, Action.UPDATE)
    assert not engine.allows(owner, COMPANIES, Action.CREATE)
    assert not engine.allows(owner, COMPANIES, Action.DELETE)
    # Only the provider's unrestricted staff register or remove resellers.
    provider_admin = make_principal(Portal.RESELLER, "Service Provider Administrator")
    reseller_admin = make_principal(
        Portal.RESELLER, "Service Provider Administrator", org_kind=OrgKind.RESELLER
    )
    assert engine.allows(provider_admin, RESELLERS, Action.CREATE)
    assert not engine.allows(reseller_admin, RESELLERS, Action.CREATE)
    assert not engine.allows(reseller_admin, RESELLERS, Action.DELETE)
    assert engine.allows(reseller_admin, RESELLERS, Action.UPDATE)
