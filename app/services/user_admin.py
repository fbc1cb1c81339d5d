"""Portal user management ("portal users" of Configuration tasks) with the seeds' prose rules.

Every operation follows the same order: scoped fetch (NOT_FOUND outside scope), engine checks
(FORBIDDEN), input checks (BAD_USER_INPUT / CONFLICT), then the change inside `audited(...)`.
Role properties (primary, scope kind) come from the matrix, never from role names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.expressions import Q

from app.auth.passwords import check_policy, hash_password
from app.authz import engine, scope
from app.authz.capabilities import USERS
from app.authz.matrix import Action, Role, RoleScope, load_matrix
from app.authz.principal import Principal, Target
from app.errors import BadInput, Conflict, Forbidden, NotFound
from app.models import Location, Organization, OrgKind, User
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.sessions import revoke_user_sessions
from app.services.tenancy import org_in_scope
from app.services.users import NewUser, create_user_row, normalize_email, user_target
from app.settings import get_settings

# --- roles -------------------------------------------------------------------------------


def org_role(org_kind: OrgKind, name: str) -> Role | None:
    """The role called `name` for users of an organization of `org_kind` in this edition."""
    portal = engine.portal_for(org_kind, get_settings().enterprise)
    try:
        return load_matrix().role(portal, name)
    except KeyError:
        return None


def is_primary(user: User, org: Organization) -> bool:
    role = org_role(org.kind, user.role)
    return bool(role and role.primary)


def target_of(user: User, org: Organization) -> Target:
    return user_target(user, org, is_primary(user, org))


def viewer_can(p: Principal, action: Action, user: User, org: Organization) -> bool:
    """The same answer the mutations give, without raising (for `viewerCan*` fields)."""
    return engine.can(p, USERS, action, target_of(user, org))


# --- scope -------------------------------------------------------------------------------


def visible_users_q(p: Principal) -> Q:
    """Users in the principal's scope (scope.user_q), narrowed by the cell's rule in SQL."""
    q = scope.user_q(p)
    rule = engine.rule_filter(p, USERS)
    return q if rule is None else q & rule


async def user_in_scope(p: Principal, user_id: int) -> User:
    user = await User.filter(visible_users_q(p), id=user_id).select_related("organization").first()
    if user is None:
        raise NotFound("user")
    return user


# --- scope ids of a new or changed user ---------------------------------------------------


@dataclass(frozen=True)
class ScopeChoice:
    """None: the whole organization (unrestricted); a set: only these companies/locations."""

    company_ids: frozenset[int] | None = None
    location_ids: frozenset[int] | None = None

    @property
    def restricted(self) -> bool:
        return self.company_ids is not None or self.location_ids is not None


def _org_companies_q(org: Organization) -> Q:
    """Companies below `org` (its tree): all for the provider, its own for a reseller."""
    company = Q(kind=OrgKind.COMPANY.value)
    if org.kind is OrgKind.PROVIDER:
        return company
    return company & Q(parent_id=org.id)


async def choose_scope(
    p: Principal,
    org: Organization,
    role: Role,
    company_ids: list[int] | None,
    location_ids: list[int] | None,
) -> ScopeChoice:
    """Validate the ids for `role` in `org`; nothing wider than the caller's own scope."""
    if company_ids is not None and role.scope is not RoleScope.COMPANIES:
        raise BadInput(f"the role {role.name!r} is not limited to companies", field="companyIds")
    if location_ids is not None and role.scope is not RoleScope.LOCATIONS:
        raise BadInput(f"the role {role.name!r} is not limited to locations", field="locationIds")
    choice = ScopeChoice()
    if company_ids is not None:
        wanted = frozenset(company_ids)
        if not wanted:
            raise BadInput("name at least one company, or null for all", field="companyIds")
        found = await Organization.filter(
            _org_companies_q(org), scope.company_q(p), id__in=list(wanted)
        ).count()
        if found != len(wanted):
            raise BadInput("every company must belong to the organization", field="companyIds")
        choice = ScopeChoice(company_ids=wanted)
    if location_ids is not None:
        wanted = frozenset(location_ids)
        if not wanted:
            raise BadInput("name at least one location, or null for all", field="locationIds")
        found = await Location.filter(company_id=org.id, id__in=list(wanted)).count()
        if found != len(wanted):
            raise BadInput("every location must belong to the company", field="locationIds")
        choice = ScopeChoice(location_ids=wanted)
    # Staff creating users of a company below them: the company is in their scope (checked by
    # the scoped fetch of the organization) and so is everything inside it. Among peers of one
    # portal, nobody grants a scope wider than their own.
    reason = engine.may_assign_scope(p, role, choice.company_ids, choice.location_ids)
    if reason:
        raise Forbidden(reason)
    return choice


async def _apply_scope(user: User, choice: ScopeChoice) -> None:
    await user.scope_companies.clear()
    await user.scope_locations.clear()
    if choice.company_ids:
        await user.scope_companies.add(*await Organization.filter(id__in=list(choice.company_ids)))
    if choice.location_ids:
        await user.scope_locations.add(*await Location.filter(id__in=list(choice.location_ids)))


def _check_role(p: Principal, org: Organization, role_name: str) -> Role:
    role = org_role(org.kind, role_name.strip())
    if role is None:
        raise BadInput(
            f"there is no role {role_name!r} for a {org.kind.value.lower()} in this edition",
            field="role",
        )
    reason = engine.may_assign_role(p, role, org.kind, get_settings().enterprise)
    if reason:
        raise Forbidden(reason)
    return role


def _audit_scope(choice: ScopeChoice) -> dict[str, list[int] | None]:
    return {
        "companyIds": sorted(choice.company_ids) if choice.company_ids is not None else None,
        "locationIds": sorted(choice.location_ids) if choice.location_ids is not None else None,
    }


# --- operations --------------------------------------------------------------------------


async def create_user(
    actor: Actor,
    org_id: int,
    org_kind: OrgKind,
    new: NewUser,
    role_name: str,
    company_ids: list[int] | None = None,
    location_ids: list[int] | None = None,
) -> User:
    p = actor.p
    require(p, USERS, Action.CREATE)
    org = await org_in_scope(p, org_id, org_kind)
    require(
        p,
        USERS,
        Action.CREATE,
        Target(kind="user", organization_id=org.id, organization_kind=org.kind),
    )
    role = _check_role(p, org, role_name)
    choice = await choose_scope(p, org, role, company_ids, location_ids)
    async with audited(actor, "userCreate", "User", organization_id=org.id) as entry:
        user = await create_user_row(org, new, role.name, scope_restricted=choice.restricted)
        await _apply_scope(user, choice)
        entry.bind(user.id, email=user.email, role=role.name)
        entry.details.update(_audit_scope(choice))
    user.organization = org
    return user


async def _managed(p: Principal, user_id: int, action: Action) -> tuple[User, Organization]:
    """A user in scope that the principal may act on: NOT_FOUND, then FORBIDDEN."""
    user = await user_in_scope(p, user_id)
    org = user.organization
    require(p, USERS, action, target_of(user, org))
    return user, org


async def _current_scope(user: User) -> ScopeChoice:
    if not user.scope_restricted:
        return ScopeChoice()
    companies: list[int] = list(await user.scope_companies.all().values_list("id", flat=True))  # type: ignore[arg-type]
    locations: list[int] = list(await user.scope_locations.all().values_list("id", flat=True))  # type: ignore[arg-type]
    return ScopeChoice(
        company_ids=frozenset(companies) if companies else None,
        location_ids=frozenset(locations) if locations else None,
    )


async def update_user(
    actor: Actor,
    user_id: int,
    *,
    name: str | None = None,
    email: str | None = None,
    role_name: str | None = None,
    company_ids: list[int] | None = None,
    location_ids: list[int] | None = None,
    scope_all: bool | None = None,
) -> User:
    p = actor.p
    user, org = await _managed(p, user_id, Action.UPDATE)
    old_role = org_role(org.kind, user.role)
    changes: dict[str, object] = {}

    role = old_role
    if role_name is not None and role_name.strip() != user.role:
        if old_role is not None and old_role.primary:
            raise Forbidden("the role of the primary user cannot change")
        if user.id == p.user_id:
            raise Forbidden("you cannot change your own role")
        role = _check_role(p, org, role_name)
        changes["role"] = {"old": user.role, "new": role.name}
    if role is None:
        raise BadInput("the user's role does not exist in this edition; give a role", field="role")

    scope_given = company_ids is not None or location_ids is not None
    if scope_all and scope_given:
        raise BadInput("give either scopeAll or the ids, not both", field="scopeAll")
    new_scope: ScopeChoice | None = None
    if scope_all or scope_given or role != old_role:
        if scope_given:
            new_scope = await choose_scope(p, org, role, company_ids, location_ids)
        elif scope_all or old_role is None or role.scope is not old_role.scope:
            # The restriction goes with a change of scope kind (a location limit means nothing
            # for a role that sees the whole organization).
            new_scope = await choose_scope(p, org, role, None, None)
        else:
            current = await _current_scope(user)
            new_scope = await choose_scope(
                p,
                org,
                role,
                sorted(current.company_ids) if current.company_ids is not None else None,
                sorted(current.location_ids) if current.location_ids is not None else None,
            )

    if name is not None:
        clean = name.strip()
        if not clean:
            raise BadInput("a name is required", field="name")
        if len(clean) > 200:
            raise BadInput("the name is longer than 200 characters", field="name")
        changes["name"] = clean
    new_email = normalize_email(email) if email is not None else None

    async with audited(actor, "userUpdate", "User", user.id, org.id) as entry:
        if new_email is not None and new_email != user.email:
            if await User.filter(email=new_email).exclude(id=user.id).exists():
                raise Conflict("a user with this e-mail address already exists", field="email")
            changes["email"] = {"old": user.email, "new": new_email}
            user.email = new_email
        if "name" in changes:
            user.name = str(changes["name"])
        if role != old_role:
            user.role = role.name
        if new_scope is not None:
            user.scope_restricted = new_scope.restricted
            await _apply_scope(user, new_scope)
            changes["scope"] = _audit_scope(new_scope)
        await user.save()
        entry.details.update(changes)
    return user


async def set_user_enabled(actor: Actor, user_id: int, enabled: bool) -> User:
    p = actor.p
    user, org = await _managed(p, user_id, Action.UPDATE)
    if user.id == p.user_id:
        raise BadInput("you cannot disable or enable your own account", field="id")
    action = "userEnable" if enabled else "userDisable"
    async with audited(actor, action, "User", user.id, org.id) as entry:
        user.enabled = enabled
        await user.save(update_fields=["enabled", "updated_at"])
        entry.details["email"] = user.email
        if not enabled:
            entry.details["sessionsRevoked"] = await revoke_user_sessions(user.id)
    return user


async def delete_user(actor: Actor, user_id: int) -> int:
    p = actor.p
    user, org = await _managed(p, user_id, Action.DELETE)
    async with audited(actor, "userDelete", "User", user.id, org.id) as entry:
        await user.scope_companies.clear()
        await user.scope_locations.clear()
        await user.delete()
        entry.details.update(email=user.email, role=user.role)
    return user_id


async def reset_password(actor: Actor, user_id: int, new_password: str) -> User:
    """An administrator sets another user's password; that user's sessions end."""
    p = actor.p
    user, org = await _managed(p, user_id, Action.UPDATE)
    if user.id == p.user_id:
        raise BadInput("change your own password with your current one", field="id")
    check_policy(new_password, user.email, "newPassword")
    password_hash = await asyncio.to_thread(hash_password, new_password)
    async with audited(actor, "userPasswordReset", "User", user.id, org.id) as entry:
        user.password_hash = password_hash
        user.password_changed_at = datetime.now(UTC)
        await user.save(update_fields=["password_hash", "password_changed_at", "updated_at"])
        entry.details["sessionsRevoked"] = await revoke_user_sessions(user.id)
    return user
