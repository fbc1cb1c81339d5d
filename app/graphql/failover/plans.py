"""GraphQL for cloud failover plans: list, read, create, edit, remove, set the ordered VMs and
the provider's scripts. The runs (start, test, undo, retry) are in `sessions.py`."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz.capabilities import FAILOVER_PLANS, FAILOVER_SCRIPTS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import actor, principal, register_node
from app.graphql.context import Context
from app.graphql.failover.types import (
    FailoverPlanType,
    FailurePolicyEnum,
    PlanStateEnum,
    PlanTypeEnum,
)
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models.failover import FailoverPlan, FailurePolicy, PlanState, PlanType
from app.services import failover_plan_vms, failover_plans
from app.services.failover_plan_vms import VmInput

Info = strawberry.Info[Context, Any]


@strawberry.input
class FailoverPlanFilter:
    company_id: strawberry.ID | None = None
    state: PlanStateEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class FailoverPlanCreateInput:
    company_id: strawberry.ID
    name: str
    type: PlanTypeEnum = PlanType.CLOUD  # type: ignore[valid-type]
    failure_policy: FailurePolicyEnum = FailurePolicy.STOP  # type: ignore[valid-type]
    description: str = ""
    tenant_account_id: strawberry.ID | None = strawberry.field(
        default=None, description="A tenant account of the company the plan's VMs must be of."
    )


@strawberry.input
class FailoverPlanUpdateInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = None
    failure_policy: FailurePolicyEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class FailoverPlanVmInput:
    replica_id: strawberry.ID
    delay_seconds: int = strawberry.field(
        default=0, description="0 to 3600; stored but ignored after the last VM."
    )


@strawberry.input
class FailoverPlanSetVmsInput:
    id: strawberry.ID
    vms: list[FailoverPlanVmInput] = strawberry.field(
        description="The whole ordered list (at most 2,000), replacing the previous one."
    )


@strawberry.input
class FailoverPlanSetScriptsInput:
    id: strawberry.ID
    pre_failover_script: str = ""
    post_failover_script: str = ""


async def _plan(p: Principal, pk: int) -> FailoverPlanType:
    return FailoverPlanType.from_row(await failover_plans.plan_in_scope(p, pk))


register_node("FailoverPlan", FAILOVER_PLANS, _plan)


@strawberry.type
class FailoverPlanQuery:
    @strawberry.field(
        extensions=guard(FAILOVER_PLANS, Action.READ),
        description="Failover plans of the companies in your scope (plans are company-wide).",
    )
    async def failover_plans(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: FailoverPlanFilter | None = None,
    ) -> Connection[FailoverPlanType] | None:
        query = FailoverPlan.filter(failover_plans.plan_q(principal(info)))
        if filter is not None:
            if filter.company_id:
                query = query.filter(
                    company_id=pk_of(filter.company_id, "Company", "filter.companyId")
                )
            if filter.state is not None:
                query = query.filter(state=PlanState(filter.state))
        return await paginate(query, first, after, FailoverPlanType.from_row)

    @strawberry.field(extensions=guard(FAILOVER_PLANS, Action.READ))
    async def failover_plan(self, info: Info, id: strawberry.ID) -> FailoverPlanType | None:
        return await _plan(principal(info), pk_of(id, "FailoverPlan"))


@strawberry.type
class FailoverPlanMutation:
    @strawberry.mutation(
        extensions=guard(FAILOVER_PLANS, Action.CREATE),
        description="Creates an empty plan for a company; names are unique per company.",
    )
    async def failover_plan_create(
        self, info: Info, input: FailoverPlanCreateInput
    ) -> FailoverPlanType:
        account = input.tenant_account_id
        row = await failover_plans.create(
            actor(info),
            pk_of(input.company_id, "Company", "input.companyId"),
            input.name,
            PlanType(input.type),
            FailurePolicy(input.failure_policy),
            input.description,
            pk_of(account, "TenantAccount", "input.tenantAccountId") if account else None,
        )
        return FailoverPlanType.from_row(row)

    @strawberry.mutation(
        extensions=guard(FAILOVER_PLANS, Action.UPDATE),
        description="Edits a READY plan's name, description or failure policy.",
    )
    async def failover_plan_update(
        self, info: Info, input: FailoverPlanUpdateInput
    ) -> FailoverPlanType:
        policy = input.failure_policy
        row = await failover_plans.update(
            actor(info),
            pk_of(input.id, "FailoverPlan", "input.id"),
            input.name,
            input.description,
            FailurePolicy(policy) if policy is not None else None,
        )
        return FailoverPlanType.from_row(row)

    @strawberry.mutation(
        extensions=guard(FAILOVER_PLANS, Action.DELETE),
        description="Removes a READY or FAILED plan (a COMPLETED one is undone first).",
    )
    async def failover_plan_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await failover_plans.delete(actor(info), pk_of(id, "FailoverPlan"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(FAILOVER_PLANS, Action.UPDATE),
        description="Replaces a READY plan's ordered VMs, all or nothing: each replica of the "
        "plan's company, replicated at least once, in no other plan, snapshot and CDP not mixed.",
    )
    async def failover_plan_set_vms(
        self, info: Info, input: FailoverPlanSetVmsInput
    ) -> FailoverPlanType:
        vms = [
            VmInput(pk_of(vm.replica_id, "VmReplica", f"input.vms.{i}.replicaId"), vm.delay_seconds)
            for i, vm in enumerate(input.vms)
        ]
        row = await failover_plan_vms.set_vms(
            actor(info), pk_of(input.id, "FailoverPlan", "input.id"), vms
        )
        return FailoverPlanType.from_row(row)

    @strawberry.mutation(
        extensions=guard(FAILOVER_SCRIPTS, Action.UPDATE),
        description="Sets a READY plan's pre- and post-failover scripts (provider staff only): "
        "one line each, at most 1,000 characters; empty removes a script.",
    )
    async def failover_plan_set_scripts(
        self, info: Info, input: FailoverPlanSetScriptsInput
    ) -> FailoverPlanType:
        row = await failover_plans.set_scripts(
            actor(info),
            pk_of(input.id, "FailoverPlan", "input.id"),
            input.pre_failover_script,
            input.post_failover_script,
        )
        return FailoverPlanType.from_row(row)
