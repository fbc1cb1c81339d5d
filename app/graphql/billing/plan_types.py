"""GraphQL types of subscription plans: the plan, its rates, an assignment, the billing
enums the invoice types share, and the per-request loaders that keep a page of plans at one
query per relation (rates, customer counts) whatever its size."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from weakref import WeakKeyDictionary

import strawberry
from strawberry.dataloader import DataLoader

from app.authz.capabilities import SUBSCRIPTION_PLANS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import BadInput
from app.graphql.common import Node, principal, viewer_can
from app.graphql.context import Context
from app.graphql.ids import from_global_id, to_global_id
from app.graphql.loaders import Loaders
from app.graphql.tenancy.types import CompanyType, OrganizationType, ResellerType
from app.models.billing import (
    BillingItem,
    InvoiceType,
    PlanAssignment,
    PlanRate,
    StorageMode,
    SubscriptionPlan,
    TaxType,
)
from app.models.tenancy import OrgKind
from app.services import subscription_plans as plans

Info = strawberry.Info[Context, Any]

# Shared by the billing types (invoices import these rather than declaring their own).
BillingItemEnum = strawberry.enum(BillingItem, name="BillingItem")
StorageModeEnum = strawberry.enum(
    StorageMode,
    name="StorageMode",
    description="Cloud storage billed on the quota given (ALLOCATED) or the space used "
    "(CONSUMED, in blocks of blockGb, optionally rounded up).",
)
TaxTypeEnum = strawberry.enum(TaxType, name="TaxType")
InvoiceTypeEnum = strawberry.enum(
    InvoiceType,
    name="InvoiceType",
    description="SUMMARY: a line per item; DETAILED: lines per location; QUOTA_USAGE: "
    "quantities only, no costs.",
)

CUSTOMER_TYPES = {"Company": OrgKind.COMPANY, "Reseller": OrgKind.RESELLER}


def gid(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(to_global_id(type_name, pk))


def customer_pk(global_id: str, field: str) -> int:
    type_name, pk = from_global_id(global_id, field)
    if type_name not in CUSTOMER_TYPES:
        raise BadInput("expected the id of a Company or a Reseller", field=field)
    return pk


# --- loaders, one set per request -----------------------------------------------------------


class PlanLoaders:
    def __init__(self, p: Principal) -> None:
        self.principal = p
        self.rates: DataLoader[int, list[PlanRate]] = DataLoader(self._rates)
        self.customer_count: DataLoader[int, int] = DataLoader(self._counts)
        self.plan: DataLoader[int, SubscriptionPlan | None] = DataLoader(self._plans)

    async def _rates(self, plan_ids: Sequence[int]) -> list[list[PlanRate]]:
        found = await plans.rates_by_plan(plan_ids)
        return [found.get(pk, []) for pk in plan_ids]

    async def _counts(self, plan_ids: Sequence[int]) -> list[int]:
        found = await plans.customer_counts(plan_ids)
        return [found.get(pk, 0) for pk in plan_ids]

    async def _plans(self, plan_ids: Sequence[int]) -> list[SubscriptionPlan | None]:
        rows = await SubscriptionPlan.filter(
            plans.plan_q(self.principal), id__in=list(plan_ids)
        ).select_related("owner")
        found = {row.id: row for row in rows}
        return [found.get(pk) for pk in plan_ids]


_LOADERS: WeakKeyDictionary[Loaders, PlanLoaders] = WeakKeyDictionary()


def loaders(info: Info) -> PlanLoaders:
    request_loaders = info.context.loaders
    found = _LOADERS.get(request_loaders)
    if found is None:
        found = _LOADERS[request_loaders] = PlanLoaders(principal(info))
    return found


# --- types ----------------------------------------------------------------------------------


@strawberry.type(name="PlanRate", description="The price of one billed item.")
class PlanRateType:
    item: BillingItemEnum  # type: ignore[valid-type]
    rate: Decimal | None = strawberry.field(description="Per unit; null: the item is not billed.")
    free_allowance: Decimal = strawberry.field(description="Units free of charge per invoice.")
    storage_mode: StorageModeEnum | None = strawberry.field(  # type: ignore[valid-type]
        description="CLOUD_STORAGE_GB only."
    )
    block_gb: int | None = strawberry.field(description="CLOUD_STORAGE_GB only.")
    round_up: bool | None = strawberry.field(description="CLOUD_STORAGE_GB only.")

    @classmethod
    def from_row(cls, row: PlanRate) -> PlanRateType:
        storage = row.item == BillingItem.CLOUD_STORAGE_GB
        return cls(
            item=row.item,
            rate=row.rate,
            free_allowance=row.free_allowance,
            storage_mode=row.storage_mode if storage else None,
            block_gb=row.block_gb if storage else None,
            round_up=row.round_up if storage else None,
        )


@strawberry.type(
    name="SubscriptionPlan",
    description="A price list of your provider or reseller. Edits affect only invoices "
    "generated afterwards (invoices copy the rates they used).",
)
class SubscriptionPlanType(Node):
    _row: strawberry.Private[SubscriptionPlan]
    id: strawberry.ID
    owner_id: strawberry.ID
    name: str
    description: str
    currency: str = strawberry.field(description="ISO 4217 code.")
    tax_type: TaxTypeEnum  # type: ignore[valid-type]
    tax_rate_percent: Decimal = strawberry.field(description="Charged on the discounted sum.")
    discount_percent: Decimal
    billing_day: int = strawberry.field(description="Invoices are dated on this day (1-28).")
    due_days: int = strawberry.field(description="Invoices are due this many days later.")
    invoice_type: InvoiceTypeEnum  # type: ignore[valid-type]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: SubscriptionPlan) -> SubscriptionPlanType:
        owner = row.owner
        return cls(
            _row=row,
            id=gid("SubscriptionPlan", row.id),
            owner_id=gid(
                "ServiceProvider" if owner.kind is OrgKind.PROVIDER else "Reseller", owner.id
            ),
            name=row.name,
            description=row.description,
            currency=row.currency,
            tax_type=row.tax_type,
            tax_rate_percent=row.tax_rate_percent,
            discount_percent=row.discount_percent,
            billing_day=row.billing_day,
            due_days=row.due_days,
            invoice_type=row.invoice_type,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @strawberry.field(description="The billed items; items not listed are not billed.")
    async def rates(self, info: Info) -> list[PlanRateType]:
        return [PlanRateType.from_row(r) for r in await loaders(info).rates.load(self._row.id)]

    @strawberry.field(description="How many customers this plan bills.")
    async def assigned_customer_count(self, info: Info) -> int:
        return await loaders(info).customer_count.load(self._row.id)

    def _can(self, info: Info, action: Action) -> bool:
        return viewer_can(info, SUBSCRIPTION_PLANS, action, plans.plan_target(self._row))

    @strawberry.field(description="You may edit the plan and its rates.")
    def viewer_can_update(self, info: Info) -> bool:
        return self._can(info, Action.UPDATE)

    @strawberry.field(description="You may remove the plan (it must also bill nobody).")
    def viewer_can_delete(self, info: Info) -> bool:
        return self._can(info, Action.DELETE)

    @strawberry.field(description="You may assign the plan to the customers its owner bills.")
    def viewer_can_assign(self, info: Info) -> bool:
        return self._can(info, Action.UPDATE)


@strawberry.type(name="PlanAssignment", description="The plan that bills a customer.")
class PlanAssignmentType(Node):
    _row: strawberry.Private[PlanAssignment]
    id: strawberry.ID
    customer_id: strawberry.ID
    plan_id: strawberry.ID
    billing_start: date = strawberry.field(description="The first invoice's period starts here.")
    assigned_at: datetime

    @classmethod
    def from_row(cls, row: PlanAssignment) -> PlanAssignmentType:
        kind = row.customer.kind  # customers are fetched with their assignment
        return cls(
            _row=row,
            id=gid("PlanAssignment", row.id),
            customer_id=gid("Company" if kind is OrgKind.COMPANY else "Reseller", row.customer.id),
            plan_id=gid("SubscriptionPlan", row.plan_id),  # type: ignore[attr-defined]
            billing_start=row.billing_start,
            assigned_at=row.assigned_at,
        )

    @strawberry.field(description="A company, or a reseller billed by the provider.")
    def customer(self, info: Info) -> OrganizationType:
        org = self._row.customer
        return (CompanyType if org.kind is OrgKind.COMPANY else ResellerType).from_row(org)

    @strawberry.field
    async def plan(self, info: Info) -> SubscriptionPlanType | None:
        row = await loaders(info).plan.load(self._row.plan_id)  # type: ignore[attr-defined]
        return SubscriptionPlanType.from_row(row) if row else None
