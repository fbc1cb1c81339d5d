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

VMs: an ordered list with a delay after each one. The delay after the last VM is stored (so a
list round-trips as given) but ignored by the runs. A replica is in at most one plan: the
unique column says so, checked first for a clear message and translated on a race.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.capabilities import FAILOVER_PLANS, FAILOVER_SCRIPTS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import connection_name
from app.errors import BadInput, Conflict, NotFound
from app.models import Organization, TenantAccount
from app.models.cloud import ReplicaKind, ReplicaState, VmReplica
from app.models.failover import FailoverPlan, FailoverPlanVm, FailurePolicy, PlanState, PlanType
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.tenant_accounts import active_q

MAX_VMS = 2000
MAX_DELAY_SECONDS = 3600
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


def _text(value: str, field: str, limit: int, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise BadInput("a value is required", field=field)
    if len(value) > limit:
        raise BadInput(f"longer than {limit} characters", field=field)
    return value


def clean_script(value: str, field: str) -> str:
    """A path or command line run on the cloud host: one line, at most 1000 characters
    (empty: no script)."""
    if any(c in value for c in "\r\n\x00"):
        raise BadInput("a script is one line: a path or a command line", field=field)
    return _text(value, field, MAX_SCRIPT_LENGTH, required=False)


def _require_editable(plan: FailoverPlan, states: frozenset[PlanState], what: str) -> None:
    if plan.state not in states:
        allowed = " or ".join(sorted(s.value for s in states))
        raise Conflict(
            f"the plan is {plan.state.value}: it can be {what} only when {allowed}",
            state=plan.state.value,
        )


async def _name_free(company_id: int, name: str, plan_id: int | None = None) -> None:
    query = FailoverPlan.filter(company_id=company_id, name=name)
    if plan_id is not None:
        query = query.exclude(id=plan_id)
    if await query.exists():
        raise Conflict("the company already has a failover plan with this name", field="input.name")


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
    name = _text(name, "input.name", 200, required=True)
    description = _text(description, "input.description", 1000, required=False)
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
            raise Conflict(
                "the company already has a failover plan with this name", field="input.name"
            ) from None
        entry.bind(plan.id, name=name, type=type.value, failurePolicy=failure_policy.value)
    return plan


async def update(
    actor: Actor,
    plan_id: int,
    name: str | None = None,
    description: str | None = None,
    failure_policy: FailurePolicy | None = None,
) -> FailoverPlan:
    p = actor.p
    require(p, FAILOVER_PLANS, Action.UPDATE)
    plan = await plan_in_scope(p, plan_id, "input.id")
    require(p, FAILOVER_PLANS, Action.UPDATE, plan_target(plan))
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = _text(name, "input.name", 200, required=True)
    if description is not None:
        changes["description"] = _text(description, "input.description", 1000, required=False)
    if failure_policy is not None:
        changes["failure_policy"] = failure_policy
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    async with audited(actor, "failoverPlanUpdate", "FailoverPlan", plan.id, company_id) as entry:
        plan = await plan_in_scope(p, plan_id, "input.id", lock=True)
        _require_editable(plan, EDITABLE, "edited")
        if "name" in changes:
            await _name_free(company_id, str(changes["name"]), plan.id)
        try:
            async with in_transaction(connection_name()):
                plan.update_from_dict(changes)
                await plan.save()
        except IntegrityError:
            raise Conflict(
                "the company already has a failover plan with this name", field="input.name"
            ) from None
        entry.details.update({k: str(v) for k, v in changes.items()})
    return plan


async def delete(actor: Actor, plan_id: int) -> FailoverPlan:
    p = actor.p
    require(p, FAILOVER_PLANS, Action.DELETE)
    plan = await plan_in_scope(p, plan_id)
    require(p, FAILOVER_PLANS, Action.DELETE, plan_target(plan))
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    async with audited(actor, "failoverPlanDelete", "FailoverPlan", plan.id, company_id) as entry:
        plan = await plan_in_scope(p, plan_id, lock=True)
        _require_editable(plan, REMOVABLE, "removed")
        await plan.delete()
        entry.details.update(name=plan.name, state=plan.state.value)
    return plan


# --- VMs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmInput:
    replica_id: int
    delay_seconds: int = 0


def _check_list(vms: Sequence[VmInput]) -> None:
    if len(vms) > MAX_VMS:
        raise BadInput(f"a plan holds at most {MAX_VMS} VMs", field="input.vms")
    seen: set[int] = set()
    for i, vm in enumerate(vms):
        if not 0 <= vm.delay_seconds <= MAX_DELAY_SECONDS:
            raise BadInput(
                f"the delay is 0 to {MAX_DELAY_SECONDS} seconds",
                field=f"input.vms.{i}.delaySeconds",
            )
        if vm.replica_id in seen:
            raise BadInput("the replica is listed twice", field=f"input.vms.{i}.replicaId")
        seen.add(vm.replica_id)


async def _check_replicas(p: Principal, plan: FailoverPlan, vms: Sequence[VmInput]) -> None:
    """Every prerequisite of the list, in one query for the replicas and one for the plans
    already holding them; the first failing VM (in list order) names its field."""
    ids = [vm.replica_id for vm in vms]
    rows = await VmReplica.filter(scope.tenant_account_q(p, "tenant_account"), id__in=ids).values(
        "id", "name", "kind", "restore_points", "tenant_account_id", "tenant_account__company_id"
    )
    replicas = {r["id"]: r for r in rows}
    kind: ReplicaKind | None = None
    for i, vm in enumerate(vms):
        field = f"input.vms.{i}.replicaId"
        r = replicas.get(vm.replica_id)
        if r is None:
            raise NotFound("VM replica", field=field)
        if r["tenant_account__company_id"] != plan.company_id:  # type: ignore[attr-defined]
            raise BadInput(f"the replica {r['name']} is not one of the plan's company", field=field)
        account_id = plan.tenant_account_id  # type: ignore[attr-defined]
        if account_id is not None and r["tenant_account_id"] != account_id:
            raise BadInput(
                f"the replica {r['name']} is not one of the plan's tenant account", field=field
            )
        if not r["restore_points"]:
            raise BadInput(
                f"the replica {r['name']} has not been replicated yet (no restore point)",
                field=field,
            )
        this_kind = ReplicaKind(r["kind"])
        if kind is not None and this_kind is not kind:
            raise BadInput(
                f"snapshot and CDP replicas cannot be mixed in one plan: {r['name']} is "
                f"{this_kind.value}, the VMs before it {kind.value}",
                field=field,
            )
        kind = this_kind
    await _check_other_plans(plan, vms)


async def _check_other_plans(plan: FailoverPlan, vms: Sequence[VmInput]) -> None:
    held = {
        row["replica_id"]: row
        for row in await FailoverPlanVm.filter(replica_id__in=[vm.replica_id for vm in vms])
        .exclude(plan_id=plan.id)
        .values("replica_id", "replica__name", "plan__name")
    }
    for i, vm in enumerate(vms):
        row = held.get(vm.replica_id)
        if row is not None:
            raise Conflict(
                f"the replica {row['replica__name']} is already in the failover plan "
                f"{row['plan__name']}: a VM is in at most one plan",
                field=f"input.vms.{i}.replicaId",
                plan=row["plan__name"],
            )


async def set_vms(actor: Actor, plan_id: int, vms: Sequence[VmInput]) -> FailoverPlan:
    """Replaces the plan's ordered VM list, all or nothing."""
    p = actor.p
    require(p, FAILOVER_PLANS, Action.UPDATE)
    plan = await plan_in_scope(p, plan_id, "input.id")
    require(p, FAILOVER_PLANS, Action.UPDATE, plan_target(plan))
    _check_list(vms)
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    async with audited(actor, "failoverPlanSetVms", "FailoverPlan", plan.id, company_id) as entry:
        plan = await plan_in_scope(p, plan_id, "input.id", lock=True)
        _require_editable(plan, EDITABLE, "edited")
        await _check_replicas(p, plan, vms)
        await FailoverPlanVm.filter(plan_id=plan.id).delete()
        try:
            async with in_transaction(connection_name()):
                await FailoverPlanVm.bulk_create(
                    [
                        FailoverPlanVm(
                            plan_id=plan.id,
                            replica_id=vm.replica_id,
                            position=i,
                            delay_seconds=vm.delay_seconds,
                        )
                        for i, vm in enumerate(vms)
                    ],
                    batch_size=500,
                )
        except IntegrityError:
            # Another plan took one of the replicas since the check: name it.
            await _check_other_plans(plan, vms)
            raise Conflict("a replica was put into another plan meanwhile") from None
        entry.details.update(vms=len(vms), replicaIds=[vm.replica_id for vm in vms][:50])
    return plan


# --- scripts ------------------------------------------------------------------------------


async def set_scripts(actor: Actor, plan_id: int, pre: str, post: str) -> FailoverPlan:
    """Pre- and post-failover scripts: the provider's (FAILOVER_SCRIPTS maps to the Reseller
    Portal only; the engine refuses everyone else)."""
    p = actor.p
    require(p, FAILOVER_SCRIPTS, Action.UPDATE)
    plan = await plan_in_scope(p, plan_id, "input.id")
    require(p, FAILOVER_SCRIPTS, Action.UPDATE, plan_target(plan, FAILOVER_SCRIPTS.kind))
    pre = clean_script(pre, "input.preFailoverScript")
    post = clean_script(post, "input.postFailoverScript")
    company_id: int = plan.company_id  # type: ignore[attr-defined]
    async with audited(
        actor, "failoverPlanSetScripts", "FailoverPlan", plan.id, company_id
    ) as entry:
        plan = await plan_in_scope(p, plan_id, "input.id", lock=True)
        _require_editable(plan, EDITABLE, "edited")
        plan.pre_failover_script = pre
        plan.post_failover_script = post
        await plan.save(update_fields=["pre_failover_script", "post_failover_script", "updated_at"])
        entry.details.update(preFailoverScript=pre, postFailoverScript=post)
    return plan


# --- reading: VMs and readiness for a page of plans ----------------------------------------


async def vms_by_plan(plan_ids: Sequence[int]) -> dict[int, list[FailoverPlanVm]]:
    """The plans' VMs in order, each with its replica, in one query (callers pass plans they
    already found in scope: the replicas are of the same company)."""
    out: dict[int, list[FailoverPlanVm]] = defaultdict(list)
    rows = await FailoverPlanVm.filter(plan_id__in=list(plan_ids)).select_related("replica")
    for vm in sorted(rows, key=lambda v: (v.plan_id, v.position)):  # type: ignore[attr-defined]
        out[vm.plan_id].append(vm)  # type: ignore[attr-defined]
    return out


async def readiness_many(
    plans: Sequence[FailoverPlan], vms: dict[int, list[FailoverPlanVm]] | None = None
) -> dict[int, list[str]]:
    """Why each plan cannot start now (empty: it can). Constant queries for any page:
    the VMs (unless given), the tenant accounts involved, the active ones among them, and the
    companies."""
    if not plans:
        return {}
    if vms is None:
        vms = await vms_by_plan([plan.id for plan in plans])
    account_ids = {plan.tenant_account_id for plan in plans} | {  # type: ignore[attr-defined]
        vm.replica.tenant_account_id  # type: ignore[attr-defined]
        for plan_vms in vms.values()
        for vm in plan_vms
    }
    account_ids.discard(None)
    names = dict(await TenantAccount.filter(id__in=list(account_ids)).values_list("id", "name"))
    active = set(
        await TenantAccount.filter(active_q(), id__in=list(account_ids)).values_list(
            "id", flat=True
        )
    )
    company_ids = list({plan.company_id for plan in plans})  # type: ignore[attr-defined]
    companies = {
        row["id"]: row
        for row in await Organization.filter(id__in=company_ids).values(
            "id", "name", "enabled", "parent__enabled"
        )
    }
    out: dict[int, list[str]] = {}
    for plan in plans:
        reasons: list[str] = []
        company = companies.get(plan.company_id)  # type: ignore[attr-defined]
        if company is not None and not company["enabled"]:
            reasons.append(f"the company {company['name']} is disabled")
        elif company is not None and company["parent__enabled"] is False:
            reasons.append(f"the company {company['name']}'s reseller is disabled")
        plan_vms = vms.get(plan.id, [])
        if not plan_vms:
            reasons.append("the plan has no VMs")
        accounts = [plan.tenant_account_id] if plan.tenant_account_id else []  # type: ignore[attr-defined]
        for vm in plan_vms:
            replica = vm.replica
            if not replica.restore_points:
                reasons.append(f"the replica {replica.name} has no restore point")
            if replica.state is not ReplicaState.READY:
                reasons.append(f"the replica {replica.name} is {replica.state.value}, not READY")
            accounts.append(replica.tenant_account_id)  # type: ignore[attr-defined]
        for account_id in dict.fromkeys(accounts):
            if account_id not in active:
                reasons.append(
                    f"the tenant account {names.get(account_id, account_id)} is disabled, "
                    "its lease expired, or its company or reseller is disabled"
                )
        out[plan.id] = reasons
    return out


async def readiness(plan: FailoverPlan) -> list[str]:
    """Why the plan cannot start now (empty: it can). The runs check it before starting."""
    return (await readiness_many([plan]))[plan.id]
