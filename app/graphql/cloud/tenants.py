"""GraphQL for Cloud Connect: tenant accounts, backup resources (quotas), subtenants, BaaS."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from tortoise.expressions import Subquery

from app.authz import scope
from app.authz.capabilities import (
    COMPANY_SERVICE,
    SUBTENANTS,
    TENANT_ACCOUNTS,
    TENANT_CONSENT,
)
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.cloud.tenant_types import (
    BackupResourceType,
    GatewaySelection,
    SubtenantType,
    TenantAccountKind,
    TenantAccountType,
)
from app.graphql.common import actor, principal, register_node
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.graphql.tenancy.types import CompanyType
from app.models import Subtenant, TenantAccount
from app.services import quotas, tenant_account_status, tenant_accounts
from app.services.tenant_account_settings import UNCHANGED, AccountSettings
from app.services.users import NewUser

Info = strawberry.Info[Context, Any]
UNSET: Any = strawberry.UNSET


def _kept(value: Any) -> Any:
    return UNCHANGED if value is UNSET else value


def _pool_ids(ids: list[strawberry.ID] | None) -> list[int] | None:
    if ids is None or ids is UNSET:
        return ids
    return [pk_of(i, "GatewayPool", "input.gatewayPoolIds") for i in ids]


async def _account(p: Principal, pk: int) -> TenantAccountType:
    return TenantAccountType.from_row(await tenant_accounts.account_in_scope(p, pk))


async def _resource(p: Principal, pk: int) -> BackupResourceType:
    return BackupResourceType.from_row(await quotas.resource_in_scope(p, pk))


async def _subtenant(p: Principal, pk: int) -> SubtenantType:
    return SubtenantType.from_row(await quotas.subtenant_in_scope(p, pk))


register_node("TenantAccount", TENANT_ACCOUNTS, _account)
register_node("BackupResource", TENANT_ACCOUNTS, _resource)
register_node("Subtenant", SUBTENANTS, _subtenant)


@strawberry.input
class TenantAccountFilter:
    company_id: strawberry.ID | None = None
    active: bool | None = strawberry.field(
        default=None, description="Only accounts that work (true) or that do not (false)."
    )


@strawberry.input
class SubtenantFilter:
    tenant_account_id: strawberry.ID | None = None


@strawberry.input
class TenantAccountCreateInput:
    company_id: strawberry.ID
    name: str = strawberry.field(description="Unique; also the account's login.")
    type: TenantAccountKind  # type: ignore[valid-type]
    password: str
    lease_expires_at: datetime | None = None
    max_concurrent_tasks: int = 1
    bandwidth_limit_mbps: int | None = None
    gateway_selection: GatewaySelection = GatewaySelection.ALL  # type: ignore[valid-type]
    gateway_pool_ids: list[strawberry.ID] | None = None
    gateway_failover: bool = False


@strawberry.input(
    description="Omitted fields stay as they are. The type (STANDALONE / VCD) is fixed at"
    " creation and is not part of this input."
)
class TenantAccountUpdateInput:
    id: strawberry.ID
    name: str | None = UNSET
    lease_expires_at: datetime | None = strawberry.field(
        default=UNSET, description="Null: no expiry."
    )
    max_concurrent_tasks: int | None = UNSET
    bandwidth_limit_mbps: int | None = strawberry.field(default=UNSET, description="Null: none.")
    gateway_selection: GatewaySelection | None = UNSET  # type: ignore[valid-type]
    gateway_pool_ids: list[strawberry.ID] | None = UNSET
    gateway_failover: bool | None = UNSET


@strawberry.input
class TenantAccountPasswordRotateInput:
    id: strawberry.ID
    new_password: str


@strawberry.input
class TenantAccountConsentSetInput:
    id: strawberry.ID
    managed_by_provider: bool = strawberry.field(
        description="Allow this Veeam Backup & Replication installation to be managed by the"
        " service provider. Withdrawing it ends open remote connections."
    )


@strawberry.input
class BackupResourceSetInput:
    tenant_account_id: strawberry.ID
    repository_id: strawberry.ID
    quota_gb: int
    allow_oversubscription: bool = strawberry.field(
        default=False,
        description="Go over the repository's capacity × oversubscription ratio (audited).",
    )


@strawberry.input
class SubtenantCreateInput:
    tenant_account_id: strawberry.ID
    repository_id: strawberry.ID
    email: str
    name: str
    password: str
    quota_gb: int | None = strawberry.field(
        default=None, description="Null: unlimited, that is up to the tenant's quota."
    )


@strawberry.input
class SubtenantUpdateInput:
    id: strawberry.ID
    quota_gb: int | None = strawberry.field(
        default=UNSET, description="Null: unlimited; omitted: unchanged."
    )
    enabled: bool | None = None


@strawberry.input
class CompanyBaasSetInput:
    company_id: strawberry.ID
    baas: bool


@strawberry.type
class TenantQuery:
    @strawberry.field(extensions=guard(TENANT_ACCOUNTS, Action.READ))
    async def tenant_accounts(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: TenantAccountFilter | None = None,
    ) -> Connection[TenantAccountType] | None:
        query = TenantAccount.filter(scope.tenant_account_q(principal(info)))
        if filter is not None:
            if filter.company_id:
                query = query.filter(
                    company_id=pk_of(filter.company_id, "Company", "filter.companyId")
                )
            if filter.active is not None:
                active = TenantAccount.filter(tenant_account_status.active_q()).values("id")
                query = (
                    query.filter(id__in=Subquery(active))
                    if filter.active
                    else query.exclude(id__in=Subquery(active))
                )
        return await paginate(query, first, after, TenantAccountType.from_row)

    @strawberry.field(extensions=guard(TENANT_ACCOUNTS, Action.READ))
    async def tenant_account(self, info: Info, id: strawberry.ID) -> TenantAccountType | None:
        return await _account(principal(info), pk_of(id, "TenantAccount"))

    @strawberry.field(extensions=guard(SUBTENANTS, Action.READ))
    async def subtenants(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: SubtenantFilter | None = None,
    ) -> Connection[SubtenantType] | None:
        query = Subtenant.filter(
            scope.tenant_account_q(principal(info), "resource__tenant_account")
        )
        if filter is not None and filter.tenant_account_id:
            query = query.filter(
                resource__tenant_account_id=pk_of(
                    filter.tenant_account_id, "TenantAccount", "filter.tenantAccountId"
                )
            )
        return await paginate(query, first, after, SubtenantType.from_row)

    @strawberry.field(extensions=guard(SUBTENANTS, Action.READ))
    async def subtenant(self, info: Info, id: strawberry.ID) -> SubtenantType | None:
        return await _subtenant(principal(info), pk_of(id, "Subtenant"))


@strawberry.type
class TenantMutation:
    @strawberry.mutation(extensions=guard(TENANT_ACCOUNTS, Action.CREATE))
    async def tenant_account_create(
        self, info: Info, input: TenantAccountCreateInput
    ) -> TenantAccountType:
        row = await tenant_accounts.create_account(
            actor(info),
            pk_of(input.company_id, "Company", "input.companyId"),
            input.name,
            input.type,
            input.password,
            AccountSettings(
                lease_expires_at=input.lease_expires_at,
                max_concurrent_tasks=input.max_concurrent_tasks,
                bandwidth_limit_mbps=input.bandwidth_limit_mbps,
                gateway_selection=input.gateway_selection,
                gateway_pool_ids=_pool_ids(input.gateway_pool_ids) or [],
                gateway_failover=input.gateway_failover,
            ),
        )
        return TenantAccountType.from_row(row)

    @strawberry.mutation(extensions=guard(TENANT_ACCOUNTS, Action.UPDATE))
    async def tenant_account_update(
        self, info: Info, input: TenantAccountUpdateInput
    ) -> TenantAccountType:
        row = await tenant_accounts.update_account(
            actor(info),
            pk_of(input.id, "TenantAccount"),
            AccountSettings(
                name=_kept(input.name),
                lease_expires_at=_kept(input.lease_expires_at),
                max_concurrent_tasks=_kept(input.max_concurrent_tasks),
                bandwidth_limit_mbps=_kept(input.bandwidth_limit_mbps),
                gateway_selection=_kept(input.gateway_selection),
                gateway_pool_ids=_kept(_pool_ids(input.gateway_pool_ids)),
                gateway_failover=_kept(input.gateway_failover),
            ),
        )
        return TenantAccountType.from_row(row)

    @strawberry.mutation(extensions=guard(TENANT_ACCOUNTS, Action.UPDATE))
    async def tenant_account_password_rotate(
        self, info: Info, input: TenantAccountPasswordRotateInput
    ) -> TenantAccountType:
        row = await tenant_accounts.rotate_password(
            actor(info), pk_of(input.id, "TenantAccount"), input.new_password
        )
        return TenantAccountType.from_row(row)

    @strawberry.mutation(extensions=guard(TENANT_ACCOUNTS, Action.UPDATE))
    async def tenant_account_disable(self, info: Info, id: strawberry.ID) -> TenantAccountType:
        row = await tenant_accounts.set_enabled(actor(info), pk_of(id, "TenantAccount"), False)
        return TenantAccountType.from_row(row)

    @strawberry.mutation(extensions=guard(TENANT_ACCOUNTS, Action.UPDATE))
    async def tenant_account_enable(self, info: Info, id: strawberry.ID) -> TenantAccountType:
        row = await tenant_accounts.set_enabled(actor(info), pk_of(id, "TenantAccount"), True)
        return TenantAccountType.from_row(row)

    @strawberry.mutation(
        extensions=guard(TENANT_ACCOUNTS, Action.DELETE),
        description="Refused while any of its quotas holds backups; its subtenants go with it.",
    )
    async def tenant_account_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await tenant_accounts.delete_account(actor(info), pk_of(id, "TenantAccount"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(extensions=guard(TENANT_CONSENT, Action.UPDATE))
    async def tenant_account_consent_set(
        self, info: Info, input: TenantAccountConsentSetInput
    ) -> TenantAccountType:
        row = await tenant_accounts.set_consent(
            actor(info), pk_of(input.id, "TenantAccount"), input.managed_by_provider
        )
        return TenantAccountType.from_row(row)

    @strawberry.mutation(
        extensions=guard(TENANT_ACCOUNTS, Action.UPDATE),
        description="Creates the tenant's quota on the repository, or changes it.",
    )
    async def backup_resource_set(
        self, info: Info, input: BackupResourceSetInput
    ) -> BackupResourceType:
        row = await quotas.set_resource(
            actor(info),
            pk_of(input.tenant_account_id, "TenantAccount", "input.tenantAccountId"),
            pk_of(input.repository_id, "CloudRepository", "input.repositoryId"),
            input.quota_gb,
            input.allow_oversubscription,
        )
        return BackupResourceType.from_row(row)

    @strawberry.mutation(
        extensions=guard(TENANT_ACCOUNTS, Action.DELETE),
        description="Refused while it holds backups or has subtenants.",
    )
    async def backup_resource_remove(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await quotas.remove_resource(actor(info), pk_of(id, "BackupResource"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(extensions=guard(SUBTENANTS, Action.CREATE))
    async def subtenant_create(self, info: Info, input: SubtenantCreateInput) -> SubtenantType:
        row = await quotas.create_subtenant(
            actor(info),
            pk_of(input.tenant_account_id, "TenantAccount", "input.tenantAccountId"),
            pk_of(input.repository_id, "CloudRepository", "input.repositoryId"),
            NewUser(email=input.email, name=input.name, password=input.password),
            input.quota_gb,
        )
        return SubtenantType.from_row(row)

    @strawberry.mutation(extensions=guard(SUBTENANTS, Action.UPDATE))
    async def subtenant_update(self, info: Info, input: SubtenantUpdateInput) -> SubtenantType:
        row = await quotas.update_subtenant(
            actor(info),
            pk_of(input.id, "Subtenant"),
            UNCHANGED if input.quota_gb is UNSET else input.quota_gb,
            input.enabled,
        )
        return SubtenantType.from_row(row)

    @strawberry.mutation(
        extensions=guard(SUBTENANTS, Action.DELETE),
        description="Removes the subtenant and its user; refused while it holds backups.",
    )
    async def subtenant_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await quotas.delete_subtenant(actor(info), pk_of(id, "Subtenant"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(COMPANY_SERVICE, Action.UPDATE),
        description="Backup as a Service: the provider manages the company's tenant-side"
        " configuration. Set by provider or reseller staff.",
    )
    async def company_baas_set(self, info: Info, input: CompanyBaasSetInput) -> CompanyType:
        row = await tenant_accounts.set_company_baas(
            actor(info), pk_of(input.company_id, "Company", "input.companyId"), input.baas
        )
        return CompanyType.from_row(row)
