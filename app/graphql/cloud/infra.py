"""GraphQL for Cloud Connect: the provider's infrastructure (repositories, gateways and pools,
certificates, hardware plans, VLAN ranges, public IP pools). Every field and mutation is
guarded by CLOUD_INFRASTRUCTURE; services check again and audit every change."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.graphql.cloud.infra_types import (
    CertificateType,
    CloudGatewayType,
    CloudRepositoryType,
    GatewayPoolType,
    HardwarePlanType,
    PublicIpPoolType,
    VlanRangeType,
)
from app.graphql.common import actor, register_node
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models import (
    Certificate,
    CloudGateway,
    CloudRepository,
    GatewayPool,
    HardwarePlan,
    PublicIpPool,
    VlanRange,
)
from app.services import (
    certificates,
    cloud_gateways,
    cloud_infra,
    cloud_networks,
    gateway_probes,
    hardware_plans,
)
from app.services.actor import Actor

Info = strawberry.Info[Context, Any]
CAP = CLOUD_INFRASTRUCTURE
READ = guard(CAP, Action.READ)


def _node(type_cls: Any, fetch: Any) -> Any:
    async def run(p: Any, pk: int) -> Any:
        return type_cls.from_row(await fetch(Actor(p), pk))

    return run


register_node("CloudRepository", CAP, _node(CloudRepositoryType, cloud_infra.repository))
register_node("GatewayPool", CAP, _node(GatewayPoolType, cloud_gateways.pool))
register_node("CloudGateway", CAP, _node(CloudGatewayType, cloud_gateways.gateway))
register_node("Certificate", CAP, _node(CertificateType, certificates.certificate_in_scope))
register_node("HardwarePlan", CAP, _node(HardwarePlanType, hardware_plans.plan))
register_node("VlanRange", CAP, _node(VlanRangeType, cloud_networks.vlan_range))
register_node("PublicIpPool", CAP, _node(PublicIpPoolType, cloud_networks.ip_pool))


# --- inputs --------------------------------------------------------------------------------


@strawberry.input
class CloudRepositoryCreateInput:
    name: str
    capacity_gb: int


@strawberry.input
class CloudRepositoryUpdateInput:
    id: strawberry.ID
    name: str | None = None
    capacity_gb: int | None = None
    allow_oversubscription: bool = strawberry.field(
        default=False,
        description="Accept a capacity under what the quotas need at the oversubscription "
        "ratio (recorded in the audit log).",
    )


@strawberry.input
class GatewayPoolCreateInput:
    name: str


@strawberry.input
class GatewayPoolUpdateInput:
    id: strawberry.ID
    name: str


@strawberry.input
class CloudGatewayCreateInput:
    name: str
    address: str = strawberry.field(description="DNS name (or IP address) tenants connect to.")
    port: int = 6180
    enabled: bool = True
    pool_id: strawberry.ID | None = None
    redirector_capacity: int = 10


@strawberry.input
class CloudGatewayUpdateInput:
    id: strawberry.ID
    name: str | None = None
    address: str | None = None
    port: int | None = None
    enabled: bool | None = None
    pool_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="null: out of any pool; absent: unchanged."
    )
    redirector_capacity: int | None = None


@strawberry.input
class CertificateUploadInput:
    name: str
    certificate_pem: str = strawberry.field(
        description="PEM certificate chain, the gateways' (leaf) certificate first."
    )
    private_key_pem: str = strawberry.field(
        description="Unencrypted PEM private key (RSA or EC) of the leaf certificate; stored "
        "encrypted, never returned."
    )


@strawberry.input
class HardwarePlanDatastoreInput:
    datastore: str
    quota_gb: int


@strawberry.input
class HardwarePlanCreateInput:
    name: str
    cpu_mhz: int
    memory_mb: int
    networks_with_internet: int = 0
    networks_without_internet: int = 0
    datastores: list[HardwarePlanDatastoreInput] = strawberry.field(default_factory=list)


@strawberry.input
class HardwarePlanUpdateInput:
    id: strawberry.ID
    name: str | None = None
    cpu_mhz: int | None = None
    memory_mb: int | None = None
    networks_with_internet: int | None = None
    networks_without_internet: int | None = None
    datastores: list[HardwarePlanDatastoreInput] | None = strawberry.field(
        default=None, description="Replaces the plan's datastores when given."
    )


@strawberry.input
class VlanRangeCreateInput:
    host: str
    first_id: int
    last_id: int
    internet: bool


@strawberry.input
class PublicIpPoolCreateInput:
    name: str
    first_address: str
    last_address: str


def _datastores(items: list[HardwarePlanDatastoreInput] | None) -> list[tuple[str, int]] | None:
    return None if items is None else [(d.datastore, d.quota_gb) for d in items]


def _pool_pk(value: Any) -> Any:
    if value is strawberry.UNSET:
        return cloud_infra.UNSET
    return None if value is None else pk_of(value, "GatewayPool", "poolId")


# --- queries -------------------------------------------------------------------------------


@strawberry.type
class InfraQuery:
    @strawberry.field(extensions=READ)
    async def cloud_repositories(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[CloudRepositoryType] | None:
        return await paginate(CloudRepository.all(), first, after, CloudRepositoryType.from_row)

    @strawberry.field(extensions=READ)
    async def cloud_repository(self, info: Info, id: strawberry.ID) -> CloudRepositoryType | None:
        row = await cloud_infra.repository(actor(info), pk_of(id, "CloudRepository"))
        return CloudRepositoryType.from_row(row)

    @strawberry.field(extensions=READ)
    async def gateway_pools(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[GatewayPoolType] | None:
        return await paginate(GatewayPool.all(), first, after, GatewayPoolType.from_row)

    @strawberry.field(extensions=READ)
    async def cloud_gateways(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[CloudGatewayType] | None:
        return await paginate(CloudGateway.all(), first, after, CloudGatewayType.from_row)

    @strawberry.field(extensions=READ)
    async def certificates(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[CertificateType] | None:
        return await paginate(Certificate.all(), first, after, CertificateType.from_row)

    @strawberry.field(extensions=READ)
    async def certificate(self, info: Info, id: strawberry.ID) -> CertificateType | None:
        row = await certificates.certificate_in_scope(actor(info), pk_of(id, "Certificate"))
        return CertificateType.from_row(row)

    @strawberry.field(extensions=READ)
    async def hardware_plans(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[HardwarePlanType] | None:
        return await paginate(HardwarePlan.all(), first, after, HardwarePlanType.from_row)

    @strawberry.field(extensions=READ)
    async def vlan_ranges(
        self, host: str | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[VlanRangeType] | None:
        query = VlanRange.all() if host is None else VlanRange.filter(host=host.strip())
        return await paginate(query, first, after, VlanRangeType.from_row)

    @strawberry.field(extensions=READ)
    async def public_ip_pools(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[PublicIpPoolType] | None:
        return await paginate(PublicIpPool.all(), first, after, PublicIpPoolType.from_row)


# --- mutations -----------------------------------------------------------------------------


@strawberry.type
class InfraMutation:
    @strawberry.mutation(extensions=guard(CAP, Action.CREATE))
    async def cloud_repository_create(
        self, info: Info, input: CloudRepositoryCreateInput
    ) -> CloudRepositoryType:
        row = await cloud_infra.create_repository(actor(info), input.name, input.capacity_gb)
        return CloudRepositoryType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.UPDATE),
        description="Capacity never below the used space; below what the quotas need at the "
        "oversubscription ratio only with allowOversubscription.",
    )
    async def cloud_repository_update(
        self, info: Info, input: CloudRepositoryUpdateInput
    ) -> CloudRepositoryType:
        row = await cloud_infra.update_repository(
            actor(info),
            pk_of(input.id, "CloudRepository"),
            input.name,
            input.capacity_gb,
            input.allow_oversubscription,
        )
        return CloudRepositoryType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE), description="Refused while tenant quotas use it."
    )
    async def cloud_repository_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await cloud_infra.delete_repository(actor(info), pk_of(id, "CloudRepository"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(extensions=guard(CAP, Action.CREATE))
    async def gateway_pool_create(
        self, info: Info, input: GatewayPoolCreateInput
    ) -> GatewayPoolType:
        return GatewayPoolType.from_row(await cloud_gateways.create_pool(actor(info), input.name))

    @strawberry.mutation(extensions=guard(CAP, Action.UPDATE))
    async def gateway_pool_update(
        self, info: Info, input: GatewayPoolUpdateInput
    ) -> GatewayPoolType:
        row = await cloud_gateways.update_pool(
            actor(info), pk_of(input.id, "GatewayPool"), input.name
        )
        return GatewayPoolType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE),
        description="Its gateways leave the pool; refused while tenant accounts use the pool.",
    )
    async def gateway_pool_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await cloud_gateways.delete_pool(actor(info), pk_of(id, "GatewayPool"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(extensions=guard(CAP, Action.CREATE))
    async def cloud_gateway_create(
        self, info: Info, input: CloudGatewayCreateInput
    ) -> CloudGatewayType:
        data = cloud_gateways.GatewayInput(
            name=input.name,
            address=input.address,
            port=input.port,
            enabled=input.enabled,
            pool_id=_pool_pk(input.pool_id),
            redirector_capacity=input.redirector_capacity,
        )
        return CloudGatewayType.from_row(await cloud_gateways.create_gateway(actor(info), data))

    @strawberry.mutation(extensions=guard(CAP, Action.UPDATE))
    async def cloud_gateway_update(
        self, info: Info, input: CloudGatewayUpdateInput
    ) -> CloudGatewayType:
        data = cloud_gateways.GatewayInput(
            name=input.name,
            address=input.address,
            port=input.port,
            enabled=input.enabled,
            pool_id=_pool_pk(input.pool_id),
            redirector_capacity=input.redirector_capacity,
        )
        row = await cloud_gateways.update_gateway(
            actor(info), pk_of(input.id, "CloudGateway"), data
        )
        return CloudGatewayType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE),
        description="Refused while remote sessions are open through it.",
    )
    async def cloud_gateway_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await cloud_gateways.delete_gateway(actor(info), pk_of(id, "CloudGateway"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(CAP, Action.UPDATE),
        description="Probe the gateway now (enabled or not): a TCP connect to its address and "
        "port within the probe timeout; the result is stored like the scheduled probes'.",
    )
    async def cloud_gateway_probe(self, info: Info, id: strawberry.ID) -> CloudGatewayType:
        row = await gateway_probes.probe_now(actor(info), pk_of(id, "CloudGateway"))
        return CloudGatewayType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.CREATE),
        description="Validates the chain and key; the new certificate becomes the active one.",
    )
    async def certificate_upload(
        self, info: Info, input: CertificateUploadInput
    ) -> CertificateType:
        row = await certificates.upload_certificate(
            actor(info), input.name, input.certificate_pem, input.private_key_pem
        )
        return CertificateType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE), description="Refused for the active certificate."
    )
    async def certificate_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await certificates.delete_certificate(actor(info), pk_of(id, "Certificate"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(extensions=guard(CAP, Action.CREATE))
    async def hardware_plan_create(
        self, info: Info, input: HardwarePlanCreateInput
    ) -> HardwarePlanType:
        data = hardware_plans.PlanInput(
            name=input.name,
            cpu_mhz=input.cpu_mhz,
            memory_mb=input.memory_mb,
            networks_with_internet=input.networks_with_internet,
            networks_without_internet=input.networks_without_internet,
            datastores=_datastores(input.datastores),
        )
        return HardwarePlanType.from_row(await hardware_plans.create_plan(actor(info), data))

    @strawberry.mutation(extensions=guard(CAP, Action.UPDATE))
    async def hardware_plan_update(
        self, info: Info, input: HardwarePlanUpdateInput
    ) -> HardwarePlanType:
        data = hardware_plans.PlanInput(
            name=input.name,
            cpu_mhz=input.cpu_mhz,
            memory_mb=input.memory_mb,
            networks_with_internet=input.networks_with_internet,
            networks_without_internet=input.networks_without_internet,
            datastores=_datastores(input.datastores),
        )
        row = await hardware_plans.update_plan(actor(info), pk_of(input.id, "HardwarePlan"), data)
        return HardwarePlanType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE), description="Refused while tenants subscribe to it."
    )
    async def hardware_plan_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await hardware_plans.delete_plan(actor(info), pk_of(id, "HardwarePlan"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(CAP, Action.CREATE),
        description="VLAN ids 1–4094; ranges on one host never overlap.",
    )
    async def vlan_range_create(self, info: Info, input: VlanRangeCreateInput) -> VlanRangeType:
        row = await cloud_networks.create_vlan_range(
            actor(info), input.host, input.first_id, input.last_id, input.internet
        )
        return VlanRangeType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE), description="Refused while VLANs are allocated."
    )
    async def vlan_range_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await cloud_networks.delete_vlan_range(actor(info), pk_of(id, "VlanRange"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(CAP, Action.CREATE),
        description="One address family, at most 65,536 addresses; pools never overlap.",
    )
    async def public_ip_pool_create(
        self, info: Info, input: PublicIpPoolCreateInput
    ) -> PublicIpPoolType:
        row = await cloud_networks.create_ip_pool(
            actor(info), input.name, input.first_address, input.last_address
        )
        return PublicIpPoolType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE), description="Refused while addresses are allocated."
    )
    async def public_ip_pool_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await cloud_networks.delete_ip_pool(actor(info), pk_of(id, "PublicIpPool"))
        return DeletePayload(deleted_id=id)
