"""Shared checks for services: scoped fetches (NOT_FOUND outside scope) and engine checks."""

from __future__ import annotations

from app.authz import engine
from app.authz.capabilities import Capability
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import Forbidden


def require(
    p: Principal, capability: Capability, action: Action, target: Target | None = None
) -> None:
    allowed = (
        engine.allows(p, capability, action)
        if target is None
        else engine.can(p, capability, action, target)
    )
    if not allowed:
        what = capability.label
        raise Forbidden(
            f"your role ({p.role.name}) may not {action.value.lower()} {what}"
            + ("" if target is None else " of this kind")
        )
