"""GraphQL for subscription plans: list, read, create, edit, remove, set the rates, and assign
a plan to a customer. Money and percentages are `Decimal` (strings in JSON, exact).

A page of plans costs one query for the plans, one for their rates and one for their customer
counts, whatever its size. Plan edits affect only invoices generated afterwards: invoices
copy the rates they used."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import strawberry

from app.authz.capabilities import SUBSCRIPTION_PLANS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import NotFound
from app.graphql.billing.plan_types import (
    BillingItemEnum,
    InvoiceTypeEnum,
    PlanAssignmentType,
    StorageModeEnum,
    SubscriptionPlanType,
    TaxTypeEnum,
    customer_pk,
    gid,
)
from app.graphql.common import actor, principal, register_node
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models.billing import (
    BillingItem,
    InvoiceType,
    PlanAssignment,
    StorageMode,
    SubscriptionPlan,
    TaxType,
)
from app.services import subscription_plans as plans
from app.services.subscription_plans import PlanInput, RateInput

__all__ = ["BillingItemEnum", "InvoiceTypeEnum"]  # imported from here by the invoice types

Info = strawberry.Info[Context, Any]


# --- inputs ---------------------------------------------------------------------------------


@strawberry.input
class PlanRateInput:
    item: BillingItemEnum  # type: ignore[valid-type]
    rate: Decimal | None = strawberry.field(
        default=None, description="≥ 0, at most 4 decimals; null: not billed."
    )
    free_allowance: Decimal = strawberry.field(
        default=Decimal(0), description="Units free of charge per invoice."
    )
    storage_mode: StorageModeEnum | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="CLOUD_STORAGE_GB only (default ALLOCATED)."
    )
    block_gb: int | None = strawberry.field(
        default=None, description="CLOUD_STORAGE_GB, CONSUMED only: block size, at least 1."
    )
    round_up: bool | None = strawberry.field(
        default=None, description="CLOUD_STORAGE_GB, CONSUMED only: bill whole blocks."
    )

    def to_service(self) -> RateInput:
        return RateInput(
            item=BillingItem(self.item),
            rate=self.rate,
            free_allowance=self.free_allowance,
            storage_mode=StorageMode(self.storage_mode) if self.storage_mode else None,
            block_gb=self.block_gb,
            round_up=self.round_up,
        )


@strawberry.input
class SubscriptionPlanCreateInput:
    name: str = strawberry.field(description="Unique among your plans.")
    currency: str = strawberry.field(description="ISO 4217 code, e.g. EUR.")
    description: str = ""
    tax_type: TaxTypeEnum = TaxType.NONE  # type: ignore[valid-type]
    tax_rate_percent: Decimal = strawberry.field(default=Decimal(0), description="0 to 100.")
    discount_percent: Decimal = strawberry.field(default=Decimal(0), description="0 to 100.")
    billing_day: int = strawberry.field(default=1, description="1 to 28.")
    due_days: int = strawberry.field(default=30, description="0 to 365.")
    invoice_type: InvoiceTypeEnum = InvoiceType.SUMMARY  # type: ignore[valid-type]
    rates: list[PlanRateInput] | None = None


@strawberry.input
class SubscriptionPlanUpdateInput:
    id: strawberry.ID
    name: str | None = None
    currency: str | None = None
    description: str | None = None
    tax_type: TaxTypeEnum | None = None  # type: ignore[valid-type]
    tax_rate_percent: Decimal | None = None
    discount_percent: Decimal | None = None
    billing_day: int | None = None
    due_days: int | None = None
    invoice_type: InvoiceTypeEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class SubscriptionPlanSetRatesInput:
    id: strawberry.ID
    rates: list[PlanRateInput] = strawberry.field(
        description="The whole list, replacing the previous one; items left out are not billed."
    )


@strawberry.input
class PlanAssignInput:
    customer_id: strawberry.ID = strawberry.field(
        description="A company or reseller directly below the plan's owner."
    )
    plan_id: strawberry.ID
    billing_start: date | None = strawberry.field(
        default=None,
        description="Default: today for a new assignment, unchanged when changing the plan.",
    )


@strawberry.input
class PlanAssignmentFilter:
    plan_id: strawberry.ID | None = None
    customer_id: strawberry.ID | None = None


def _plan_input(data: Any) -> PlanInput:
    def enum(cls: Any, value: Any) -> Any:
        return cls(value) if value is not None else None

    return PlanInput(
        name=data.name,
        description=data.description,
        currency=data.currency,
        tax_type=enum(TaxType, data.tax_type),
        tax_rate_percent=data.tax_rate_percent,
        discount_percent=data.discount_percent,
        billing_day=data.billing_day,
        due_days=data.due_days,
        invoice_type=enum(InvoiceType, data.invoice_type),
    )


# --- nodes, queries, mutations --------------------------------------------------------------


async def _plan(p: Principal, pk: int) -> SubscriptionPlanType:
    return SubscriptionPlanType.from_row(await plans.plan_in_scope(p, pk))


async def _assignment(p: Principal, pk: int) -> PlanAssignmentType:
    row = (
        await PlanAssignment.filter(plans.assignment_q(p), id=pk).select_related("customer").first()
    )
    if row is None:
        raise NotFound("plan assignment")
    return PlanAssignmentType.from_row(row)


register_node("SubscriptionPlan", SUBSCRIPTION_PLANS, _plan)
register_node("PlanAssignment", SUBSCRIPTION_PLANS, _assignment)


@strawberry.type
class SubscriptionPlanQuery:
    @strawberry.field(
        extensions=guard(SUBSCRIPTION_PLANS, Action.READ),
        description="Your provider's or reseller's plans.",
    )
    async def subscription_plans(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[SubscriptionPlanType] | None:
        query = SubscriptionPlan.filter(plans.plan_q(principal(info))).select_related("owner")
        return await paginate(query, first, after, SubscriptionPlanType.from_row)

    @strawberry.field(extensions=guard(SUBSCRIPTION_PLANS, Action.READ))
    async def subscription_plan(self, info: Info, id: strawberry.ID) -> SubscriptionPlanType | None:
        return await _plan(principal(info), pk_of(id, "SubscriptionPlan"))

    @strawberry.field(
        extensions=guard(SUBSCRIPTION_PLANS, Action.READ),
        description="Which of your plans bills which customer.",
    )
    async def plan_assignments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: PlanAssignmentFilter | None = None,
    ) -> Connection[PlanAssignmentType] | None:
        query = PlanAssignment.filter(plans.assignment_q(principal(info))).select_related(
            "customer"
        )
        if filter is not None:
            if filter.plan_id:
                query = query.filter(
                    plan_id=pk_of(filter.plan_id, "SubscriptionPlan", "filter.planId")
                )
            if filter.customer_id:
                query = query.filter(
                    customer_id=customer_pk(filter.customer_id, "filter.customerId")
                )
        return await paginate(query, first, after, PlanAssignmentType.from_row)


@strawberry.type
class SubscriptionPlanMutation:
    @strawberry.mutation(
        extensions=guard(SUBSCRIPTION_PLANS, Action.CREATE),
        description="Creates a plan of your provider or reseller, with its rates when given.",
    )
    async def subscription_plan_create(
        self, info: Info, input: SubscriptionPlanCreateInput
    ) -> SubscriptionPlanType:
        rates = [r.to_service() for r in input.rates] if input.rates is not None else None
        row = await plans.create(actor(info), _plan_input(input), rates)
        return SubscriptionPlanType.from_row(row)

    @strawberry.mutation(
        extensions=guard(SUBSCRIPTION_PLANS, Action.UPDATE),
        description="Edits a plan; invoices already generated keep what they copied.",
    )
    async def subscription_plan_update(
        self, info: Info, input: SubscriptionPlanUpdateInput
    ) -> SubscriptionPlanType:
        pk = pk_of(input.id, "SubscriptionPlan", "input.id")
        row = await plans.update(actor(info), pk, _plan_input(input))
        return SubscriptionPlanType.from_row(row)

    @strawberry.mutation(
        extensions=guard(SUBSCRIPTION_PLANS, Action.DELETE),
        description="Removes a plan that bills no customer (CONFLICT with the count otherwise).",
    )
    async def subscription_plan_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await plans.delete(actor(info), pk_of(id, "SubscriptionPlan"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(SUBSCRIPTION_PLANS, Action.UPDATE),
        description="Replaces a plan's rates, all or nothing.",
    )
    async def subscription_plan_set_rates(
        self, info: Info, input: SubscriptionPlanSetRatesInput
    ) -> SubscriptionPlanType:
        pk = pk_of(input.id, "SubscriptionPlan", "input.id")
        row = await plans.set_rates(actor(info), pk, [r.to_service() for r in input.rates])
        return SubscriptionPlanType.from_row(row)

    @strawberry.mutation(
        extensions=guard(SUBSCRIPTION_PLANS, Action.UPDATE),
        description="Bills a customer with a plan (replacing its previous plan).",
    )
    async def plan_assign(self, info: Info, input: PlanAssignInput) -> PlanAssignmentType:
        row = await plans.assign(
            actor(info),
            customer_pk(input.customer_id, "input.customerId"),
            pk_of(input.plan_id, "SubscriptionPlan", "input.planId"),
            input.billing_start,
        )
        return PlanAssignmentType.from_row(row)

    @strawberry.mutation(
        extensions=guard(SUBSCRIPTION_PLANS, Action.UPDATE),
        description="The customer is billed by no plan any more; its invoices stay.",
    )
    async def plan_unassign(self, info: Info, customer_id: strawberry.ID) -> DeletePayload:
        row = await plans.unassign(actor(info), customer_pk(customer_id, "customerId"))
        return DeletePayload(deleted_id=gid("PlanAssignment", row.id))
