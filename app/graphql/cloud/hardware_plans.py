"""GraphQL for the provider's hardware plans (CPU, memory, networks, datastore quotas); guarded
by CLOUD_INFRASTRUCTURE like the rest of the infrastructure."""

from __future__ import annotations

import strawberry

from app.authz.matrix import Action
from app.graphql.cloud.infra_common import CAP, READ, Info, node
from app.graphql.cloud.infra_types import HardwarePlanType
from app.graphql.common import actor, register_node
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models import HardwarePlan
from app.services import hardware_plans

register_node("HardwarePlan", CAP, node(HardwarePlanType, hardware_plans.plan))


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


def _plan_input(
    input: HardwarePlanCreateInput | HardwarePlanUpdateInput,
) -> hardware_plans.PlanInput:
    items = input.datastores
    return hardware_plans.PlanInput(
        name=input.name,
        cpu_mhz=input.cpu_mhz,
        memory_mb=input.memory_mb,
        networks_with_internet=input.networks_with_internet,
        networks_without_internet=input.networks_without_internet,
        datastores=None if items is None else [(d.datastore, d.quota_gb) for d in items],
    )


@strawberry.type
class HardwarePlanQuery:
    @strawberry.field(extensions=READ)
    async def hardware_plans(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[HardwarePlanType] | None:
        return await paginate(HardwarePlan.all(), first, after, HardwarePlanType.from_row)


@strawberry.type
class HardwarePlanMutation:
    @strawberry.mutation(extensions=guard(CAP, Action.CREATE))
    async def hardware_plan_create(
        self, info: Info, input: HardwarePlanCreateInput
    ) -> HardwarePlanType:
        data = _plan_input(input)
        return HardwarePlanType.from_row(await hardware_plans.create_plan(actor(info), data))

    @strawberry.mutation(extensions=guard(CAP, Action.UPDATE))
    async def hardware_plan_update(
        self, info: Info, input: HardwarePlanUpdateInput
    ) -> HardwarePlanType:
        data = _plan_input(input)
        row = await hardware_plans.update_plan(actor(info), pk_of(input.id, "HardwarePlan"), data)
        return HardwarePlanType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE), description="Refused while tenants subscribe to it."
    )
    async def hardware_plan_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await hardware_plans.delete_plan(actor(info), pk_of(id, "HardwarePlan"))
        return DeletePayload(deleted_id=id)
