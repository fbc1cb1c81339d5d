"""GraphQL types of the provider's Cloud Connect infrastructure, and the per-request loaders
their aggregate fields go through (one query per field per page, whatever the page size)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from tortoise.functions import Count, Sum

from app.graphql.common import Node
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.models import (
    BackupResource,
    Certificate,
    CloudGateway,
    CloudRepository,
    GatewayPool,
    HardwarePlan,
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    PublicIpAllocation,
    PublicIpPool,
    VlanAllocation,
    VlanRange,
)
from app.services import certificates
from app.services.cloud_networks import ip_pool_size

Info = strawberry.Info[Context, Any]


class InfraLoaders:
    """Attached lazily to the request's context by `loaders(info)`."""

    def __init__(self) -> None:
        self.repository_usage: DataLoader[int, tuple[int, int]] = DataLoader(self._repository_usage)
        self.pool: DataLoader[int, GatewayPool | None] = DataLoader(self._pool)
        self.gateways_by_pool: DataLoader[int, list[CloudGateway]] = DataLoader(
            self._gateways_by_pool
        )
        self.datastores_by_plan: DataLoader[int, list[HardwarePlanDatastore]] = DataLoader(
            self._datastores_by_plan
        )
        self.subscriptions_by_plan: DataLoader[int, int] = DataLoader(self._subscriptions_by_plan)
        self.vlans_allocated: DataLoader[int, int] = DataLoader(self._vlans_allocated)
        self.ips_allocated: DataLoader[int, int] = DataLoader(self._ips_allocated)
        # Keyed by a constant: the active certificate's names and every gateway, once.
        self.active_names: DataLoader[int, list[str] | None] = DataLoader(self._active_names)
        self.all_gateways: DataLoader[int, list[CloudGateway]] = DataLoader(self._all_gateways)

    async def _repository_usage(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        rows = (
            await BackupResource.filter(repository_id__in=list(ids))
            .annotate(total=Sum("quota_gb"), tenants=Count("tenant_account_id", distinct=True))
            .group_by("repository_id")
            .values("repository_id", "total", "tenants")
        )
        found = {r["repository_id"]: (int(r["total"] or 0), int(r["tenants"])) for r in rows}
        return [found.get(i, (0, 0)) for i in ids]

    async def _pool(self, ids: Sequence[int]) -> list[GatewayPool | None]:
        found = {p.id: p for p in await GatewayPool.filter(id__in=list(ids))}
        return [found.get(i) for i in ids]

    async def _gateways_by_pool(self, ids: Sequence[int]) -> list[list[CloudGateway]]:
        grouped: dict[int, list[CloudGateway]] = defaultdict(list)
        for g in await CloudGateway.filter(pool_id__in=list(ids)).order_by("id"):
            grouped[g.pool_id].append(g)  # type: ignore[attr-defined]
        return [grouped.get(i, []) for i in ids]

    async def _datastores_by_plan(self, ids: Sequence[int]) -> list[list[HardwarePlanDatastore]]:
        grouped: dict[int, list[HardwarePlanDatastore]] = defaultdict(list)
        for d in await HardwarePlanDatastore.filter(plan_id__in=list(ids)).order_by("id"):
            grouped[d.plan_id].append(d)  # type: ignore[attr-defined]
        return [grouped.get(i, []) for i in ids]

    @staticmethod
    async def _count_by(model: Any, key: str, ids: Sequence[int]) -> list[int]:
        rows = (
            await model.filter(**{f"{key}__in": list(ids)})
            .annotate(n=Count("id"))
            .group_by(key)
            .values(key, "n")
        )
        found = {r[key]: int(r["n"]) for r in rows}
        return [found.get(i, 0) for i in ids]

    async def _subscriptions_by_plan(self, ids: Sequence[int]) -> list[int]:
        return await self._count_by(HardwarePlanSubscription, "plan_id", ids)

    async def _vlans_allocated(self, ids: Sequence[int]) -> list[int]:
        return await self._count_by(VlanAllocation, "vlan_range_id", ids)

    async def _ips_allocated(self, ids: Sequence[int]) -> list[int]:
        return await self._count_by(PublicIpAllocation, "pool_id", ids)

    async def _active_names(self, keys: Sequence[int]) -> list[list[str] | None]:
        active = await Certificate.filter(active=True).order_by("-id").first()
        names = list(active.subject_alt_names) if active else None
        return [names for _ in keys]

    async def _all_gateways(self, keys: Sequence[int]) -> list[list[CloudGateway]]:
        rows = list(await CloudGateway.all().order_by("id"))
        return [rows for _ in keys]


def loaders(info: Info) -> InfraLoaders:
    existing = getattr(info.context, "infra_loaders", None)
    if existing is None:
        existing = InfraLoaders()
        info.context.infra_loaders = existing  # type: ignore[attr-defined]
    return existing


@strawberry.type(name="CloudRepository")
class CloudRepositoryType(Node):
    _row: strawberry.Private[CloudRepository]
    id: strawberry.ID
    name: str
    capacity_gb: int
    used_gb: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: CloudRepository) -> CloudRepositoryType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("CloudRepository", row.id)),
            name=row.name,
            capacity_gb=row.capacity_gb,
            used_gb=row.used_gb,
            created_at=row.created_at,
        )

    @strawberry.field(description="Capacity minus used space.")
    def free_gb(self) -> int:
        return self._row.capacity_gb - self._row.used_gb

    @strawberry.field(description="Sum of the tenant quotas on this repository.")
    async def allocated_gb(self, info: Info) -> int:
        return (await loaders(info).repository_usage.load(self._row.id))[0]

    @strawberry.field(description="Tenant accounts with a quota on this repository.")
    async def tenant_count(self, info: Info) -> int:
        return (await loaders(info).repository_usage.load(self._row.id))[1]


@strawberry.type(name="GatewayPool")
class GatewayPoolType(Node):
    _row: strawberry.Private[GatewayPool]
    id: strawberry.ID
    name: str

    @classmethod
    def from_row(cls, row: GatewayPool) -> GatewayPoolType:
        return cls(_row=row, id=strawberry.ID(to_global_id("GatewayPool", row.id)), name=row.name)

    @strawberry.field
    async def gateways(self, info: Info) -> list[CloudGatewayType]:
        rows = await loaders(info).gateways_by_pool.load(self._row.id)
        return [CloudGatewayType.from_row(g) for g in rows]


@strawberry.type(name="CloudGateway")
class CloudGatewayType(Node):
    _row: strawberry.Private[CloudGateway]
    id: strawberry.ID
    name: str
    address: str
    port: int
    enabled: bool
    redirector_capacity: int = strawberry.field(
        description="Concurrent remote sessions the gateway's network redirector can carry."
    )
    reachable: bool | None = strawberry.field(
        description="Whether the last probe (a TCP connect to address:port) succeeded; null "
        "until the current address and port were probed (a new address or port, or enabling "
        "the gateway, clears it)."
    )
    last_probe_at: datetime | None
    last_probe_error: str | None = strawberry.field(
        description="Why the last probe failed (refused, no answer within the timeout, name "
        "not resolved); null when it succeeded or never ran."
    )
    probe_latency_ms: int | None = strawberry.field(
        description="How long the last successful probe's connect took, in milliseconds."
    )
    last_reachable_at: datetime | None = strawberry.field(
        description="When a probe of this address last succeeded."
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: CloudGateway) -> CloudGatewayType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("CloudGateway", row.id)),
            name=row.name,
            address=row.address,
            port=row.port,
            enabled=row.enabled,
            redirector_capacity=row.redirector_capacity,
            reachable=row.reachable,
            last_probe_at=row.last_probe_at,
            last_probe_error=row.last_probe_error or None,
            probe_latency_ms=row.probe_latency_ms,
            last_reachable_at=row.last_reachable_at,
            created_at=row.created_at,
        )

    @strawberry.field
    async def pool(self, info: Info) -> GatewayPoolType | None:
        pool_id = self._row.pool_id  # type: ignore[attr-defined]
        if pool_id is None:
            return None
        row = await loaders(info).pool.load(pool_id)
        return GatewayPoolType.from_row(row) if row else None

    @strawberry.field(
        description="Whether the active certificate names the gateway's address (a DNS name; "
        "wildcards stand for one label). False when no certificate is active."
    )
    async def covered_by_certificate(self, info: Info) -> bool:
        names = await loaders(info).active_names.load(0)
        return names is not None and certificates.covers(names, self._row.address)


@strawberry.type(name="Certificate", description="An SSL certificate for the cloud gateways.")
class CertificateType(Node):
    _row: strawberry.Private[Certificate]
    id: strawberry.ID
    name: str
    subject: str
    issuer: str
    subject_alt_names: list[str] = strawberry.field(
        description="DNS names (the subject's common name when the certificate has no SANs)."
    )
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    active: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: Certificate) -> CertificateType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("Certificate", row.id)),
            name=row.name,
            subject=row.subject,
            issuer=row.issuer,
            subject_alt_names=list(row.subject_alt_names),
            not_before=row.not_before,
            not_after=row.not_after,
            fingerprint_sha256=row.fingerprint_sha256,
            active=row.active,
            created_at=row.created_at,
        )

    @strawberry.field(description="Whole days until expiry (negative once expired).")
    def expires_in_days(self) -> int:
        return certificates.expires_in_days(self._row)

    @strawberry.field(
        description="Expiry within the warning window; for the active certificate, the "
        "gateways whose address it does not cover."
    )
    async def warnings(self, info: Info) -> list[str]:
        uncovered: list[str] = []
        if self._row.active:
            gateways = await loaders(info).all_gateways.load(0)
            names = list(self._row.subject_alt_names)
            uncovered = [g.name for g in gateways if not certificates.covers(names, g.address)]
        return certificates.warnings_for(self._row, uncovered)


@strawberry.type(name="HardwarePlanDatastore")
class HardwarePlanDatastoreType:
    datastore: str
    quota_gb: int


@strawberry.type(name="HardwarePlan")
class HardwarePlanType(Node):
    _row: strawberry.Private[HardwarePlan]
    id: strawberry.ID
    name: str
    cpu_mhz: int
    memory_mb: int
    networks_with_internet: int
    networks_without_internet: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: HardwarePlan) -> HardwarePlanType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("HardwarePlan", row.id)),
            name=row.name,
            cpu_mhz=row.cpu_mhz,
            memory_mb=row.memory_mb,
            networks_with_internet=row.networks_with_internet,
            networks_without_internet=row.networks_without_internet,
            created_at=row.created_at,
        )

    @strawberry.field
    async def datastores(self, info: Info) -> list[HardwarePlanDatastoreType]:
        rows = await loaders(info).datastores_by_plan.load(self._row.id)
        return [HardwarePlanDatastoreType(datastore=d.datastore, quota_gb=d.quota_gb) for d in rows]

    @strawberry.field(description="Tenant accounts subscribed to the plan.")
    async def subscription_count(self, info: Info) -> int:
        return await loaders(info).subscriptions_by_plan.load(self._row.id)


@strawberry.type(name="VlanRange")
class VlanRangeType(Node):
    _row: strawberry.Private[VlanRange]
    id: strawberry.ID
    host: str
    first_id: int
    last_id: int
    internet: bool

    @classmethod
    def from_row(cls, row: VlanRange) -> VlanRangeType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("VlanRange", row.id)),
            host=row.host,
            first_id=row.first_id,
            last_id=row.last_id,
            internet=row.internet,
        )

    @strawberry.field
    def size(self) -> int:
        return self._row.last_id - self._row.first_id + 1

    @strawberry.field
    async def allocated_count(self, info: Info) -> int:
        return await loaders(info).vlans_allocated.load(self._row.id)


@strawberry.type(name="PublicIpPool")
class PublicIpPoolType(Node):
    _row: strawberry.Private[PublicIpPool]
    id: strawberry.ID
    name: str
    first_address: str
    last_address: str

    @classmethod
    def from_row(cls, row: PublicIpPool) -> PublicIpPoolType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("PublicIpPool", row.id)),
            name=row.name,
            first_address=row.first_address,
            last_address=row.last_address,
        )

    @strawberry.field
    def size(self) -> int:
        return ip_pool_size(self._row.first_address, self._row.last_address)

    @strawberry.field
    async def allocated_count(self, info: Info) -> int:
        return await loaders(info).ips_allocated.load(self._row.id)
