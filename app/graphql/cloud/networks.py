"""GraphQL for the provider's networks: VLAN ranges and public IP pools; guarded by
CLOUD_INFRASTRUCTURE like the rest of the infrastructure."""

from __future__ import annotations

import strawberry

from app.authz.matrix import Action
from app.graphql.cloud.infra_common import CAP, READ, Info, node
from app.graphql.cloud.infra_types import PublicIpPoolType, VlanRangeType
from app.graphql.common import actor, register_node
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models import PublicIpPool, VlanRange
from app.services import cloud_networks

register_node("VlanRange", CAP, node(VlanRangeType, cloud_networks.vlan_range))
register_node("PublicIpPool", CAP, node(PublicIpPoolType, cloud_networks.ip_pool))


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


@strawberry.type
class CloudNetworkQuery:
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


@strawberry.type
class CloudNetworkMutation:
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
