"""Field guards: every query field and mutation names its capability and action here.

Guards are synchronous (a dictionary lookup in the principal's matrix row), so they cost
microseconds; object scope is applied in SQL by the resolvers, never here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension

from app.authz import engine
from app.authz.capabilities import Capability
from app.authz.matrix import Action
from app.errors import Forbidden


class Requires(BasePermission):
    """The principal's matrix cell for the capability's functionality grants the action."""

    error_extensions = {"code": "FORBIDDEN"}

    def __init__(self, capability: Capability, action: Action) -> None:
        self.capability = capability
        self.action = action
        self.message = f"your role may not {action.value.lower()} {capability.label}"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        context = info.context
        principal = context.require_principal()  # UNAUTHENTICATED when nobody logged in
        if context.bypass_authorization:
            return True
        return engine.allows(principal, self.capability, self.action)

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message or "forbidden")


class RequiresAny(BasePermission):
    """At least one of a family of capabilities (backup jobs or servers of every kind) grants
    the action; the rows are then narrowed in SQL to the kinds it grants."""

    error_extensions = {"code": "FORBIDDEN"}

    def __init__(self, capabilities: Iterable[Capability], action: Action, family: str) -> None:
        self.capabilities = tuple(capabilities)
        self.action = action
        self.message = (
            f"your role may not {action.value.lower()} {family}: "
            f"no capability in this family allows {action.value}"
        )

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        context = info.context
        principal = context.require_principal()
        if context.bypass_authorization:
            return True
        return any(engine.allows(principal, cap, self.action) for cap in self.capabilities)

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message or "forbidden")


class Authenticated(BasePermission):
    """Any logged-in principal (own profile, own credentials, the public role matrix)."""

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        info.context.require_principal()
        return True


def guard(capability: Capability, action: Action) -> list[FieldExtension]:
    return [PermissionExtension(permissions=[Requires(capability, action)], use_directives=False)]


def guard_any(
    capabilities: Iterable[Capability], action: Action, family: str = "these objects"
) -> list[FieldExtension]:
    return [
        PermissionExtension(
            permissions=[RequiresAny(capabilities, action, family)], use_directives=False
        )
    ]


def authenticated() -> list[FieldExtension]:
    return [PermissionExtension(permissions=[Authenticated()], use_directives=False)]


def requires_text(capability: Capability, action: Action) -> str:
    parts = [f"{portal.value}: {func.value}" for portal, func in capability.functionality.items()]
    return f"Requires {action.value} on " + ", ".join(parts) + "."
