"""Small helpers shared by the domain packages: the actor of a request, the Node interface,
and the registry that `node(id:)` dispatches through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry

from app.authz import engine
from app.authz.capabilities import Capability
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.graphql.context import Context
from app.graphql.ids import from_global_id
from app.services.actor import Actor
from app.services.guards import require


def actor(info: strawberry.Info[Context, Any]) -> Actor:
    ctx = info.context
    return Actor(ctx.require_principal(), ctx.client_address, ctx.request_id)


def principal(info: strawberry.Info[Context, Any]) -> Principal:
    return info.context.require_principal()


def viewer_allows(
    info: strawberry.Info[Context, Any], capability: Capability, action: Action
) -> bool:
    """For `viewerCan…` fields: the engine's field-level answer for the viewer."""
    if info.context.bypass_authorization:
        return True
    return engine.allows(principal(info), capability, action)


def viewer_can(
    info: strawberry.Info[Context, Any], capability: Capability, action: Action, target: Target
) -> bool:
    """For `viewerCan…` fields: the engine's answer for the viewer on one object."""
    if info.context.bypass_authorization:
        return True
    return engine.can(principal(info), capability, action, target)


@strawberry.interface(description="An object with an opaque global id, fetchable by `node(id:)`.")
class Node:
    id: strawberry.ID


# Type name → (capability read on it, async fetch of the object in scope as its GraphQL type).
NodeFetcher = Callable[[Principal, int], Awaitable[Any]]
NODE_TYPES: dict[str, tuple[Capability | None, NodeFetcher]] = {}


def register_node(type_name: str, capability: Capability | None, fetch: NodeFetcher) -> None:
    """`capability` None: the fetch's own scope decides (jobs: per-row functionality)."""
    NODE_TYPES[type_name] = (capability, fetch)


async def resolve_node(info: strawberry.Info[Context, Any], global_id: str) -> Any:
    from app.errors import NotFound

    p = principal(info)
    type_name, pk = from_global_id(global_id)
    entry = NODE_TYPES.get(type_name)
    if entry is None:
        raise NotFound("object")
    capability, fetch = entry
    if capability is not None and not info.context.bypass_authorization:
        require(p, capability, Action.READ)
    return await fetch(p, pk)
