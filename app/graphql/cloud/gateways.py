"""GraphQL for the provider's cloud gateways and gateway pools (and probing a gateway now);
guarded by CLOUD_INFRASTRUCTURE like the rest of the infrastructure."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz.matrix import Action
from app.graphql.cloud.infra_common import CAP, READ, Info, node
from app.graphql.cloud.infra_types import CloudGatewayType, GatewayPoolType
from app.graphql.common import actor, register_node
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models import CloudGateway, GatewayPool
from app.services import cloud_gateways, cloud_infra, gateway_probes

register_node("GatewayPool", CAP, node(GatewayPoolType, cloud_gateways.pool))
register_node("CloudGateway", CAP, node(CloudGatewayType, cloud_gateways.gateway))


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


def _pool_pk(value: Any) -> Any:
    if value is strawberry.UNSET:
        return cloud_infra.UNSET
    return None if value is None else pk_of(value, "GatewayPool", "poolId")


def _gateway_input(
    input: CloudGatewayCreateInput | CloudGatewayUpdateInput,
) -> cloud_gateways.GatewayInput:
    return cloud_gateways.GatewayInput(
        name=input.name,
        address=input.address,
        port=input.port,
        enabled=input.enabled,
        pool_id=_pool_pk(input.pool_id),
        redirector_capacity=input.redirector_capacity,
    )


@strawberry.type
class GatewayQuery:
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


@strawberry.type
class GatewayMutation:
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
        data = _gateway_input(input)
        return CloudGatewayType.from_row(await cloud_gateways.create_gateway(actor(info), data))

    @strawberry.mutation(extensions=guard(CAP, Action.UPDATE))
    async def cloud_gateway_update(
        self, info: Info, input: CloudGatewayUpdateInput
    ) -> CloudGatewayType:
        data = _gateway_input(input)
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
