"""Evaluators (placeholder until filled)."""

from __future__ import annotations

from app.alarms.evaluators.base import (
    BELOW,
    DAYS,
    Check,
    Condition,
    K,
    S,
    define,
)


async def lease_expiring(check: Check) -> list[Condition]:
    return []


async def disabled_with_data(check: Check) -> list[Condition]:
    return []


async def no_gateway(check: Check) -> list[Condition]:
    return []


async def gateway_unreachable(check: Check) -> list[Condition]:
    return []


async def certificate_expiring(check: Check) -> list[Condition]:
    return []


async def failover_failed(check: Check) -> list[Condition]:
    return []


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
        " them: it cannot reach the cloud.",
        K.STATE_CHANGE,
        S.ERROR,
        "tenants",
        no_gateway,
        "TenantAccount",
    ),
    define(
        "cloud_gateway_unreachable",
        "Cloud gateway unreachable",
        "A cloud gateway is disabled while enabled tenant accounts use its pool (gateways"
        " store no reachability probe: a disabled gateway is the one that cannot be reached).",
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
        "FailoverPlan",
    ),
]
