"""The tenant tree: resellers, companies, locations; enable/disable cascade; removal rules."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.expressions import Subquery

from app.authz import scope
from app.authz.capabilities import COMPANIES, LOCATIONS, PROVIDER, RESELLERS, Capability
from app.authz.matrix import Action, load_matrix
from app.authz.principal import Principal, Target
from app.db import column
from app.errors import BadInput, Conflict, Forbidden, NotFound
from app.models import Location, Organization, OrgKind, SessionToken, TenantAccount, User
from app.services import remote
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.users import NewUser, create_user_row
from app.settings import get_settings

DEFAULT_LOCATION_NAME = "Default location"


def capability_for(org: Organization) -> Capability:
    return {OrgKind.PROVIDER: PROVIDER, OrgKind.RESELLER: RESELLERS}.get(org.kind, COMPANIES)


def org_target(org: Organization) -> Target:
    return Target(kind=capability_for(org).kind, organization_id=org.id, organization_kind=org.kind)


def location_target(loc: Location) -> Target:
    return Target(kind="location", organization_id=loc.company_id)  # type: ignore[attr-defined]


def _clean_name(name: str, field: str = "name") -> str:
    name = name.strip()
    if not name:
        raise BadInput("a name is required", field=field)
    if len(name) > 200:
        raise BadInput("the name is longer than 200 characters", field=field)
    return name


async def provider() -> Organization:
    root = await Organization.filter(kind=OrgKind.PROVIDER.value).first()
    if root is None:
        raise NotFound("service provider (run `tenantry bootstrap`)")
    return root


async def org_in_scope(p: Principal, org_id: int, kind: OrgKind | None = None) -> Organization:
    query = Organization.filter(scope.org_q(p), id=org_id)
    if kind is not None:
        query = query.filter(kind=kind.value)
    org = await query.first()
    if org is None:
        raise NotFound(kind.value.lower() if kind else "organization")
    return org


async def location_in_scope(p: Principal, location_id: int) -> Location:
    loc = await Location.filter(scope.location_q(p), id=location_id).first()
    if loc is None:
        raise NotFound("location")
    return loc


def _primary_role(portal_org_kind: OrgKind) -> str:
    from app.authz.engine import portal_for

    portal = portal_for(portal_org_kind, get_settings().enterprise)
    return next(r.name for r in load_matrix().portals[portal].roles if r.primary)


async def _check_unique_name(
    parent_id: int | None, name: str, exclude_id: int | None = None
) -> None:
    query = Organization.filter(parent_id=parent_id, name=name)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise Conflict("an organization with this name already exists here", field="name")


async def register_reseller(actor: Actor, name: str, email: str, admin: NewUser) -> Organization:
    p = actor.p
    require(p, RESELLERS, Action.CREATE)
    root = await provider()
    name = _clean_name(name)
    async with audited(actor, "resellerCreate", "Reseller", organization_id=root.id) as entry:
        await _check_unique_name(root.id, name)
        reseller = await Organization.create(
            kind=OrgKind.RESELLER, name=name, parent=root, email=email.strip()
        )
        admin_user = await create_user_row(
            reseller, admin, _primary_role(OrgKind.RESELLER), field_prefix="admin."
        )
        entry.bind(reseller.id, organization_id=reseller.id, name=name, admin=admin_user.email)
    return reseller


async def register_company(
    actor: Actor,
    name: str,
    email: str,
    owner: NewUser,
    parent_id: int | None = None,
    default_location_name: str = DEFAULT_LOCATION_NAME,
) -> Organization:
    p = actor.p
    require(p, COMPANIES, Action.CREATE)
    if parent_id is None:
        parent_id = p.organization_id
    parent = await org_in_scope(p, parent_id)
    if parent.kind is OrgKind.COMPANY:
        raise BadInput("a company belongs to the provider or to a reseller", field="resellerId")
    name = _clean_name(name)
    async with audited(actor, "companyCreate", "Company", organization_id=parent.id) as entry:
        await _check_unique_name(parent.id, name)
        company = await Organization.create(
            kind=OrgKind.COMPANY, name=name, parent=parent, email=email.strip()
        )
        await Location.create(
            company=company,
            name=_clean_name(default_location_name, "defaultLocationName"),
            is_default=True,
        )
        owner_user = await create_user_row(
            company, owner, _primary_role(OrgKind.COMPANY), field_prefix="owner."
        )
        entry.bind(
            company.id,
            organization_id=company.id,
            name=name,
            owner=owner_user.email,
            parent=parent.id,
        )
    return company


async def update_organization(
    actor: Actor, org_id: int, kind: OrgKind, name: str | None = None, email: str | None = None
) -> Organization:
    p = actor.p
    org = await org_in_scope(p, org_id, kind)
    require(p, capability_for(org), Action.UPDATE, org_target(org))
    action = "resellerUpdate" if kind is OrgKind.RESELLER else "companyUpdate"
    async with audited(actor, action, kind.value.title(), org.id, org.id) as entry:
        changes: dict[str, str] = {}
        if name is not None:
            org.name = _clean_name(name)
            await _check_unique_name(org.parent_id, org.name, exclude_id=org.id)  # type: ignore[attr-defined]
            changes["name"] = org.name
        if email is not None:
            org.email = email.strip()
            changes["email"] = org.email
        await org.save()
        entry.details.update(changes)
    return org


async def _subtree_ids(org: Organization) -> list[int]:
    if org.kind is OrgKind.RESELLER:
        return [org.id, *await column(Organization.filter(parent_id=org.id), "id")]
    return [org.id]


async def revoke_sessions_of_orgs(org_ids: list[int]) -> int:
    users = Subquery(User.filter(organization_id__in=org_ids).values("id"))
    return await SessionToken.filter(user_id__in=users, revoked_at=None).update(
        revoked_at=datetime.now(UTC)
    )


async def set_organization_enabled(
    actor: Actor, org_id: int, kind: OrgKind, enabled: bool
) -> Organization:
    """Disabling cascades: the organization and everything under it stop working (users can't
    log in, sessions end). Re-enabling restores the organization's own switch; companies of a
    disabled reseller stay off until the reseller is enabled again."""
    p = actor.p
    org = await org_in_scope(p, org_id, kind)
    require(p, capability_for(org), Action.UPDATE, org_target(org))
    if org.id == p.organization_id:
        raise Forbidden("you cannot disable or enable your own organization")
    verb = "Enable" if enabled else "Disable"
    action = ("reseller" if kind is OrgKind.RESELLER else "company") + verb
    async with audited(actor, action, kind.value.title(), org.id, org.id) as entry:
        org.enabled = enabled
        await org.save(update_fields=["enabled", "updated_at"])
        if not enabled:
            subtree = await _subtree_ids(org)
            entry.details["sessionsRevoked"] = await revoke_sessions_of_orgs(subtree)
            # Tenant accounts of a disabled organization stop working: their open remote
            # connections end with it.
            closed = 0
            for account_id in await column(TenantAccount.filter(company_id__in=subtree), "id"):
                closed += await remote.close_sessions_for_tenant(
                    account_id, "organization disabled", actor
                )
            entry.details["remoteSessionsClosed"] = closed
            # Their running failover work ends too (at the next step boundary).
            from app.services import failover_runs

            entry.details.update(
                await failover_runs.terminate("organization disabled", company_ids=subtree)
            )
            # Their alarms resolve, whichever portal's template raised them.
            from app.alarms.resolution import resolve_for_organizations

            resolved = await resolve_for_organizations(subtree, "organization disabled")
            entry.details["alarmsResolved"] = len(resolved.changed)
    if not enabled:
        from app.alarms.changes import publish

        await publish(resolved)
    return org


async def delete_reseller(actor: Actor, reseller_id: int) -> int:
    """The reseller's companies move to the provider; its own users go with it."""
    p = actor.p
    reseller = await org_in_scope(p, reseller_id, OrgKind.RESELLER)
    require(p, RESELLERS, Action.DELETE, org_target(reseller))
    root = await provider()
    async with audited(actor, "resellerDelete", "Reseller", reseller.id, root.id) as entry:
        companies = await column(Organization.filter(parent_id=reseller.id), "name")
        clash = await column(Organization.filter(parent_id=root.id, name__in=companies), "name")
        if clash:
            raise Conflict(
                "companies of this reseller have the same name as companies of the provider: "
                + ", ".join(sorted(clash))
            )
        moved = await Organization.filter(parent_id=reseller.id).update(parent_id=root.id)
        await User.filter(organization_id=reseller.id).delete()
        await reseller.delete()
        entry.details.update(name=reseller.name, companiesMoved=moved)
    return reseller_id


async def delete_company(actor: Actor, company_id: int) -> int:
    """Everything that belongs to the company goes with it, in one transaction."""
    p = actor.p
    company = await org_in_scope(p, company_id, OrgKind.COMPANY)
    require(p, COMPANIES, Action.DELETE, org_target(company))
    if company.id == p.organization_id:
        raise Forbidden("you cannot remove your own company")
    parent_id = company.parent_id  # type: ignore[attr-defined]
    async with audited(actor, "companyDelete", "Company", company.id, parent_id) as entry:
        await User.filter(organization_id=company.id).delete()
        await Location.filter(company_id=company.id).delete()
        await company.delete()
        entry.details["name"] = company.name
    return company_id


async def create_location(actor: Actor, company_id: int, name: str) -> Location:
    p = actor.p
    require(p, LOCATIONS, Action.CREATE)
    company = await org_in_scope(p, company_id, OrgKind.COMPANY)
    require(p, LOCATIONS, Action.CREATE, Target(kind="location", organization_id=company.id))
    name = _clean_name(name)
    async with audited(actor, "locationCreate", "Location", organization_id=company.id) as entry:
        if await Location.filter(company_id=company.id, name=name).exists():
            raise Conflict("this company already has a location with this name", field="name")
        loc = await Location.create(company=company, name=name)
        entry.bind(loc.id, name=name)
    return loc


async def update_location(actor: Actor, location_id: int, name: str) -> Location:
    p = actor.p
    loc = await location_in_scope(p, location_id)
    require(p, LOCATIONS, Action.UPDATE, location_target(loc))
    name = _clean_name(name)
    company_id = loc.company_id  # type: ignore[attr-defined]
    async with audited(actor, "locationUpdate", "Location", loc.id, company_id) as entry:
        if await Location.filter(company_id=company_id, name=name).exclude(id=loc.id).exists():
            raise Conflict("this company already has a location with this name", field="name")
        entry.details.update(old=loc.name, new=name)
        loc.name = name
        await loc.save()
    return loc


# Later domains (inventory) register checks that refuse removing a location still in use.
LOCATION_IN_USE_CHECKS: list = []


async def delete_location(actor: Actor, location_id: int) -> int:
    p = actor.p
    loc = await location_in_scope(p, location_id)
    require(p, LOCATIONS, Action.DELETE, location_target(loc))
    if loc.is_default:
        raise BadInput("the default location of a company cannot be removed", field="id")
    company_id = loc.company_id  # type: ignore[attr-defined]
    async with audited(actor, "locationDelete", "Location", loc.id, company_id) as entry:
        users = await User.filter(scope_locations__id=loc.id).count()
        if users:
            raise Conflict(
                f"the location still has {users} user(s) limited to it; change their scope first",
                users=users,
            )
        for check in LOCATION_IN_USE_CHECKS:
            reason = await check(loc)
            if reason:
                raise Conflict(reason)
        await loc.delete()
        entry.details["name"] = loc.name
    return location_id
