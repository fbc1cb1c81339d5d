"""Why a cloud failover plan cannot start now, for one plan or a page of plans in constant
queries: the company or its reseller disabled, no VMs, replicas without a restore point or not
READY, tenant accounts not active. The runs check it before starting; the API shows it.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.models import Organization, TenantAccount
from app.models.cloud import ReplicaState
from app.models.failover import FailoverPlan, FailoverPlanVm
from app.services.failover_plan_vms import vms_by_plan
from app.services.tenant_account_status import active_q


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
