"""gateways.probe: the platform's reachability sweep of the enabled cloud gateways (organization
None), enqueued by the scheduler's single leader every minute by default.

Idempotent: a sweep stores what the gateways answer now, so a retried or overlapping run ends in
the state of the latest probes (app.services.gateway_probes has the rules)."""

from __future__ import annotations

from typing import Any

from app.authz.matrix import Functionality
from app.jobs.context import JobContext
from app.jobs.registry import JobKind, register
from app.services import gateway_probes

KIND = "gateways.probe"


async def probe(ctx: JobContext) -> dict[str, Any]:
    await ctx.step("probe")
    report = await gateway_probes.probe_enabled()
    return report.as_dict()


GATEWAYS_PROBE = register(
    JobKind(
        name=KIND,
        label="Probe the cloud gateways' reachability",
        functionality=Functionality.CONFIGURATION,
        handler=probe,
        time_limit_seconds=600,
        max_attempts=1,
    )
)
