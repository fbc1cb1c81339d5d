"""GraphQL for Cloud Connect: remote connections to tenant backup servers (seed 001)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz import scope
from app.authz.capabilities import REMOTE_CONNECTIONS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import Node, actor, principal, register_node, viewer_allows
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.models.cloud import RemoteConnectionKind, RemoteSession
from app.services import remote

Info = strawberry.Info[Context, Any]

RemoteConnectionKindEnum = strawberry.enum(RemoteConnectionKind, name="RemoteConnectionKind")


@strawberry.type(name="RemoteSession")
class RemoteSessionType(Node):
    id: strawberry.ID
    tenant_account_id: strawberry.ID
    gateway_id: strawberry.ID
    kind: RemoteConnectionKindEnum  # type: ignore[valid-type]
    endpoint: str
    opened_at: datetime
    expires_at: datetime
    closed_at: datetime | None = strawberry.field(
        description="When it was closed or marked expired; null while open or not yet marked."
    )
    close_reason: str
    open: bool = strawberry.field(
        description="Holds a redirector slot: not closed and not expired."
    )

    @classmethod
    def from_row(cls, row: RemoteSession) -> RemoteSessionType:
        return cls(
            id=strawberry.ID(to_global_id("RemoteSession", row.id)),
            tenant_account_id=strawberry.ID(
                to_global_id("TenantAccount", row.tenant_account_id)  # type: ignore[attr-defined]
            ),
            gateway_id=strawberry.ID(to_global_id("CloudGateway", row.gateway_id)),  # type: ignore[attr-defined]
            kind=row.kind,
            endpoint=row.endpoint,
            opened_at=row.opened_at,
            expires_at=row.expires_at,
            closed_at=row.closed_at,
            close_reason=row.close_reason or ("expired" if not remote.is_open(row) else ""),
            open=remote.is_open(row),
        )

    @strawberry.field(description="True while open and you may close it.")
    def viewer_can_close(self, info: strawberry.Info) -> bool:
        return self.open and viewer_allows(info, REMOTE_CONNECTIONS, Action.DELETE)


@strawberry.type
class RemoteSessionOpenPayload:
    session: RemoteSessionType
    endpoint: str
    token: str = strawberry.field(
        description="The session's secret, shown once: only its SHA-256 is stored."
    )
    expires_at: datetime


@strawberry.input
class RemoteConnectionOpenInput:
    tenant_account_id: strawberry.ID
    kind: RemoteConnectionKindEnum  # type: ignore[valid-type]


@strawberry.input
class RemoteSessionFilter:
    tenant_account_id: strawberry.ID | None = None
    open: bool | None = None


async def _session(p: Principal, pk: int) -> RemoteSessionType:
    return RemoteSessionType.from_row(await remote.session_in_scope(p, pk))


register_node("RemoteSession", REMOTE_CONNECTIONS, _session)


@strawberry.type
class RemoteQuery:
    @strawberry.field(extensions=guard(REMOTE_CONNECTIONS, Action.READ))
    async def remote_sessions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: RemoteSessionFilter | None = None,
    ) -> Connection[RemoteSessionType] | None:
        query = RemoteSession.filter(scope.tenant_account_q(principal(info), "tenant_account"))
        if filter is not None:
            if filter.tenant_account_id:
                query = query.filter(
                    tenant_account_id=pk_of(
                        filter.tenant_account_id, "TenantAccount", "filter.tenantAccountId"
                    )
                )
            if filter.open is True:
                query = query.filter(remote.open_q())
            elif filter.open is False:
                query = query.exclude(remote.open_q())
        return await paginate(query, first, after, RemoteSessionType.from_row, descending=True)

    @strawberry.field(extensions=guard(REMOTE_CONNECTIONS, Action.READ))
    async def remote_session(self, info: Info, id: strawberry.ID) -> RemoteSessionType | None:
        return await _session(principal(info), pk_of(id, "RemoteSession"))


@strawberry.type
class RemoteMutation:
    @strawberry.mutation(
        extensions=guard(REMOTE_CONNECTIONS, Action.CREATE),
        description="Opens a remote connection to a standalone tenant's backup server through a "
        "free network redirector slot of a cloud gateway the tenant may use.",
    )
    async def remote_connection_open(
        self, info: Info, input: RemoteConnectionOpenInput
    ) -> RemoteSessionOpenPayload:
        opened = await remote.open_session(
            actor(info),
            pk_of(input.tenant_account_id, "TenantAccount", "input.tenantAccountId"),
            RemoteConnectionKind(input.kind),
        )
        session = RemoteSessionType.from_row(opened.session)
        return RemoteSessionOpenPayload(
            session=session,
            endpoint=opened.session.endpoint,
            token=opened.token,
            expires_at=opened.session.expires_at,
        )

    @strawberry.mutation(extensions=guard(REMOTE_CONNECTIONS, Action.DELETE))
    async def remote_connection_close(self, info: Info, id: strawberry.ID) -> RemoteSessionType:
        row = await remote.close_session(actor(info), pk_of(id, "RemoteSession"))
        return RemoteSessionType.from_row(row)
