"""Cloud failover plans (seed 000): built by the tenant's company from its VM replicas, run by
the provider on the tenant's request (the runs live in the failover session services).

Scope: a plan belongs to a company, not to a location: every principal whose tree holds the
company sees the company's plans, location-limited ones included (a failover plan is a whole
site's recovery, not one location's). Principals whose role's scope is their own computers
(Subtenants) see none.

States and edits (the runs move the state; this module only reads it):
- the plan, its VMs and its scripts are edited only while the plan is READY: a run reads them,
  and a failed-over plan (COMPLETED, FAILED) must keep the VM list its undo or retry works on;
  any other state is a CONFLICT naming it. The plan row is locked for the edit (PostgreSQL), so
  an edit and a start queue instead of interleaving;
- a plan is removed while READY or FAILED (a plan that cannot finish must not be stuck
  forever; its replicas keep their state and are handled one by one), never while a run is in
  progress and never once COMPLETED (undo it first: its replicas are failed over).

This module holds the plans' scope, the plan rows and their scripts; the VM list is in
failover_plan_vms, and why a plan cannot start now in failover_readiness.
"""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.capabilities import FAILOVER_PLANS, FAILOVER_SCRIPTS, Capability
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import connection_name
from app.errors import BadInput, Conflict, NotFound
from app.models import Organization, TenantAccount
from app.models.failover import FailoverPlan, FailurePolicy, PlanState, PlanType
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.text_inputs import clean_text

MAX_SCRIPT_LENGTH = 1000
EDITABLE = frozenset({PlanState.READY})
REMOVABLE = frozenset({PlanState.READY, PlanState.FAILED})


# --- scope --------------------------------------------------------------------------------


def plan_q(p: Principal, path: str = "") -> Q:
    """Plans in scope: of companies in the principal's tree; none for own-computers roles.
    `path` is the relation to the FailoverPlan ("" for FailoverPlan itself, "plan")."""
    if not path:
        return scope.company_q(p, "company") & scope.untied_rows_q(p)
    ids: dict[str, Any] = {f"{path}_id__in": Subquery(FailoverPlan.filter(plan_q(p)).values("id"))}
    return Q(**ids)


def plan_target(plan: FailoverPlan, kind: str = FAILOVER_PLANS.kind) -> Target:
    return company_target(plan.company_id, kind)  # type: ignore[attr-defined]


def company_target(company_id: int, kind: str = FAILOVER_PLANS.kind) -> Target:
    return Target(kind=kind, organization_id=company_id, organization_kind=OrgKind.COMPANY)


async def plan_in_scope(
    p: Principal, pk: int, field: str = "id", *, lock: bool = False
) -> FailoverPlan:
    query = FailoverPlan.filter(plan_q(p), id=pk)
    if lock:
        query = query.select_for_update()
    plan = await query.first()
    if plan is None:
        raise NotFound("failover plan", field=field)
    return plan


# --- validation ---------------------------------------------------------------------------


def clean_script(value: str, field: str) -> str:
    """A path or command line run on the cloud host: one line, at most 1000 characters
    (empty: no script)."""
    if any(c in value for c in "\r\n\x00"):
        raise BadInput("a script is one line: a path or a command line", field=field)
    return clean_text(value, field, MAX_SCRIPT_LENGTH, required=False)


def _name_taken() -> Conflict:
    return Conflict("the company already has a failover plan with this name", field="input.name")


async def _name_free(company_id: int, name: str, plan_id: int | None = None) -> None:
    query = FailoverPlan.filter(company_id=company_id, name=name)
    if plan_id is not None:
        query = query.exclude(id=plan_id)
    if await query.exists():
        raise _name_taken()


# --- the edit's plan: in scope, allowed, then locked in a changeable state -------------------


async def plan_to_change(
    actor: Actor,
    plan_id: int,
    action: Action,
    capability: Capability = FAILOVER_PLANS,
    field: str = "input.id",
) -> FailoverPlan:
    """The plan in the actor's scope that the engine lets it change (before the transaction)."""
    p = actor.p
    require(p, capability, action)
    plan = await plan_in_scope(p, plan_id, field)
    require(p, capability, action, plan_target(plan, capability.kind))
    return plan


async def lock_in_state(
    p: Principal,
    plan_id: int,
    field: str = "input.id",
    states: frozenset[PlanState] = EDITABLE,
    what: str = "edited",
) -> FailoverPlan:
    """The plan read again and locked inside the edit's transaction; CONFLICT naming its state
    unless it is one of `states`."""
    plan = await plan_in_scope(p, plan_id, field, lock=True)
    if plan.state not in states:
        allowed = " or ".join(sorted(s.value for s in states))
        raise Conflict(
            f"the plan is {plan.state.value}: it can be {what} only when {allowed}",
            state=plan.state.value,
        )
    return plan


# --- plans --------------------------------------------------------------------------------


async def create(
    actor: Actor,
    company_id: int,
    name: str,
    type: PlanType = PlanType.CLOUD,
    failure_policy: FailurePolicy = FailurePolicy.STOP,
    description: str = "",
    tenant_account_id: int | None = None,
) -> FailoverPlan:
    p = actor.p
    require(p, FAILOVER_PLANS, Action.CREATE)
    # A company whose plans the principal sees (none in an own-computers scope).
    company = await Organization.filter(
        scope.company_q(p), scope.untied_rows_q(p), id=company_id
    ).first()
    if company is None:
        raise NotFound("company", field="input.companyId")
    require(p, FAILOVER_PLANS, Action.CREATE, company_target(company.id))
    name = clean_text(name, "input.name", 200, required=True)
    description = clean_text(description, "input.description", 1000, required=False)
    account = None
    if tenant_account_id is not None:
        account = await TenantAccount.filter(
            scope.tenant_account_q(p), id=tenant_account_id
        ).first()
        if account is None:
            raise NotFound("tenant account", field="input.tenantAccountId")
        if account.company_id != company.id:  # type: ignore[attr-defined]
            raise BadInput(
                "the tenant account is not one of the plan's company",
                field="input.tenantAccountId",
            )
    async with audited(actor, "failoverPlanCreate", "FailoverPlan", "", company.id) as entry:
        await _name_free(company.id, name)
        try:
            async with in_transaction(connection_name()):
                plan = await FailoverPlan.create(
                    company=company,
                    tenant_account=account,
                    name=name,
                    description=description,
                    type=type,
                    failure_policy=failure_policy,
                )
        except IntegrityError:
            raise _name_taken() from None
        entry.bind(plan.id, name=name, type=type.value, failurePolicy=failure_policy.value)
    return plan


async def update(
    actor: Actor,
    plan_id: int,
    name: str | None = None,
    description: str | None = None,
    failure_policy: FailurePolicy | None = None,
) -> FailoverPlan:
    plan = await plan_to_change(actor, plan_id, Action.UPDATE)
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = clean_text(name, "input.name", 200, required=True)
    if description is not None:
        changes["description"] = clean_text(description, "input.description", 1000, required=False)
    if failure_policy is not None:
        changes["failure_policy"] = failure_policy
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    async with audited(actor, "failoverPlanUpdate", "FailoverPlan", plan.id, company_id) as entry:
        plan = await lock_in_state(actor.p, plan_id)
        if "name" in changes:
            await _name_free(company_id, str(changes["name"]), plan.id)
        try:
            async with in_transaction(connection_name()):
                plan.update_from_dict(changes)
                await plan.save()
        except IntegrityError:
            raise _name_taken() from None
        entry.details.update({k: str(v) for k, v in changes.items()})
    return plan


async def delete(actor: Actor, plan_id: int) -> FailoverPlan:
    plan = await plan_to_change(actor, plan_id, Action.DELETE, field="id")
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    async with audited(actor, "failoverPlanDelete", "FailoverPlan", plan.id, company_id) as entry:
        plan = await lock_in_state(actor.p, plan_id, "id", REMOVABLE, "removed")
        await plan.delete()
        entry.details.update(name=plan.name, state=plan.state.value)
    return plan


# --- scripts ------------------------------------------------------------------------------


async def set_scripts(actor: Actor, plan_id: int, pre: str, post: str) -> FailoverPlan:
    """Pre- and post-failover scripts: the provider's (FAILOVER_SCRIPTS maps to the Reseller
    Portal only; the engine refuses everyone else)."""
    plan = await plan_to_change(actor, plan_id, Action.UPDATE, FAILOVER_SCRIPTS)
    pre = clean_script(pre, "input.preFailoverScript")
    post = clean_script(post, "input.postFailoverScript")
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    async with audited(
        actor, "failoverPlanSetScripts", "FailoverPlan", plan.id, company_id
    ) as entry:
        plan = await lock_in_state(actor.p, plan_id)
        plan.pre_failover_script = pre
        plan.post_failover_script = post
        await plan.save(update_fields=["pre_failover_script", "post_failover_script", "updated_at"])
        entry.details.update(preFailoverScript=pre, postFailoverScript=post)
    return plan
