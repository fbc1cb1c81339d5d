"""GraphQL for the provider's cloud repositories (capacity, oversubscription); guarded by
CLOUD_INFRASTRUCTURE like the rest of the infrastructure."""

from __future__ import annotations

import strawberry

from app.authz.matrix import Action
from app.graphql.cloud.infra_common import CAP, READ, Info, node
from app.graphql.cloud.infra_types import CloudRepositoryType
from app.graphql.common import actor, register_node
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models import CloudRepository
from app.services import cloud_infra

register_node("CloudRepository", CAP, node(CloudRepositoryType, cloud_infra.repository))


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


@strawberry.type
class CloudRepositoryQuery:
    @strawberry.field(extensions=READ)
    async def cloud_repositories(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[CloudRepositoryType] | None:
        return await paginate(CloudRepository.all(), first, after, CloudRepositoryType.from_row)

    @strawberry.field(extensions=READ)
    async def cloud_repository(self, info: Info, id: strawberry.ID) -> CloudRepositoryType | None:
        row = await cloud_infra.repository(actor(info), pk_of(id, "CloudRepository"))
        return CloudRepositoryType.from_row(row)


@strawberry.type
class CloudRepositoryMutation:
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
