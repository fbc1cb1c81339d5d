"""Cloud failover plans (seed 000): built by the tenant's company from its VM replicas, run by
the provider on the tenant's request (the executor lives in app/services/failover_runs.py).

Scope: a plan belongs to a company, not to a location: every principal whose tree holds the
company sees the company's plans, location-limited ones included (a failover plan is a whole
site's recovery). Principals whose role's scope is their own computers (Subtenants) see none.
"""

from __future__ import annotations

from tortoise.expressions import Q, Subquery

from app.authz import scope
from app.authz.principal import Principal, Target
from app.errors import NotFound
from app.models.failover import FailoverPlan
from app.models.tenancy import OrgKind


def plan_q(p: Principal, path: str = "") -> Q:
    """Plans in scope: of companies in the principal's tree; none for own-computers roles.
    `path` is the relation to the FailoverPlan ("" for FailoverPlan itself, "plan")."""
    if not path:
        return scope.company_q(p, "company") & scope.untied_rows_q(p)
    return Q(**{f"{path}_id__in": Subquery(FailoverPlan.filter(plan_q(p)).values("id"))})


def plan_target(plan: FailoverPlan, kind: str) -> Target:
    return Target(
        kind=kind,
        organization_id=plan.company_id,  # type: ignore[attr-defined]
        organization_kind=OrgKind.COMPANY,
    )


async def plan_in_scope(p: Principal, pk: int, field: str = "id") -> FailoverPlan:
    plan = await FailoverPlan.filter(plan_q(p), id=pk).first()
    if plan is None:
        raise NotFound("failover plan", field=field)
    return plan
