"""GraphQL for license usage: units per company and product for a month, the same summed per
reseller (and for the provider's direct companies), and starting a recount.

Rows come from `license_usage` (written by the `licensing.collect` job), narrowed in SQL to
the companies in the caller's scope; the per-reseller sums are one GROUP BY. Only the Reseller
Portal has the Licensing row: company portals get FORBIDDEN from the field guard.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import strawberry
from tortoise.functions import Count, Sum

from app.authz import scope
from app.authz.capabilities import LICENSING
from app.authz.matrix import Action
from app.errors import NotFound
from app.graphql.common import actor, principal
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, pk_of, to_global_id
from app.graphql.jobs.types import JobType
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.models import Organization
from app.models.licensing import LicensedProduct, LicenseUsage
from app.models.tenancy import OrgKind
from app.services import licensing

Info = strawberry.Info[Context, Any]

LicensedProductEnum = strawberry.enum(
    LicensedProduct,
    name="LicensedProduct",
    description="What a license unit counts (see `licenseUsage` for the counting rules).",
)

COUNTING_RULES = (
    "Units per company and product for the month (any day of it; the first day is used), "
    "the highest count the month reached. AGENT_SERVER / AGENT_WORKSTATION: computers whose "
    "backup agent has that edition and that had a job session starting in the month. "
    "VBR_WORKLOAD: backup and replication jobs (not backup copies) with a session in the month; "
    "PUBLIC_CLOUD_WORKLOAD: public cloud policies; MICROSOFT_365_USER: Microsoft 365 jobs, "
    "likewise. Counted daily by `licensing.collect` (and by `licenseUsageCollect`)."
)


@strawberry.type(name="LicenseUsage", description="Units of one product a company used in a month.")
class LicenseUsageType:
    id: strawberry.ID
    company_id: strawberry.ID
    company_name: str
    product: LicensedProductEnum  # type: ignore[valid-type]
    month: date
    units: int
    updated_at: datetime

    @classmethod
    def from_row(cls, row: LicenseUsage) -> LicenseUsageType:
        return cls(
            id=strawberry.ID(to_global_id("LicenseUsage", row.id)),
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            company_name=row.company.name,
            product=row.product,
            month=row.month,
            units=row.units,
            updated_at=row.updated_at,
        )


@strawberry.type(
    description="Units of one product summed over the companies of a reseller, or over the "
    "provider's direct companies (organizationKind SERVICE_PROVIDER)."
)
class ResellerLicenseUsage:
    organization_id: strawberry.ID
    organization_name: str
    organization_type: str = strawberry.field(
        description="`Reseller`, or `ServiceProvider` for the provider's own companies."
    )
    product: LicensedProductEnum  # type: ignore[valid-type]
    month: date
    units: int
    companies: int = strawberry.field(description="Companies with at least one unit.")


async def _company_in_scope(info: Info, company_id: strawberry.ID) -> int:
    pk = pk_of(company_id, "Company", "companyId")
    if not await Organization.exists(scope.company_q(principal(info)), id=pk):
        raise NotFound("company")
    return pk


@strawberry.type
class LicensingQuery:
    @strawberry.field(extensions=guard(LICENSING, Action.READ), description=COUNTING_RULES)
    async def license_usage(
        self,
        info: Info,
        month: date,
        company_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[LicenseUsageType] | None:
        query = LicenseUsage.filter(
            scope.company_q(principal(info), "company"), month=licensing.month_of(month)
        ).select_related("company")
        if company_id is not None:
            query = query.filter(company_id=await _company_in_scope(info, company_id))
        return await paginate(query, first, after, LicenseUsageType.from_row)

    @strawberry.field(
        extensions=guard(LICENSING, Action.READ),
        description="License usage of the month summed per reseller in your scope, and over "
        "the provider's direct companies; ordered by organization name, then product.",
    )
    async def license_usage_by_reseller(
        self, info: Info, month: date
    ) -> list[ResellerLicenseUsage] | None:
        first_day = licensing.month_of(month)
        rows = (
            await LicenseUsage.filter(scope.company_q(principal(info), "company"), month=first_day)
            .annotate(total=Sum("units"), companies=Count("id"))
            .group_by(
                "company__parent_id", "company__parent__name", "company__parent__kind", "product"
            )
            .values(
                "company__parent_id",
                "company__parent__name",
                "company__parent__kind",
                "product",
                "total",
                "companies",
            )
        )
        out = [
            ResellerLicenseUsage(
                organization_id=strawberry.ID(
                    to_global_id(
                        ORG_TYPE_NAMES[OrgKind(r["company__parent__kind"])],
                        r["company__parent_id"],
                    )
                ),
                organization_name=r["company__parent__name"],
                organization_type=ORG_TYPE_NAMES[OrgKind(r["company__parent__kind"])],
                product=LicensedProduct(r["product"]),
                month=first_day,
                units=int(r["total"] or 0),
                companies=int(r["companies"]),
            )
            for r in rows
        ]
        order = {product: i for i, product in enumerate(licensing.PRODUCTS)}
        return sorted(
            out,
            key=lambda u: (
                u.organization_name,
                u.organization_id,
                order[LicensedProduct(u.product)],
            ),
        )


@strawberry.type
class LicensingMutation:
    @strawberry.mutation(
        extensions=guard(LICENSING, Action.UPDATE),
        description="Recounts license usage of a month (the current one by default) for the "
        "companies at or below your organization, in the background. Counts only ever rise "
        "within a month; a recount with the same inventory changes nothing.",
    )
    async def license_usage_collect(self, info: Info, month: date | None = None) -> JobType:
        return JobType.from_row(await licensing.start_collect(actor(info), month))
