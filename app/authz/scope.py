"""Row scope: which rows of the tree a principal may see, always as SQL filters (Q objects).

`org_q(p, path)` narrows any queryset to rows whose organization (reached through `path`) is
inside the principal's tree. An object outside scope is simply not found.
"""

from __future__ import annotations

from typing import Any

from tortoise.expressions import Q, Subquery

from app.authz.principal import Principal
from app.models.tenancy import OrgKind


def _q(**filters: Any) -> Q:
    return Q(**filters)


def _field(path: str, name: str) -> str:
    return f"{path}__{name}" if path else name


def _org_id(path: str) -> str:
    return f"{path}_id" if path else "id"


def org_q(p: Principal, path: str = "") -> Q:
    """Organizations the principal may see. `path` is the relation to an Organization."""
    if p.company_ids is not None:
        return _q(**{f"{_org_id(path)}__in": list(p.company_ids)})
    if p.organization_kind is OrgKind.PROVIDER:
        return Q()
    if p.organization_kind is OrgKind.RESELLER:
        return _q(**{_org_id(path): p.organization_id}) | _q(
            **{_field(path, "parent_id"): p.organization_id}
        )
    return _q(**{_org_id(path): p.organization_id})


def company_q(p: Principal, path: str = "") -> Q:
    return org_q(p, path) & _q(**{_field(path, "kind"): OrgKind.COMPANY.value})


def location_q(p: Principal, path: str = "") -> Q:
    """Locations in scope; `path` is the relation to a Location ("" for Location itself)."""
    q = company_q(p, _field(path, "company") if path else "company")
    if p.location_ids is not None:
        q &= _q(**{f"{_org_id(path)}__in": list(p.location_ids)})
    return q


def user_q(p: Principal) -> Q:
    """Users in scope. A location-limited principal sees only users limited *within* their
    own locations (never one limited to another location as well, never an unrestricted one);
    everyone else sees the users of the organizations in scope. Subqueries, so that the
    location join never repeats a user."""
    from app.models import User

    q = org_q(p, "organization")
    if p.location_ids is None:
        return q
    own = list(p.location_ids)
    inside = User.filter(q, scope_restricted=True, scope_locations__id__in=own).values("id")
    wider = User.filter(scope_locations__id__not_in=own).values("id")
    return Q(id__in=Subquery(inside)) & ~Q(id__in=Subquery(wider))


def job_q(p: Principal) -> Q:
    """Jobs the principal may see: of an organization in scope, and of a functionality whose
    matrix cell lets the principal read. (Jobs of no organization are the platform's own.)
    A job belongs to a company, not to a location or a computer (a file restore, a discovery
    run, a report of any of its locations): a principal limited to locations or to their own
    computers sees only the jobs they started."""
    from app.authz.matrix import Action, RoleScope

    readable = [f.value for f, cell in p.grants.items() if Action.READ in cell.actions]
    q = org_q(p, "organization") & _q(functionality__in=readable)
    if p.location_ids is not None or p.scope_kind is RoleScope.OWN_COMPUTERS:
        q &= _q(requested_by_id=p.user_id)
    return q


def tenant_account_q(p: Principal, path: str = "") -> Q:
    """Rows of tenant accounts whose company is in scope. `path` is the relation to the
    TenantAccount ("" for TenantAccount itself, "tenant_account", "resource__tenant_account").
    A subquery, so deep paths stay one SQL statement."""
    from app.models import TenantAccount

    accounts = TenantAccount.filter(company_q(p, "company")).values("id")
    return _q(**{f"{_org_id(path)}__in": Subquery(accounts)})


def own_subtenants(p: Principal) -> Subquery:
    """The ids of the Subtenant accounts of the principal (a Subtenant user has one)."""
    from app.models import Subtenant

    return Subquery(Subtenant.filter(user_id=p.user_id).values("id"))


def workload_q(
    p: Principal,
    company: str = "company_id",
    location: str = "location_id",
    subtenant: str | None = "subtenant_id",
    *,
    flat: bool = False,
) -> Q:
    """Managed workload rows (computers, servers, jobs, sessions, restore points, rollups) in
    scope: the company in the principal's tree, the principal's locations when the role is
    limited to locations, and the principal's own computers when the role's scope is
    `own_computers` (a Subtenant: computers backing up to the Subtenant's cloud account).
    Each argument is the field path to that id on the queried model; `subtenant=None`: rows
    tied to no computer (servers, discovery rules, reports), outside an own-computers scope.
    `flat`: the row holds
    the company id as a plain integer (sessions, rollups), so the companies in scope are a
    subquery rather than a join."""
    from app.models import Organization

    if flat:
        companies = Organization.filter(company_q(p)).values("id")
        q = _q(**{f"{company}__in": Subquery(companies)})
    else:
        q = company_q(p, company[: -len("_id")] if company.endswith("_id") else company)
    return q & within_q(p, location, subtenant)


def within_q(
    p: Principal, location: str = "location_id", subtenant: str | None = "subtenant_id"
) -> Q:
    """The part of a workload row's scope below the organization: the principal's locations
    when its role is limited to locations, and its own computers (its Subtenant accounts) when
    the role's scope is `own_computers`; `subtenant=None` for rows tied to no computer."""
    from app.authz.matrix import RoleScope

    q = Q()
    if p.location_ids is not None:
        q &= _q(**{f"{location}__in": list(p.location_ids)})
    if subtenant is None:
        q &= untied_rows_q(p)
    elif p.scope_kind is RoleScope.OWN_COMPUTERS:
        q &= _q(**{f"{subtenant}__in": own_subtenants(p)})
    return q


def untied_rows_q(p: Principal) -> Q:
    """Workload rows tied to no computer (servers, discovery rules, reports): none for a
    principal whose role's scope is its own computers, all (as far as the tree goes) else."""
    from app.authz.matrix import RoleScope

    return _q(id__in=[]) if p.scope_kind is RoleScope.OWN_COMPUTERS else Q()


def backup_job_q(p: Principal, kind: str = "kind", assigned: str = "assigned_by_provider") -> Q:
    """Backup jobs whose product row (by kind, and "Jobs assigned by service provider" for
    the provider's jobs in the Client Portal) lets the principal read. Combine with
    `workload_q` for the rows' scope."""
    from app.authz import capabilities, engine
    from app.authz.matrix import Action

    readable = [
        (job_kind, is_assigned)
        for (job_kind, is_assigned), cap in capabilities.BACKUP_JOBS.items()
        if engine.allows(p, cap, Action.READ)
    ]
    if not readable:
        return _q(id__in=[])
    q = Q()
    parts = [_q(**{kind: k, assigned: a}) for k, a in readable]
    q = parts[0]
    for part in parts[1:]:
        q |= part
    return q
