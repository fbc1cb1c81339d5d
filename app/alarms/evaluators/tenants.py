"""Tenant accounts (leases, gateways, disabled accounts still holding data), the provider's
gateways and certificate, and failover plan sessions.

A cloud gateway is "unreachable" when it is enabled and its last reachability probe failed
(app.services.gateway_probes: a TCP connect to its address and port, every minute by default),
or when it is disabled while enabled accounts restricted to its pool depend on it (tenants
cannot reach what the provider turned off). A gateway never probed at its current address is
neither. A tenant account has "no gateway" when none of its pools (or, for accounts that may
use every gateway, none at all) has a gateway that serves: enabled and not failing its last
probe (one never probed serves until a probe says otherwise).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count, Max, Sum

from app.alarms.evaluators.base import (
    BELOW,
    DAYS,
    Check,
    Condition,
    K,
    S,
    define,
    provider_in_scope,
    stamp,
)
from app.models import (
    BackupResource,
    Certificate,
    CloudGateway,
    FailoverSession,
    FailoverSessionState,
    GatewaySelection,
    TenantAccount,
    VmReplica,
)


def _days_left(check: Check, until: Any) -> int:
    return math.floor((until - check.now).total_seconds() / 86400)


def _expiry(check: Check, what: str, until: Any) -> tuple[Any, str]:
    days = _days_left(check, until)
    level = check.level_below(days)
    # A moment, not a countdown: "ends in 9 day(s)" changed daily and counted as a new occurrence.
    if days < 0:
        return level, f"{what} ended {stamp(until)}"
    return level, f"{what} ends {stamp(until)}"


async def lease_expiring(check: Check) -> list[Condition]:
    if check.empty_scope:
        return []
    horizon = check.now + timedelta(days=check.thresholds["warning"] + 1)
    rows = await check.narrow(
        TenantAccount.filter(enabled=True, lease_expires_at__lt=horizon), "company_id"
    ).values("id", "name", "company_id", "lease_expires_at")
    out = []
    for r in rows:
        level, said = _expiry(check, "lease", r["lease_expires_at"])
        if level is not None:
            out.append(
                Condition(
                    "TenantAccount", r["id"], r["name"], r["company_id"], None, None, level, said
                )
            )
    return out


async def certificate_expiring(check: Check) -> list[Condition]:
    provider = await provider_in_scope(check)
    if provider is None:
        return []
    horizon = check.now + timedelta(days=check.thresholds["warning"] + 1)
    rows = await Certificate.filter(active=True, not_after__lt=horizon).values(
        "id", "name", "subject", "not_after"
    )
    out = []
    for r in rows:
        level, said = _expiry(check, f"certificate {r['subject']}", r["not_after"])
        if level is not None:
            out.append(
                Condition("Certificate", r["id"], r["name"], provider, None, None, level, said)
            )
    return out


async def disabled_with_data(check: Check) -> list[Condition]:
    """Disabled accounts with replicas or used backup storage. Two statements: the replica
    counts and the storage used of disabled accounts (each with the account's name)."""
    if check.empty_scope:
        return []
    disabled = check.narrow(TenantAccount.filter(enabled=False), "company_id")
    replicas = await (
        VmReplica.filter(tenant_account_id__in=Subquery(disabled.values("id")))
        .group_by("tenant_account_id", "tenant_account__name", "tenant_account__company_id")
        .annotate(n=Count("id"))
        .values("tenant_account_id", "tenant_account__name", "tenant_account__company_id", "n")
    )
    storage = await (
        BackupResource.filter(used_gb__gt=0, tenant_account_id__in=Subquery(disabled.values("id")))
        .group_by("tenant_account_id", "tenant_account__name", "tenant_account__company_id")
        .annotate(gb=Sum("used_gb"))
        .values("tenant_account_id", "tenant_account__name", "tenant_account__company_id", "gb")
    )
    found: dict[int, dict[str, Any]] = {}
    for r in [*replicas, *storage]:
        found.setdefault(r["tenant_account_id"], {}).update(r)
    out = []
    for account_id, r in sorted(found.items()):
        held = [f"{r['n']} replica(s)"] if r.get("n") else []
        held += [f"{r['gb']} GB of backups"] if r.get("gb") else []
        out.append(
            Condition(
                "TenantAccount",
                account_id,
                r["tenant_account__name"],
                r["tenant_account__company_id"],
                None,
                None,
                check.severity,
                "disabled while it holds " + " and ".join(held),
            )
        )
    return out


def _serving(prefix: str) -> Q:
    """A gateway that serves tenants (fields under `prefix`): enabled, and its last probe did
    not fail."""
    enabled: dict[str, Any] = {f"{prefix}enabled": True}
    answered: dict[str, Any] = {f"{prefix}reachable": True}
    unprobed: dict[str, Any] = {f"{prefix}reachable__isnull": True}
    return Q(**enabled) & (Q(**answered) | Q(**unprobed))


async def no_gateway(check: Check) -> list[Condition]:
    """Two statements: whether any gateway serves, then the enabled accounts left without one
    (restricted to pools without a serving gateway; or free to use all, with none)."""
    if check.empty_scope:
        return []
    any_serving = await CloudGateway.filter(_serving("")).exists()
    served = TenantAccount.filter(_serving("gateway_pools__gateways__")).values("id")
    stranded = Q(gateway_selection=GatewaySelection.POOLS) & ~Q(id__in=Subquery(served))
    if not any_serving:
        stranded = Q()  # no serving gateway at all: every account is stranded
    rows = await check.narrow(TenantAccount.filter(stranded, enabled=True), "company_id").values(
        "id", "name", "company_id", "gateway_selection"
    )
    return [
        Condition(
            "TenantAccount",
            r["id"],
            r["name"],
            r["company_id"],
            None,
            None,
            check.severity,
            "no enabled, reachable cloud gateway in its gateway pools"
            if r["gateway_selection"] == GatewaySelection.POOLS
            else "no enabled, reachable cloud gateway",
        )
        for r in rows
    ]


async def gateway_unreachable(check: Check) -> list[Condition]:
    """Enabled gateways whose last probe failed, and disabled gateways of pools that enabled
    pool-restricted accounts depend on. Up to three statements: the provider, both kinds of
    gateway in one read, the accounts of the disabled gateways' pools."""
    provider = await provider_in_scope(check)
    if provider is None:
        return []
    gateways = await CloudGateway.filter(
        Q(enabled=True, reachable=False) | Q(enabled=False, pool_id__not_isnull=True)
    ).values(
        "id",
        "name",
        "address",
        "port",
        "enabled",
        "pool_id",
        "pool__name",
        "last_probe_error",
        "last_reachable_at",
    )
    pools = {g["pool_id"] for g in gateways if not g["enabled"]}
    users: Counter[int] = Counter()
    if pools:
        links = await TenantAccount.filter(
            enabled=True,
            gateway_selection=GatewaySelection.POOLS,
            gateway_pools__id__in=pools,
        ).values("id", "gateway_pools__id")
        users = Counter(link["gateway_pools__id"] for link in links)
    out = []
    for g in gateways:
        if g["enabled"]:
            # Worded by the state, not by the probe's time: the same outage seen every minute
            # is one occurrence (a new error or a success in between is another).
            said = (
                f"gateway {g['address']}:{g['port']} is unreachable"
                f" ({g['last_probe_error'] or 'probe failed'}); last reachable"
                + (f" {stamp(g['last_reachable_at'])}" if g["last_reachable_at"] else ": never")
            )
        elif users[g["pool_id"]]:
            said = (
                f"gateway {g['address']} is disabled while {users[g['pool_id']]} tenant"
                f" account(s) use its pool {g['pool__name']}"
            )
        else:
            continue
        out.append(
            Condition(
                "CloudGateway", g["id"], g["name"], provider, None, None, check.severity, said
            )
        )
    return out


async def failover_failed(check: Check) -> list[Condition]:
    """The latest failed session of each plan, unless a later session of the plan succeeded
    (the `failover_session.finished` event is written with the session's end, so the sessions
    say the same). The object is the failed session: an alarm resolved by hand is about that
    session, and a later failure is a new alarm. Two statements."""
    if check.empty_scope:
        return []
    per_plan = await (
        check.narrow(
            FailoverSession.filter(
                state__in=[FailoverSessionState.FAILED, FailoverSessionState.SUCCEEDED]
            ),
            "company_id",
        )
        .group_by("plan_id")
        .annotate(
            failed=Max("id", _filter=Q(state=FailoverSessionState.FAILED)),
            ok=Max("id", _filter=Q(state=FailoverSessionState.SUCCEEDED)),
        )
        .values("plan_id", "failed", "ok")
    )
    ids = [r["failed"] for r in per_plan if r["failed"] and r["failed"] > (r["ok"] or 0)]
    if not ids:
        return []
    rows = await FailoverSession.filter(id__in=ids).values(
        "id", "company_id", "kind", "plan__name", "vms_failed", "vms_total", "error", "finished_at"
    )
    return [
        Condition(
            "FailoverSession",
            r["id"],
            r["plan__name"],
            r["company_id"],
            None,
            None,
            check.severity,
            f"{r['kind'].lower()} session of plan {r['plan__name']} failed"
            f" ({stamp(r['finished_at'])}): {r['vms_failed']} of {r['vms_total']} VM(s) failed"
            + (f"; {r['error'][:300]}" if r["error"] else ""),
        )
        for r in rows
    ]


DEFINITIONS = [
    define(
        "tenant_lease_expiring",
        "Tenant account lease expiring",
        "An enabled tenant account's lease ends within the warning or error number of days"
        " (or has ended).",
        K.THRESHOLD,
        S.WARNING,
        "time",
        lease_expiring,
        "TenantAccount",
        {"warning": 14, "error": 3},
        DAYS,
        BELOW,
    ),
    define(
        "tenant_disabled_with_data",
        "Tenant account disabled with data",
        "A disabled tenant account still holds replicas or used backup storage.",
        K.STATE_CHANGE,
        S.WARNING,
        "tenants",
        disabled_with_data,
        "TenantAccount",
    ),
    define(
        "tenant_no_gateway",
        "Tenant account without a gateway",
        "An enabled tenant account restricted to gateway pools has no enabled gateway in"
        " them that answers its probes: it cannot reach the cloud.",
        K.STATE_CHANGE,
        S.ERROR,
        "tenants",
        no_gateway,
        "TenantAccount",
    ),
    define(
        "cloud_gateway_unreachable",
        "Cloud gateway unreachable",
        "An enabled cloud gateway did not answer its last reachability probe (a TCP connect"
        " to its address and port), or a gateway is disabled while enabled tenant accounts"
        " use its pool. Resolves when a later probe succeeds (or the gateway is re-enabled,"
        " or no account depends on it).",
        K.STATE_CHANGE,
        S.ERROR,
        "tenants",
        gateway_unreachable,
        "CloudGateway",
    ),
    define(
        "certificate_expiring",
        "SSL certificate expiring",
        "The provider's active certificate expires within the warning or error number of days"
        " (or has expired).",
        K.THRESHOLD,
        S.WARNING,
        "time",
        certificate_expiring,
        "Certificate",
        {"warning": 30, "error": 7},
        DAYS,
        BELOW,
    ),
    define(
        "failover_session_failed",
        "Failover plan session failed",
        "The latest finished session of a failover plan failed; stays until resolved by hand"
        " or a later session of the same plan succeeds.",
        K.EVENT,
        S.ERROR,
        "events",
        failover_failed,
        "FailoverSession",
    ),
]
