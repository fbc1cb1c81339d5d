"""Subscription plans (the billing issue): a provider's or reseller's price list, its rates per
billed item, and which plan bills which customer.

Scope comes from the tree: a plan is kept by the organization that owns it, for its whole
organization. The provider's staff see the provider's plans, a reseller's staff their
reseller's plans; principals limited to some companies or locations, and company users, see
none. A reseller never sees the provider's plans (NOT_FOUND, like anything outside scope).
What a principal may do with the plans in its scope is the engine's answer on
SUBSCRIPTION_PLANS with the owner organization as target.

Who bills whom: an owner bills the customers directly below it (the provider its resellers and
direct companies, a reseller its companies), so a plan is assigned only to those. One plan per
customer; changing it keeps the customer's billing start unless a new one is given.

Plan edits affect only invoices generated afterwards: an invoice copies the rates, tax and
discount it used (its lines and plan snapshot), so nothing here touches existing invoices.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, date, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.capabilities import SUBSCRIPTION_PLANS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.billing.pricing import RateSpec
from app.db import connection_name
from app.errors import BadInput, Conflict, Forbidden, NotFound
from app.models import Organization
from app.models.billing import (
    BillingItem,
    PlanAssignment,
    PlanRate,
    StorageMode,
    SubscriptionPlan,
)
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.plan_inputs import PlanInput, RateInput, check_tax, clean_plan, clean_rates

__all__ = ["PlanInput", "RateInput"]  # the service's input types (validated in plan_inputs)

CUSTOMER_KINDS = (OrgKind.COMPANY, OrgKind.RESELLER)


# --- scope --------------------------------------------------------------------------------


def owner_id(p: Principal) -> int | None:
    """The organization whose plans the principal keeps: its own provider or reseller, when
    the principal sees that organization whole; None for everyone else."""
    if p.organization_kind is OrgKind.COMPANY:
        return None
    if p.company_ids is not None or p.location_ids is not None:
        return None
    return p.organization_id


def plan_q(p: Principal, path: str = "") -> Q:
    """Plans in scope; `path` is the relation to the SubscriptionPlan ("" for the plan)."""
    owner = owner_id(p)
    if owner is None:
        return Q(id__in=[])
    filters: dict[str, Any] = {f"{path}__owner_id" if path else "owner_id": owner}
    return Q(**filters)


def assignment_q(p: Principal) -> Q:
    """Assignments of the plans in scope (their customers are below the owner)."""
    return plan_q(p, "plan")


def plan_target(plan: SubscriptionPlan) -> Target:
    owner: Organization = plan.owner
    return Target(
        kind=SUBSCRIPTION_PLANS.kind, organization_id=owner.id, organization_kind=owner.kind
    )


async def plan_in_scope(
    p: Principal, pk: int, field: str = "id", *, lock: bool = False
) -> SubscriptionPlan:
    query = SubscriptionPlan.filter(plan_q(p), id=pk).select_related("owner")
    if lock:
        query = query.select_for_update(of=("subscription_plans",))
    plan = await query.first()
    if plan is None:
        raise NotFound("subscription plan", field=field)
    return plan


async def _name_free(owner: int, name: str, plan_id: int | None = None) -> None:
    query = SubscriptionPlan.filter(owner_id=owner, name=name)
    if plan_id is not None:
        query = query.exclude(id=plan_id)
    if await query.exists():
        raise Conflict("you already have a subscription plan with this name", field="input.name")


async def _write_rates(plan_id: int, rows: list[dict[str, Any]]) -> None:
    await PlanRate.filter(plan_id=plan_id).delete()
    await PlanRate.bulk_create([PlanRate(plan_id=plan_id, **row) for row in rows])


def _rates_detail(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (v if isinstance(v, bool | int) else str(v)) for k, v in r.items()} for r in rows]


# --- plans --------------------------------------------------------------------------------


async def create(
    actor: Actor, data: PlanInput, rates: Sequence[RateInput] | None = None
) -> SubscriptionPlan:
    """A plan of the principal's own provider or reseller (with its rates, when given)."""
    p = actor.p
    require(p, SUBSCRIPTION_PLANS, Action.CREATE)
    owner_pk = owner_id(p)
    if owner_pk is None:
        raise Forbidden("plans are kept by a provider or reseller for its whole organization")
    owner = await Organization.get(id=owner_pk)
    plan = SubscriptionPlan(owner=owner)
    require(p, SUBSCRIPTION_PLANS, Action.CREATE, plan_target(plan))
    if data.name is None or data.currency is None:
        raise BadInput(
            "a value is required", field="input.name" if data.name is None else "input.currency"
        )
    plan.update_from_dict(clean_plan(data))
    check_tax(plan)
    rows = clean_rates(rates) if rates is not None else []
    async with audited(actor, "subscriptionPlanCreate", "SubscriptionPlan", "", owner.id) as entry:
        await _name_free(owner.id, plan.name)
        try:
            async with in_transaction(connection_name()):
                await plan.save()
        except IntegrityError:
            raise Conflict(
                "you already have a subscription plan with this name", field="input.name"
            ) from None
        await _write_rates(plan.id, rows)
        entry.bind(plan.id)
        entry.details.update(_plan_detail(plan), rates=_rates_detail(rows))
    return plan


def _plan_detail(plan: SubscriptionPlan) -> dict[str, str]:
    names = [f.name for f in fields(PlanInput)]
    return {name: str(getattr(plan, name)) for name in names}


async def update(actor: Actor, plan_id: int, data: PlanInput) -> SubscriptionPlan:
    """Edits the plan; invoices already generated keep what they copied."""
    p = actor.p
    require(p, SUBSCRIPTION_PLANS, Action.UPDATE)
    plan = await plan_in_scope(p, plan_id, "input.id")
    require(p, SUBSCRIPTION_PLANS, Action.UPDATE, plan_target(plan))
    changes = clean_plan(data)
    async with audited(
        actor, "subscriptionPlanUpdate", "SubscriptionPlan", plan.id, plan.owner.id
    ) as entry:
        plan = await plan_in_scope(p, plan_id, "input.id", lock=True)
        before = _plan_detail(plan)
        plan.update_from_dict(changes)
        check_tax(plan)
        if "name" in changes:
            await _name_free(plan.owner.id, plan.name, plan.id)
        try:
            async with in_transaction(connection_name()):
                await plan.save()
        except IntegrityError:
            raise Conflict(
                "you already have a subscription plan with this name", field="input.name"
            ) from None
        after = _plan_detail(plan)
        entry.details.update({k: [before[k], v] for k, v in after.items() if before[k] != v})
    return plan


async def delete(actor: Actor, plan_id: int) -> SubscriptionPlan:
    """Removes a plan that bills nobody (invoices keep their copy; their link is cleared)."""
    p = actor.p
    require(p, SUBSCRIPTION_PLANS, Action.DELETE)
    plan = await plan_in_scope(p, plan_id)
    require(p, SUBSCRIPTION_PLANS, Action.DELETE, plan_target(plan))
    async with audited(
        actor, "subscriptionPlanDelete", "SubscriptionPlan", plan.id, plan.owner.id
    ) as entry:
        plan = await plan_in_scope(p, plan_id, lock=True)
        billed = await PlanAssignment.filter(plan_id=plan.id).count()
        if billed:
            raise Conflict(
                f"the plan bills {billed} customer(s): assign them another plan first",
                customers=billed,
            )
        try:
            async with in_transaction(connection_name()):
                await plan.delete()
        except IntegrityError:  # assigned meanwhile (the assignment restricts the delete)
            raise Conflict("the plan was assigned to a customer meanwhile") from None
        entry.details.update(name=plan.name)
    return plan


async def set_rates(actor: Actor, plan_id: int, rates: Sequence[RateInput]) -> SubscriptionPlan:
    """Replaces the plan's whole rate list, all or nothing. Items left out are not billed."""
    p = actor.p
    require(p, SUBSCRIPTION_PLANS, Action.UPDATE)
    plan = await plan_in_scope(p, plan_id, "input.id")
    require(p, SUBSCRIPTION_PLANS, Action.UPDATE, plan_target(plan))
    rows = clean_rates(rates)
    async with audited(
        actor, "subscriptionPlanSetRates", "SubscriptionPlan", plan.id, plan.owner.id
    ) as entry:
        plan = await plan_in_scope(p, plan_id, "input.id", lock=True)
        await _write_rates(plan.id, rows)
        await plan.save(update_fields=["updated_at"])
        entry.details.update(rates=_rates_detail(rows))
    return plan


# --- assignment ---------------------------------------------------------------------------


async def _customer_in_scope(p: Principal, customer_id: int, field: str) -> Organization:
    customer = await Organization.filter(
        scope.org_q(p), id=customer_id, kind__in=[k.value for k in CUSTOMER_KINDS]
    ).first()
    if customer is None:
        raise NotFound("customer", field=field)
    return customer


async def assign(
    actor: Actor, customer_id: int, plan_id: int, billing_start: date | None = None
) -> PlanAssignment:
    """Bills `customer_id` with the plan from now on. The customer must be one the plan's
    owner bills (directly below it). A new assignment starts billing on `billing_start`
    (today when not given); changing the plan keeps the start unless a new one is given."""
    p = actor.p
    require(p, SUBSCRIPTION_PLANS, Action.UPDATE)
    plan = await plan_in_scope(p, plan_id, "input.planId")
    require(p, SUBSCRIPTION_PLANS, Action.UPDATE, plan_target(plan))
    customer = await _customer_in_scope(p, customer_id, "input.customerId")
    if customer.parent_id != plan.owner.id:  # type: ignore[attr-defined]
        raise BadInput(
            f"{customer.name} is not billed by {plan.owner.name}: a plan is assigned only to "
            "the customers its owner bills (the organizations directly below it)",
            field="input.customerId",
        )
    async with audited(actor, "planAssign", "PlanAssignment", "", plan.owner.id) as entry:
        # The plan row (against a concurrent removal), then the customer's (two assignments of
        # one customer queue: the second finds the first's row and changes it).
        plan = await plan_in_scope(p, plan_id, "input.planId", lock=True)
        await Organization.filter(id=customer.id).select_for_update().first()
        row = await PlanAssignment.filter(customer_id=customer.id).first()
        previous = None
        if row is None:
            start = billing_start or datetime.now(UTC).date()
            try:
                async with in_transaction(connection_name()):
                    row = await PlanAssignment.create(
                        customer=customer, plan=plan, billing_start=start
                    )
            except IntegrityError:
                raise Conflict("the customer was assigned a plan meanwhile; try again") from None
        else:
            previous = row.plan_id  # type: ignore[attr-defined]
            row.plan = plan
            if billing_start is not None:
                row.billing_start = billing_start
            await row.save(update_fields=["plan_id", "billing_start"])
        entry.bind(
            row.id,
            customerId=customer.id,
            customer=customer.name,
            planId=plan.id,
            previousPlanId=previous,
            billingStart=str(row.billing_start),
        )
    row.plan = plan
    row.customer = customer
    return row


async def unassign(actor: Actor, customer_id: int) -> PlanAssignment:
    """The customer is billed by no plan any more (its invoices stay)."""
    p = actor.p
    require(p, SUBSCRIPTION_PLANS, Action.UPDATE)
    customer = await _customer_in_scope(p, customer_id, "customerId")
    row = (
        await PlanAssignment.filter(assignment_q(p), customer_id=customer.id)
        .select_related("plan__owner")
        .first()
    )
    if row is None:
        raise NotFound("plan assignment", field="customerId")
    require(p, SUBSCRIPTION_PLANS, Action.UPDATE, plan_target(row.plan))
    async with audited(actor, "planUnassign", "PlanAssignment", row.id, row.plan.owner.id) as entry:
        await PlanAssignment.filter(id=row.id).delete()
        entry.details.update(
            customerId=customer.id, planId=row.plan.id, billingStart=str(row.billing_start)
        )
    return row


# --- reading ------------------------------------------------------------------------------


def _spec(row: PlanRate) -> RateSpec:
    return RateSpec(
        item=BillingItem(row.item),
        rate=row.rate,
        free_allowance=row.free_allowance,
        storage_mode=StorageMode(row.storage_mode),
        block_gb=row.block_gb,
        round_up=row.round_up,
    )


async def rate_specs(plan: SubscriptionPlan | int) -> dict[BillingItem, RateSpec]:
    """The plan's rates as pricing wants them (items without a row are not billed)."""
    pk = plan if isinstance(plan, int) else plan.id
    return (await rate_specs_many([pk])).get(pk, {})


async def rate_specs_many(plan_ids: Sequence[int]) -> dict[int, dict[BillingItem, RateSpec]]:
    """Many plans' rates in one query (a billing run prices every plan it meets)."""
    out: dict[int, dict[BillingItem, RateSpec]] = defaultdict(dict)
    for row in await PlanRate.filter(plan_id__in=list(plan_ids)):
        out[row.plan_id][BillingItem(row.item)] = _spec(row)  # type: ignore[attr-defined]
    return dict(out)


async def rates_by_plan(plan_ids: Sequence[int]) -> dict[int, list[PlanRate]]:
    """Rows for display, in the items' declared order (one query)."""
    order = {item: i for i, item in enumerate(BillingItem)}
    out: dict[int, list[PlanRate]] = defaultdict(list)
    for row in await PlanRate.filter(plan_id__in=list(plan_ids)):
        out[row.plan_id].append(row)  # type: ignore[attr-defined]
    for rows in out.values():
        rows.sort(key=lambda r: order[BillingItem(r.item)])
    return out


async def customer_counts(plan_ids: Sequence[int]) -> dict[int, int]:
    """How many customers each plan bills (one grouped query)."""
    from tortoise.functions import Count

    rows = (
        await PlanAssignment.filter(plan_id__in=list(plan_ids))
        .annotate(n=Count("id"))
        .group_by("plan_id")
        .values("plan_id", "n")
    )
    return {r["plan_id"]: r["n"] for r in rows}
