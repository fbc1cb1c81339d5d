"""The one engine: may this principal do this action on this kind of object, on this object?

Field level (`allows`): the principal's matrix row and the cell's rule, no object.
Object level (`can`): the same, then the rule and the prose rules on the object's facts.
Row scope (is the object in the principal's tree at all) is applied in SQL by `scope`.
"""

from __future__ import annotations

from app.authz.capabilities import Capability
from app.authz.matrix import Action, Cell, Functionality, Portal, Role, RoleScope, load_matrix
from app.authz.principal import Principal, Target
from app.authz.rules import PROSE_RULES, RULES
from app.models.tenancy import OrgKind


def _cell(principal: Principal, capability: Capability) -> Cell | None:
    functionality = capability.functionality_for(principal.portal)
    return principal.cell(functionality) if functionality else None


def allows(principal: Principal, capability: Capability, action: Action) -> bool:
    if not capability.supports(principal, action):
        return False
    cell = _cell(principal, capability)
    if cell is None or action not in cell.actions:
        return False
    if cell.rule is not None:
        return RULES[cell.rule].check(principal, action, capability.kind, None)
    return True


def can(principal: Principal, capability: Capability, action: Action, target: Target) -> bool:
    if not capability.supports(principal, action):
        return False
    cell = _cell(principal, capability)
    if cell is None or action not in cell.actions:
        return False
    if cell.rule is not None and not RULES[cell.rule].check(
        principal, action, capability.kind, target
    ):
        return False
    if not all(rule(principal, action, capability.kind, target) for rule in PROSE_RULES):
        return False
    return not _manages_wider_peer(principal, action, capability.kind, target)


def _manages_wider_peer(principal: Principal, action: Action, kind: str, t: Target) -> bool:
    """Nobody manages a peer of their own organization whose role is wider than their own
    (resetting that peer's password would hand over the wider role). Staff of a parent
    organization manage the users below them; the primary user is the prose rules' business."""
    if kind != "user" or action is Action.READ or t.primary or t.role is None:
        return False
    if t.organization_id != principal.organization_id or t.user_id == principal.user_id:
        return False
    try:
        role = load_matrix().role(principal.portal, t.role)
    except KeyError:
        return False
    return not role_within(role, principal)


def allows_on_functionality(principal: Principal, functionality: str, action: Action) -> bool:
    """For objects that belong to a functionality rather than an object kind (jobs): the
    principal's cell for it grants the action. Rows are already in scope (scope.job_q)."""
    try:
        cell = principal.cell(Functionality(functionality))
    except ValueError:
        return False
    return cell is not None and action in cell.actions


def rule_filter(principal: Principal, capability: Capability):  # -> Q | None
    cell = _cell(principal, capability)
    if cell is None or cell.rule is None:
        return None
    rule = RULES[cell.rule]
    return rule.filter(principal, capability.kind) if rule.filter else None


def portal_for(org_kind: OrgKind, enterprise: bool) -> Portal:
    if org_kind is not OrgKind.COMPANY:
        return Portal.RESELLER
    return Portal.ENTERPRISE if enterprise else Portal.CLIENT


def grants_for(role: Role) -> dict[Functionality, Cell]:
    return load_matrix().portals[role.portal].grants(role.name)


def _cell_within(inner: Cell, outer: Cell | None) -> bool:
    if not inner.actions:
        return True
    if outer is None or not inner.actions <= outer.actions:
        return False
    return outer.rule is None or inner.rule == outer.rule


def role_within(role: Role, principal: Principal) -> bool:
    """True when every cell of `role` grants no more than the principal's own cells."""
    return all(_cell_within(cell, principal.cell(key)) for key, cell in grants_for(role).items())


def may_assign_role(
    principal: Principal, role: Role, org_kind: OrgKind, enterprise: bool
) -> str | None:
    """None when the principal may give `role` to a user of an organization of `org_kind`;
    otherwise the reason (for a FORBIDDEN or BAD_USER_INPUT error)."""
    if role.portal is not portal_for(org_kind, enterprise):
        return f"the role {role.name!r} does not exist for a {org_kind.value.lower()}"
    if role.primary:
        return f"there is exactly one {role.name}, created with the organization"
    if role.portal is principal.portal and not role_within(role, principal):
        return f"the role {role.name!r} is wider than your own role ({principal.role.name})"
    return None


def may_assign_scope(
    principal: Principal,
    role: Role,
    company_ids: frozenset[int] | None,
    location_ids: frozenset[int] | None,
) -> str | None:
    """Nobody grants a scope wider than their own. Staff giving a company role to a user of a
    company in their scope compare nothing: the company is already inside their scope."""
    if role.portal is not principal.portal:
        return None
    if role.scope is RoleScope.COMPANIES and principal.company_ids is not None:
        if company_ids is None or not company_ids <= principal.company_ids:
            return "the scope includes companies outside your own scope"
    if role.scope is RoleScope.LOCATIONS and principal.location_ids is not None:
        if location_ids is None or not location_ids <= principal.location_ids:
            return "the scope includes locations outside your own scope"
    if role.scope is RoleScope.ORGANIZATION and (
        principal.company_ids is not None or principal.location_ids is not None
    ):
        return f"the role {role.name!r} sees the whole organization, wider than your scope"
    return None
