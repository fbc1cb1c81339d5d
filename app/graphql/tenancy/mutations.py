"""Mutations on the tenant tree, named noun-first."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz.capabilities import COMPANIES, LOCATIONS, RESELLERS
from app.authz.matrix import Action
from app.graphql.common import actor
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.permissions import guard
from app.graphql.tenancy.types import CompanyType, LocationType, ResellerType
from app.models import OrgKind
from app.services import tenancy
from app.services.users import NewUser

Info = strawberry.Info[Context, Any]


@strawberry.input
class NewUserInput:
    email: str
    name: str
    password: str

    def to_new(self) -> NewUser:
        return NewUser(email=self.email, name=self.name, password=self.password)


@strawberry.input
class ResellerCreateInput:
    name: str
    email: str = ""
    admin: NewUserInput = strawberry.field(
        description="The reseller's Service Provider Global Administrator, created with it."
    )


@strawberry.input
class CompanyCreateInput:
    name: str
    email: str = ""
    reseller_id: strawberry.ID | None = strawberry.field(
        default=None, description="Null: under the provider (or under your own reseller)."
    )
    owner: NewUserInput = strawberry.field(description="The Company Owner, created with it.")
    default_location_name: str = tenancy.DEFAULT_LOCATION_NAME


@strawberry.input
class OrganizationUpdateInput:
    id: strawberry.ID
    name: str | None = None
    email: str | None = None


@strawberry.input
class LocationCreateInput:
    company_id: strawberry.ID
    name: str


@strawberry.input
class LocationUpdateInput:
    id: strawberry.ID
    name: str


@strawberry.type
class DeletePayload:
    deleted_id: strawberry.ID


@strawberry.type
class TenancyMutation:
    @strawberry.mutation(extensions=guard(RESELLERS, Action.CREATE))
    async def reseller_create(self, info: Info, input: ResellerCreateInput) -> ResellerType:
        row = await tenancy.register_reseller(
            actor(info), input.name, input.email, input.admin.to_new()
        )
        return ResellerType.from_row(row)

    @strawberry.mutation(extensions=guard(RESELLERS, Action.UPDATE))
    async def reseller_update(self, info: Info, input: OrganizationUpdateInput) -> ResellerType:
        row = await tenancy.update_organization(
            actor(info), pk_of(input.id, "Reseller"), OrgKind.RESELLER, input.name, input.email
        )
        return ResellerType.from_row(row)

    @strawberry.mutation(extensions=guard(RESELLERS, Action.UPDATE))
    async def reseller_disable(self, info: Info, id: strawberry.ID) -> ResellerType:
        row = await tenancy.set_organization_enabled(
            actor(info), pk_of(id, "Reseller"), OrgKind.RESELLER, False
        )
        return ResellerType.from_row(row)

    @strawberry.mutation(extensions=guard(RESELLERS, Action.UPDATE))
    async def reseller_enable(self, info: Info, id: strawberry.ID) -> ResellerType:
        row = await tenancy.set_organization_enabled(
            actor(info), pk_of(id, "Reseller"), OrgKind.RESELLER, True
        )
        return ResellerType.from_row(row)

    @strawberry.mutation(
        extensions=guard(RESELLERS, Action.DELETE),
        description="Removes a reseller; its companies move to the provider.",
    )
    async def reseller_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await tenancy.delete_reseller(actor(info), pk_of(id, "Reseller"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(extensions=guard(COMPANIES, Action.CREATE))
    async def company_create(self, info: Info, input: CompanyCreateInput) -> CompanyType:
        parent = pk_of(input.reseller_id, "Reseller", "resellerId") if input.reseller_id else None
        row = await tenancy.register_company(
            actor(info),
            input.name,
            input.email,
            input.owner.to_new(),
            parent,
            input.default_location_name,
        )
        return CompanyType.from_row(row)

    @strawberry.mutation(extensions=guard(COMPANIES, Action.UPDATE))
    async def company_update(self, info: Info, input: OrganizationUpdateInput) -> CompanyType:
        row = await tenancy.update_organization(
            actor(info), pk_of(input.id, "Company"), OrgKind.COMPANY, input.name, input.email
        )
        return CompanyType.from_row(row)

    @strawberry.mutation(extensions=guard(COMPANIES, Action.UPDATE))
    async def company_disable(self, info: Info, id: strawberry.ID) -> CompanyType:
        row = await tenancy.set_organization_enabled(
            actor(info), pk_of(id, "Company"), OrgKind.COMPANY, False
        )
        return CompanyType.from_row(row)

    @strawberry.mutation(extensions=guard(COMPANIES, Action.UPDATE))
    async def company_enable(self, info: Info, id: strawberry.ID) -> CompanyType:
        row = await tenancy.set_organization_enabled(
            actor(info), pk_of(id, "Company"), OrgKind.COMPANY, True
        )
        return CompanyType.from_row(row)

    @strawberry.mutation(
        extensions=guard(COMPANIES, Action.DELETE),
        description="Removes a company and everything that belongs to it, in one transaction.",
    )
    async def company_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await tenancy.delete_company(actor(info), pk_of(id, "Company"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(extensions=guard(LOCATIONS, Action.CREATE))
    async def location_create(self, info: Info, input: LocationCreateInput) -> LocationType:
        row = await tenancy.create_location(
            actor(info), pk_of(input.company_id, "Company", "companyId"), input.name
        )
        return LocationType.from_row(row)

    @strawberry.mutation(extensions=guard(LOCATIONS, Action.UPDATE))
    async def location_update(self, info: Info, input: LocationUpdateInput) -> LocationType:
        row = await tenancy.update_location(actor(info), pk_of(input.id, "Location"), input.name)
        return LocationType.from_row(row)

    @strawberry.mutation(extensions=guard(LOCATIONS, Action.DELETE))
    async def location_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await tenancy.delete_location(actor(info), pk_of(id, "Location"))
        return DeletePayload(
            deleted_id=strawberry.ID(to_global_id("Location", pk_of(id, "Location")))
        )
