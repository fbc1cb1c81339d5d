"""The actors. `dramatiq workers.actors` (what `tenantry worker` runs) imports this module: the
broker is set up first (dramatiq binds actors to the broker in force when they are declared),
from the environment (REDIS_URL), then the actors are declared on it."""

from __future__ import annotations

from workers import broker as _broker

if _broker.current() is None:
    _broker.setup()

from workers.actors.jobs import run_job

__all__ = ["run_job"]
