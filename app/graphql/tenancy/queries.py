"""Queries over the tenant tree; every list is scoped in SQL."""

from __future__ import annotations

from typing import Any

import strawberry
from tortoise.expressions import Q

from app.authz import scope
from app.authz.capabilities import COMPANIES, LOCATIONS, PROVIDER, RESELLERS
from app.authz.matrix import Action
from app.graphql.common import principal, register_node
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.types import (
    CompanyType,
    LocationType,
    ResellerType,
    ServiceProviderType,
)
from app.models import Location, Organization, OrgKind
from app.services.tenancy import location_in_scope, org_in_scope

Info = strawberry.Info[Context, Any]


@strawberry.input
class CompanyFilter:
    reseller_id: strawberry.ID | None = strawberry.UNSET
    direct: bool | None = strawberry.field(
        default=None, description="Only companies directly under the provider."
    )
    name_contains: str | None = None
    enabled: bool | None = None


async def _company(p, pk: int) -> CompanyType:  # type: ignore[no-untyped-def]
    return CompanyType.from_row(await org_in_scope(p, pk, OrgKind.COMPANY))


async def _reseller(p, pk: int) -> ResellerType:  # type: ignore[no-untyped-def]
    return ResellerType.from_row(await org_in_scope(p, pk, OrgKind.RESELLER))


async def _location(p, pk: int) -> LocationType:  # type: ignore[no-untyped-def]
    return LocationType.from_row(await location_in_scope(p, pk))


async def _provider(p, pk: int) -> ServiceProviderType:  # type: ignore[no-untyped-def]
    return ServiceProviderType.from_row(await org_in_scope(p, pk, OrgKind.PROVIDER))


register_node("ServiceProvider", PROVIDER, _provider)
register_node("Company", COMPANIES, _company)
register_node("Reseller", RESELLERS, _reseller)
register_node("Location", LOCATIONS, _location)


@strawberry.type
class TenancyQuery:
    @strawberry.field(extensions=guard(COMPANIES, Action.READ))
    async def companies(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: CompanyFilter | None = None,
    ) -> Connection[CompanyType] | None:
        query = Organization.filter(scope.company_q(principal(info)))
        if filter is not None:
            if filter.reseller_id:
                query = query.filter(
                    parent_id=pk_of(filter.reseller_id, "Reseller", "filter.resellerId")
                )
            if filter.direct:
                query = query.filter(parent__kind=OrgKind.PROVIDER.value)
            if filter.name_contains:
                query = query.filter(name__icontains=filter.name_contains)
            if filter.enabled is not None:
                query = query.filter(enabled=filter.enabled)
        return await paginate(query, first, after, CompanyType.from_row)

    @strawberry.field(extensions=guard(COMPANIES, Action.READ))
    async def company(self, info: Info, id: strawberry.ID) -> CompanyType | None:
        return await _company(principal(info), pk_of(id, "Company"))

    @strawberry.field(extensions=guard(RESELLERS, Action.READ))
    async def resellers(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[ResellerType] | None:
        query = Organization.filter(scope.org_q(principal(info)), kind=OrgKind.RESELLER.value)
        return await paginate(query, first, after, ResellerType.from_row)

    @strawberry.field(extensions=guard(RESELLERS, Action.READ))
    async def reseller(self, info: Info, id: strawberry.ID) -> ResellerType | None:
        return await _reseller(principal(info), pk_of(id, "Reseller"))

    @strawberry.field(extensions=guard(LOCATIONS, Action.READ))
    async def locations(
        self,
        info: Info,
        company_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[LocationType] | None:
        query = Location.filter(scope.location_q(principal(info)))
        if company_id:
            query = query.filter(Q(company_id=pk_of(company_id, "Company", "companyId")))
        return await paginate(query, first, after, LocationType.from_row)

    @strawberry.field(extensions=guard(LOCATIONS, Action.READ))
    async def location(self, info: Info, id: strawberry.ID) -> LocationType | None:
        return await _location(principal(info), pk_of(id, "Location"))
