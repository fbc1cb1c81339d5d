"""GraphQL for agent keys: what backup servers and agents report in with (`POST /ingest/v1/batch`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import AGENT_KEYS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import Node, actor, principal, register_node, viewer_can
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.models import AgentKey
from app.services import agent_keys

Info = strawberry.Info[Context, Any]


@strawberry.type(name="AgentKey")
class AgentKeyType(Node):
    id: strawberry.ID
    name: str
    prefix: str = strawberry.field(description="Identifies the key: it starts 'tna_<prefix>_'.")
    company_id: strawberry.ID
    location_id: strawberry.ID = strawberry.field(
        description="Where computers, servers and jobs first reported with this key land."
    )
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None = strawberry.field(
        description="Last accepted use, to the minute (not written on every batch)."
    )
    _row: strawberry.Private[AgentKey]

    @classmethod
    def from_row(cls, row: AgentKey) -> AgentKeyType:
        return cls(
            id=strawberry.ID(to_global_id("AgentKey", row.id)),
            name=row.name,
            prefix=row.prefix,
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            location_id=strawberry.ID(to_global_id("Location", row.location_id)),  # type: ignore[attr-defined]
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
            _row=row,
        )

    @strawberry.field(description="Not revoked: batches sent with it are accepted.")
    def active(self) -> bool:
        return self.revoked_at is None

    @strawberry.field(description="True while active and you may revoke it.")
    def viewer_can_revoke(self, info: strawberry.Info) -> bool:
        return self.revoked_at is None and viewer_can(
            info, AGENT_KEYS, Action.DELETE, agent_keys.key_target(self._row)
        )


@strawberry.type
class AgentKeyCreatePayload:
    agent_key: AgentKeyType
    secret: str = strawberry.field(
        description="The key itself (`tna_…`): shown once, only its SHA-256 is stored. Send it "
        "as `Authorization: Bearer <key>` to POST /ingest/v1/batch."
    )


@strawberry.input
class AgentKeyCreateInput:
    company_id: strawberry.ID
    location_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: the company's default location (if in your scope)."
    )
    name: str


@strawberry.input
class AgentKeyFilter:
    company_id: strawberry.ID | None = None
    location_id: strawberry.ID | None = None


async def _key(p: Principal, pk: int) -> AgentKeyType:
    return AgentKeyType.from_row(await agent_keys.key_in_scope(p, pk))


register_node("AgentKey", AGENT_KEYS, _key)


@strawberry.type
class AgentKeyQuery:
    @strawberry.field(
        extensions=guard(AGENT_KEYS, Action.READ),
        description="Agent keys of the locations in your scope, newest first.",
    )
    async def agent_keys(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AgentKeyFilter | None = None,
    ) -> Connection[AgentKeyType] | None:
        company_id = location_id = None
        if filter is not None:
            if filter.company_id:
                company_id = pk_of(filter.company_id, "Company", "filter.companyId")
            if filter.location_id:
                location_id = pk_of(filter.location_id, "Location", "filter.locationId")
        query = agent_keys.listing(principal(info), company_id, location_id)
        return await paginate(query, first, after, AgentKeyType.from_row, descending=True)


@strawberry.type
class AgentKeyMutation:
    @strawberry.mutation(
        extensions=guard(AGENT_KEYS, Action.CREATE),
        description="Issues a key for a company's backup server or agents; the key is returned "
        "once, in `secret`.",
    )
    async def agent_key_create(
        self, info: Info, input: AgentKeyCreateInput
    ) -> AgentKeyCreatePayload:
        location_id = (
            pk_of(input.location_id, "Location", "input.locationId") if input.location_id else None
        )
        key, secret = await agent_keys.create(
            actor(info),
            pk_of(input.company_id, "Company", "input.companyId"),
            location_id,
            input.name,
        )
        return AgentKeyCreatePayload(agent_key=AgentKeyType.from_row(key), secret=secret)

    @strawberry.mutation(
        extensions=guard(AGENT_KEYS, Action.DELETE),
        description="Revokes a key: batches sent with it are refused (401) from now on.",
    )
    async def agent_key_revoke(self, info: Info, id: strawberry.ID) -> AgentKeyType:
        row = await agent_keys.revoke(actor(info), pk_of(id, "AgentKey"))
        return AgentKeyType.from_row(row)
