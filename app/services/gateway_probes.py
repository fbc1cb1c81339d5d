"""Reachability probes of the cloud gateways: does each gateway answer on its address and port?

A probe is a TCP connect (name resolution included) within `gateway_probe_timeout_seconds`,
closed at once: no TLS handshake and nothing sent, so a gateway sees a connection and nothing
else. The gateways.probe job (every minute by default, TENANTRY_SCHEDULE_GATEWAY_PROBES) probes
every enabled gateway, at most `gateway_probe_concurrency` at once, and the provider may probe
one gateway now (the cloudGatewayProbe mutation), enabled or not.

Results are written in one statement for the whole sweep (a parameterised UPDATE per gateway,
sent as one `executemany`), conditioned on the address and port probed: a gateway whose address
changed while it was probed keeps the cleared state its change gave it. A sweep audits only the
gateways whose reachability changed (from never probed, reachable or unreachable), one entry
each, in the same transaction; the mutation is audited like every mutation.

The addresses are the provider's own configuration, not a tenant's: a gateway inside the
provider's network (a private or loopback address) is legitimate, so app.net_guard (which keeps
tenant-named webhook URLs out of that network) does not apply here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.db import connection_name
from app.models import CloudGateway, Organization, OrgKind
from app.services.actor import Actor
from app.services.audit import PendingEntry, audit_many, audited
from app.services.bulk_sql import execute_many
from app.services.cloud_gateways import gateway
from app.services.guards import require
from app.settings import SettingsError, get_settings

MAX_ERROR = 300  # CloudGateway.last_probe_error's length
PROBE_ACTION = "cloudGatewayProbe"
CHANGE_ACTION = "cloudGatewayReachability"

_STORE = (
    "UPDATE cloud_gateways SET reachable = ?, last_probe_at = ?, last_probe_error = ?,"
    " probe_latency_ms = ?, last_reachable_at = COALESCE(?, last_reachable_at)"
    " WHERE id = ? AND address = ? AND port = ?"
)


@dataclass(frozen=True)
class ProbeResult:
    reachable: bool
    latency_ms: int | None = None
    error: str = ""


@dataclass
class SweepReport:
    probed: int = 0
    reachable: int = 0
    unreachable: int = 0
    changed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "probed": self.probed,
            "reachable": self.reachable,
            "unreachable": self.unreachable,
            "changed": self.changed,
        }


def _limits() -> tuple[float, int]:
    settings = get_settings()
    timeout, concurrency = (
        settings.gateway_probe_timeout_seconds,
        settings.gateway_probe_concurrency,
    )
    if timeout <= 0:
        raise SettingsError("TENANTRY_GATEWAY_PROBE_TIMEOUT must be a positive number of seconds")
    if concurrency < 1:
        raise SettingsError("TENANTRY_GATEWAY_PROBE_CONCURRENCY must be at least 1")
    return timeout, concurrency


def _describe(exc: OSError, address: str) -> str:
    if isinstance(exc, socket.gaierror):
        text = f"cannot resolve {address}: {exc.strerror or exc}"
    elif isinstance(exc, ConnectionRefusedError):
        text = "connection refused"
    else:
        text = exc.strerror or str(exc) or type(exc).__name__
    return text[:MAX_ERROR]


async def probe_address(address: str, port: int, seconds: float) -> ProbeResult:
    """One TCP connect to address:port within `seconds` (name resolution included)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            _, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        return ProbeResult(False, error=f"no answer within {seconds:g} s")
    except OSError as exc:
        return ProbeResult(False, error=_describe(exc, address))
    latency = round((time.monotonic() - started) * 1000)
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(seconds):
            await writer.wait_closed()
    return ProbeResult(True, latency_ms=latency)


async def probe_targets(
    targets: Sequence[dict[str, Any]], seconds: float, concurrency: int
) -> list[ProbeResult]:
    """Probe each {"address", "port"} target, at most `concurrency` at once, in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(target: dict[str, Any]) -> ProbeResult:
        async with gate:
            return await probe_address(target["address"], target["port"], seconds)

    return list(await asyncio.gather(*(one(t) for t in targets)))


async def _store(
    targets: Sequence[dict[str, Any]], results: Sequence[ProbeResult], now: datetime
) -> None:
    await execute_many(
        _STORE,
        [
            [
                r.reachable,
                now,
                r.error,
                r.latency_ms,
                now if r.reachable else None,
                t["id"],
                t["address"],
                t["port"],
            ]
            for t, r in zip(targets, results, strict=True)
        ],
    )


def _change(target: dict[str, Any], result: ProbeResult) -> dict[str, Any]:
    return {
        "id": target["id"],
        "name": target["name"],
        "address": f"{target['address']}:{target['port']}",
        "was": target["reachable"],
        "reachable": result.reachable,
        **({"error": result.error} if result.error else {}),
    }


async def probe_enabled(now: datetime | None = None) -> SweepReport:
    """Probe every enabled gateway and store the results. Statements: one read, then one
    write for all gateways, plus (only when some reachability changed) one read of the
    provider and one INSERT of the audit entries."""
    timeout, concurrency = _limits()
    targets = await CloudGateway.filter(enabled=True).values(
        "id", "name", "address", "port", "reachable"
    )
    report = SweepReport(probed=len(targets))
    if not targets:
        return report
    results = await probe_targets(targets, timeout, concurrency)
    at = now or datetime.now(UTC)
    report.reachable = sum(r.reachable for r in results)
    report.unreachable = report.probed - report.reachable
    report.changed = [
        _change(t, r)
        for t, r in zip(targets, results, strict=True)
        if t["reachable"] != r.reachable
    ]
    async with in_transaction(connection_name()):
        await _store(targets, results, at)
        if report.changed:
            provider = await Organization.filter(kind=OrgKind.PROVIDER).limit(1).values("id")
            owner = provider[0]["id"] if provider else None
            await audit_many(
                Actor(None),
                CHANGE_ACTION,
                "CloudGateway",
                [PendingEntry(str(c["id"]), owner, c) for c in report.changed],
            )
    return report


async def probe_now(actor: Actor, pk: int, now: datetime | None = None) -> CloudGateway:
    """The provider's "probe this gateway now" (enabled or not): probed, stored, audited."""
    row = await gateway(actor, pk)
    require(actor.p, CLOUD_INFRASTRUCTURE, Action.UPDATE)
    timeout, _ = _limits()
    target = {
        "id": row.id,
        "name": row.name,
        "address": row.address,
        "port": row.port,
        "reachable": row.reachable,
    }
    result = await probe_address(row.address, row.port, timeout)
    at = now or datetime.now(UTC)
    async with audited(actor, PROBE_ACTION, "CloudGateway", pk, actor.p.organization_id) as entry:
        await _store([target], [result], at)
        entry.details.update(_change(target, result))
    return await gateway(actor, pk)
