"""GraphQL types of tenant accounts, backup resources (quotas) and subtenants, and the
per-request loaders they resolve through (one query per level, scoped in SQL)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader

from app.authz import engine, scope
from app.authz.capabilities import SUBTENANTS, TENANT_ACCOUNTS, TENANT_CONSENT, Capability
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.graphql.common import Node, principal
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.graphql.permissions import guard
from app.models import (
    BackupResource,
    CloudRepository,
    GatewayPool,
    Subtenant,
    TenantAccount,
    User,
)
from app.models import GatewaySelection as GatewaySelectionModel
from app.models import TenantAccountType as TenantAccountTypeModel
from app.services.quotas import subtenant_target
from app.services.tenant_account_status import lease_expired
from app.services.tenant_accounts import account_target

if TYPE_CHECKING:
    from app.graphql.tenancy.types import CompanyType

Info = strawberry.Info[Context, Any]

TenantAccountKind = strawberry.enum(
    TenantAccountTypeModel,
    name="TenantAccountType",
    description="STANDALONE (a native Veeam Backup & Replication tenant) or VCD (VMware Cloud"
    " Director); fixed at creation.",
)
GatewaySelection = strawberry.enum(
    GatewaySelectionModel, name="GatewaySelection", description="ALL gateways, or chosen POOLS."
)


class TenantLoaders:
    """Loaders for this module's types, built once per request on first use."""

    def __init__(self, p: Principal | None) -> None:
        self.p = p
        self.account: DataLoader[int, TenantAccount | None] = DataLoader(self._accounts)
        self.resource: DataLoader[int, BackupResource | None] = DataLoader(self._resources)
        self.resources_by_account: DataLoader[int, list[BackupResource]] = DataLoader(
            self._resources_by_account
        )
        self.subtenants_by_resource: DataLoader[int, list[Subtenant]] = DataLoader(
            self._subtenants_by_resource
        )
        self.subtenants_by_account: DataLoader[int, list[Subtenant]] = DataLoader(
            self._subtenants_by_account
        )
        self.pools_by_account: DataLoader[int, list[GatewayPool]] = DataLoader(
            self._pools_by_account
        )
        self.repository: DataLoader[int, CloudRepository | None] = DataLoader(self._repositories)
        self.user: DataLoader[int, User | None] = DataLoader(self._users)

    def _scoped(self, query: Any, path: str) -> Any:
        return query.filter(scope.tenant_account_q(self.p, path)) if self.p else query

    async def _accounts(self, ids: Sequence[int]) -> list[TenantAccount | None]:
        rows = await self._scoped(TenantAccount.filter(id__in=list(ids)), "")
        found = {r.id: r for r in rows}
        return [found.get(i) for i in ids]

    async def _resources(self, ids: Sequence[int]) -> list[BackupResource | None]:
        rows = await self._scoped(BackupResource.filter(id__in=list(ids)), "tenant_account")
        found = {r.id: r for r in rows}
        return [found.get(i) for i in ids]

    async def _resources_by_account(self, ids: Sequence[int]) -> list[list[BackupResource]]:
        grouped: dict[int, list[BackupResource]] = defaultdict(list)
        query = self._scoped(
            BackupResource.filter(tenant_account_id__in=list(ids)), "tenant_account"
        )
        for r in await query.order_by("id"):
            grouped[r.tenant_account_id].append(r)
        return [grouped.get(i, []) for i in ids]

    async def _subtenants_by_resource(self, ids: Sequence[int]) -> list[list[Subtenant]]:
        grouped: dict[int, list[Subtenant]] = defaultdict(list)
        query = self._scoped(
            Subtenant.filter(resource_id__in=list(ids)), "resource__tenant_account"
        )
        for s in await query.order_by("id"):
            grouped[s.resource_id].append(s)
        return [grouped.get(i, []) for i in ids]

    async def _subtenants_by_account(self, ids: Sequence[int]) -> list[list[Subtenant]]:
        grouped: dict[int, list[Subtenant]] = defaultdict(list)
        query = self._scoped(
            Subtenant.filter(resource__tenant_account_id__in=list(ids)), "resource__tenant_account"
        )
        rows = await query.order_by("id").values_list("id", "resource__tenant_account_id")
        by_id = {s.id: s for s in await Subtenant.filter(id__in=[r[0] for r in rows])}
        for sid, account_id in rows:
            grouped[account_id].append(by_id[sid])
        return [grouped.get(i, []) for i in ids]

    async def _pools_by_account(self, ids: Sequence[int]) -> list[list[GatewayPool]]:
        grouped: dict[int, list[GatewayPool]] = defaultdict(list)
        links = await TenantAccount.filter(id__in=list(ids)).values_list("id", "gateway_pools__id")
        pool_ids = {pid for _, pid in links if pid is not None}
        pools = {p.id: p for p in await GatewayPool.filter(id__in=list(pool_ids))}
        for account_id, pid in links:
            if pid is not None:
                grouped[account_id].append(pools[pid])
        return [sorted(grouped.get(i, []), key=lambda p: p.id) for i in ids]

    async def _repositories(self, ids: Sequence[int]) -> list[CloudRepository | None]:
        found = {r.id: r for r in await CloudRepository.filter(id__in=list(ids))}
        return [found.get(i) for i in ids]

    async def _users(self, ids: Sequence[int]) -> list[User | None]:
        found = {u.id: u for u in await User.filter(id__in=list(ids))}
        return [found.get(i) for i in ids]


def loaders(info: Info) -> TenantLoaders:
    holder = info.context.loaders
    found = getattr(holder, "_tenant_loaders", None)
    if found is None:
        found = TenantLoaders(info.context.principal)
        holder._tenant_loaders = found  # type: ignore[attr-defined]
    return found


def _can(info: Info, capability: Capability, action: Action, target: Target) -> bool:
    if info.context.bypass_authorization:
        return True
    return engine.can(principal(info), capability, action, target)


@strawberry.type(name="TenantGatewayPool", description="A gateway pool a tenant account uses.")
class TenantGatewayPoolType:
    id: strawberry.ID
    name: str


@strawberry.type(name="TenantRepository", description="The cloud repository of a quota.")
class TenantRepositoryType:
    id: strawberry.ID
    name: str


@strawberry.type(name="TenantAccount")
class TenantAccountType(Node):
    _row: strawberry.Private[TenantAccount]
    id: strawberry.ID
    name: str
    type: TenantAccountKind  # type: ignore[valid-type]
    enabled: bool = strawberry.field(description="The account's own switch.")
    lease_expires_at: datetime | None
    max_concurrent_tasks: int
    bandwidth_limit_mbps: int | None = strawberry.field(description="Null: no limit.")
    gateway_selection: GatewaySelection  # type: ignore[valid-type]
    gateway_failover: bool = strawberry.field(
        description="With POOLS: fail over to other gateways when the pools are unreachable."
    )
    managed_by_provider: bool = strawberry.field(
        description="The company allows its Veeam Backup & Replication installation to be"
        " managed by the service provider."
    )
    password_changed_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: TenantAccount) -> TenantAccountType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("TenantAccount", row.id)),
            name=row.name,
            type=row.type,
            enabled=row.enabled,
            lease_expires_at=row.lease_expires_at,
            max_concurrent_tasks=row.max_concurrent_tasks,
            bandwidth_limit_mbps=row.bandwidth_limit_mbps,
            gateway_selection=row.gateway_selection,
            gateway_failover=row.gateway_failover,
            managed_by_provider=row.managed_by_provider,
            password_changed_at=row.password_changed_at,
            created_at=row.created_at,
        )

    @strawberry.field(
        description="Enabled, lease not expired, and its company (and the company's reseller)"
        " enabled: the account works."
    )
    async def active(self, info: Info) -> bool:
        if not self._row.enabled or lease_expired(self._row):
            return False
        # The company's own switch and its reseller's (or the provider's).
        return await info.context.loaders.tree_enabled.load(self._row.company_id)  # type: ignore[attr-defined]

    @strawberry.field
    async def company(
        self, info: Info
    ) -> Annotated[CompanyType, strawberry.lazy("app.graphql.tenancy.types")] | None:
        from app.graphql.tenancy.types import CompanyType

        org = await info.context.loaders.organization.load(self._row.company_id)  # type: ignore[attr-defined]
        return CompanyType.from_row(org) if org else None

    @strawberry.field
    async def gateway_pools(self, info: Info) -> list[TenantGatewayPoolType]:
        pools = await loaders(info).pools_by_account.load(self._row.id)
        return [
            TenantGatewayPoolType(id=strawberry.ID(to_global_id("GatewayPool", p.id)), name=p.name)
            for p in pools
        ]

    @strawberry.field(description="The account's storage quotas, one per cloud repository.")
    async def backup_resources(self, info: Info) -> list[BackupResourceType]:
        rows = await loaders(info).resources_by_account.load(self._row.id)
        return [BackupResourceType.from_row(r) for r in rows]

    @strawberry.field(extensions=guard(SUBTENANTS, Action.READ))
    async def subtenants(self, info: Info) -> list[SubtenantType] | None:
        rows = await loaders(info).subtenants_by_account.load(self._row.id)
        return [SubtenantType.from_row(r) for r in rows]

    @strawberry.field(description="Settings, credentials, quotas, enable/disable.")
    def viewer_can_update(self, info: Info) -> bool:
        return _can(info, TENANT_ACCOUNTS, Action.UPDATE, account_target(self._row))

    @strawberry.field
    def viewer_can_delete(self, info: Info) -> bool:
        return _can(info, TENANT_ACCOUNTS, Action.DELETE, account_target(self._row))

    @strawberry.field(description="May set whether the provider manages the backup server.")
    async def viewer_can_set_consent(self, info: Info) -> bool:
        if not _can(info, TENANT_CONSENT, Action.UPDATE, account_target(self._row, TENANT_CONSENT)):
            return False
        own_company = self._row.company_id == principal(info).organization_id  # type: ignore[attr-defined]
        if own_company or info.context.bypass_authorization:
            return True
        company = await info.context.loaders.organization.load(self._row.company_id)  # type: ignore[attr-defined]
        return bool(company is not None and company.baas)

    @strawberry.field
    def viewer_can_create_subtenant(self, info: Info) -> bool:
        return self._row.type is TenantAccountTypeModel.STANDALONE and _can(
            info,
            SUBTENANTS,
            Action.CREATE,
            subtenant_target(self._row.company_id),  # type: ignore[attr-defined]
        )


@strawberry.type(name="BackupResource", description="A tenant's storage quota on a repository.")
class BackupResourceType(Node):
    _row: strawberry.Private[BackupResource]
    id: strawberry.ID
    quota_gb: int
    used_gb: int

    @classmethod
    def from_row(cls, row: BackupResource) -> BackupResourceType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("BackupResource", row.id)),
            quota_gb=row.quota_gb,
            used_gb=row.used_gb,
        )

    @strawberry.field
    def free_gb(self) -> int:
        return max(self._row.quota_gb - self._row.used_gb, 0)

    @strawberry.field
    async def repository(self, info: Info) -> TenantRepositoryType | None:
        repo = await loaders(info).repository.load(self._row.repository_id)  # type: ignore[attr-defined]
        if repo is None:
            return None
        return TenantRepositoryType(
            id=strawberry.ID(to_global_id("CloudRepository", repo.id)), name=repo.name
        )

    @strawberry.field
    async def tenant_account(self, info: Info) -> TenantAccountType | None:
        row = await loaders(info).account.load(self._row.tenant_account_id)  # type: ignore[attr-defined]
        return TenantAccountType.from_row(row) if row else None

    @strawberry.field(
        description="The sum of the subtenants' quotas (unlimited subtenants count 0)."
    )
    async def subtenant_quota_gb(self, info: Info) -> int:
        rows = await loaders(info).subtenants_by_resource.load(self._row.id)
        return sum(r.quota_gb or 0 for r in rows)

    @strawberry.field(extensions=guard(SUBTENANTS, Action.READ))
    async def subtenants(self, info: Info) -> list[SubtenantType] | None:
        rows = await loaders(info).subtenants_by_resource.load(self._row.id)
        return [SubtenantType.from_row(r) for r in rows]


@strawberry.type(name="Subtenant", description="A Subtenant user with a quota on a resource.")
class SubtenantType(Node):
    _row: strawberry.Private[Subtenant]
    id: strawberry.ID
    quota_gb: int | None = strawberry.field(description="Null: up to the tenant's quota.")
    used_gb: int
    enabled: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: Subtenant) -> SubtenantType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("Subtenant", row.id)),
            quota_gb=row.quota_gb,
            used_gb=row.used_gb,
            enabled=row.enabled,
            created_at=row.created_at,
        )

    async def _user(self, info: Info) -> User | None:
        return await loaders(info).user.load(self._row.user_id)  # type: ignore[attr-defined]

    @strawberry.field
    async def email(self, info: Info) -> str:
        user = await self._user(info)
        return user.email if user else ""

    @strawberry.field
    async def name(self, info: Info) -> str:
        user = await self._user(info)
        return user.name if user else ""

    @strawberry.field(description="The user's global id (a User).")
    def user_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("User", self._row.user_id))  # type: ignore[attr-defined]

    @strawberry.field
    async def backup_resource(self, info: Info) -> BackupResourceType | None:
        row = await loaders(info).resource.load(self._row.resource_id)  # type: ignore[attr-defined]
        return BackupResourceType.from_row(row) if row else None

    @strawberry.field(description="What the subtenant may use: its quota, or the tenant's.")
    async def effective_quota_gb(self, info: Info) -> int | None:
        if self._row.quota_gb is not None:
            return self._row.quota_gb
        row = await loaders(info).resource.load(self._row.resource_id)  # type: ignore[attr-defined]
        return row.quota_gb if row else None

    async def _target(self, info: Info) -> Target | None:
        row = await loaders(info).resource.load(self._row.resource_id)  # type: ignore[attr-defined]
        account = await loaders(info).account.load(row.tenant_account_id) if row else None  # type: ignore[attr-defined]
        return subtenant_target(account.company_id) if account else None  # type: ignore[attr-defined]

    @strawberry.field
    async def viewer_can_update(self, info: Info) -> bool:
        target = await self._target(info)
        return target is not None and _can(info, SUBTENANTS, Action.UPDATE, target)

    @strawberry.field
    async def viewer_can_delete(self, info: Info) -> bool:
        target = await self._target(info)
        return target is not None and _can(info, SUBTENANTS, Action.DELETE, target)
