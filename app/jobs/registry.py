"""The registry of job kinds. A kind names its handler, the matrix functionality that governs
who may see and start it, and its limits. Handlers are async functions of a JobContext."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.authz.matrix import Functionality

if TYPE_CHECKING:
    from app.jobs.context import JobContext

Handler = Callable[["JobContext"], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    functionality: Functionality
    handler: Handler
    time_limit_seconds: int = 3600
    max_attempts: int = 3


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    if kind.name in KINDS:
        raise ValueError(f"job kind {kind.name!r} registered twice")
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> JobKind:
    load_kinds()
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown job kind {name!r}") from None


def load_kinds() -> None:
    """Import the modules that register kinds (idempotent)."""
    import app.jobs.kinds  # noqa: F401
