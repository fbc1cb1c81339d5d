"""What the GraphQL modules of Cloud Connect's infrastructure (repositories, gateways,
certificates, hardware plans, networks) share: every field and mutation is guarded by
CLOUD_INFRASTRUCTURE; services check again and audit every change."""

from __future__ import annotations

from typing import Any

import strawberry

from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.graphql.context import Context
from app.graphql.permissions import guard
from app.services.actor import Actor

Info = strawberry.Info[Context, Any]
CAP = CLOUD_INFRASTRUCTURE
READ = guard(CAP, Action.READ)


def node(type_cls: Any, fetch: Any) -> Any:
    """A node resolver: the row `fetch` returns in the caller's scope, as `type_cls`."""

    async def run(p: Any, pk: int) -> Any:
        return type_cls.from_row(await fetch(Actor(p), pk))

    return run
