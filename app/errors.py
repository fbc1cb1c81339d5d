"""Domain errors with stable codes. Services raise them; the GraphQL layer maps them.

The codes are the documented set: UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, BAD_USER_INPUT,
CONFLICT, RATE_LIMITED, INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

from typing import Any

CODES = (
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "CONFLICT",
    "RATE_LIMITED",
    "INTERNAL_SERVER_ERROR",
)


class TenantryError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    @property
    def extensions(self) -> dict[str, Any]:
        ext: dict[str, Any] = {"code": self.code}
        if self.field:
            ext["field"] = self.field
        ext.update(self.extra)
        return ext


class Unauthenticated(TenantryError):
    code = "UNAUTHENTICATED"


class Forbidden(TenantryError):
    code = "FORBIDDEN"


class NotFound(TenantryError):
    code = "NOT_FOUND"

    def __init__(self, what: str = "object", **extra: Any) -> None:
        super().__init__(f"{what} not found", **extra)


class BadInput(TenantryError):
    code = "BAD_USER_INPUT"


class Conflict(TenantryError):
    code = "CONFLICT"


class RateLimited(TenantryError):
    code = "RATE_LIMITED"
