"""Every error leaves with a stable `extensions.code`; unexpected ones are masked and logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql.error import GraphQLError
from strawberry.extensions import SchemaExtension

from app.errors import CODES, TenantryError
from app.observability import record_graphql_operation

log = logging.getLogger("tenantry.graphql")

MASKED_MESSAGE = "Internal server error"


def _shape(error: GraphQLError, request_id: str) -> GraphQLError:
    original = error.original_error
    if isinstance(original, TenantryError):
        extensions = dict(original.extensions)
    elif original is None:
        # Parse and validation errors, limit violations: the client's input is at fault.
        extensions = {"code": (error.extensions or {}).get("code") or "BAD_USER_INPUT"}
        if extensions["code"] not in {"BAD_USER_INPUT", "FORBIDDEN", "UNAUTHENTICATED"}:
            extensions["code"] = "BAD_USER_INPUT"
    else:
        log.error(
            "unexpected error in %s (request %s)",
            ".".join(str(p) for p in error.path or ()),
            request_id,
            exc_info=(type(original), original, original.__traceback__),
        )
        return GraphQLError(
            MASKED_MESSAGE,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        )
    return GraphQLError(
        original.message if isinstance(original, TenantryError) else error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


def shape_errors(errors: list[GraphQLError], request_id: str) -> list[GraphQLError]:
    """Give every error its code (once: an already shaped error is left as it is)."""
    return [
        e if (e.extensions or {}).get("code") in CODES else _shape(e, request_id) for e in errors
    ]


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result: Any = self.execution_context.result
        errors = getattr(result, "errors", None)
        outcome = "success"
        if errors:
            ctx = self.execution_context.context
            result.errors = shaped = shape_errors(errors, getattr(ctx, "request_id", ""))
            outcome = (shaped[0].extensions or {}).get("code", "error")
        record_graphql_operation(self.execution_context.operation_name, outcome)
