"""Management agents (their computers' heartbeats), backup agents, backup servers and the
records their Veeam ONE servers report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count, Max

from app.alarms.evaluators.base import (
    HOURS,
    MINUTES,
    Check,
    Condition,
    K,
    S,
    define,
    stamp,
)
from app.models import (
    AgentStatus,
    AlarmSeverity,
    BackupAgent,
    BackupServer,
    ManagedComputer,
    Severity,
    VeeamOneRecord,
)

BAD = (AgentStatus.ERROR, AgentStatus.WARNING)


def _silence(check: Check, heartbeat: datetime | None) -> str:
    limit = check.thresholds["minutes"]
    if heartbeat is not None and heartbeat < check.now - timedelta(minutes=limit):
        return f"no heartbeat since {stamp(heartbeat)} (limit {limit} min)"
    return f"inaccessible (last heartbeat {stamp(heartbeat)})"


def _silent(check: Check, status: str, heartbeat: str) -> Q:
    cutoff = check.now - timedelta(minutes=check.thresholds["minutes"])
    inaccessible: dict[str, Any] = {status: AgentStatus.INACCESSIBLE}
    stale: dict[str, Any] = {f"{heartbeat}__lt": cutoff}
    return Q(**inaccessible) | Q(**stale)


def _bad_severity(check: Check, status: str) -> AlarmSeverity:
    return AlarmSeverity.WARNING if status == AgentStatus.WARNING else check.severity


COMPUTER_FIELDS = ("id", "hostname", "company_id", "location_id", "subtenant_id")
AGENT_FIELDS = (
    "id",
    "status",
    "computer__hostname",
    "computer__company_id",
    "computer__location_id",
    "computer__subtenant_id",
    "computer__last_heartbeat_at",
)
SERVER_FIELDS = ("id", "name", "kind", "company_id", "location_id", "status", "last_heartbeat_at")


def _agent(r: dict[str, Any], severity: AlarmSeverity, message: str) -> Condition:
    return Condition(
        "BackupAgent",
        r["id"],
        r["computer__hostname"],
        r["computer__company_id"],
        r["computer__location_id"],
        r["computer__subtenant_id"],
        severity,
        message,
    )


def _computer(r: dict[str, Any], severity: AlarmSeverity, message: str) -> Condition:
    return Condition(
        "ManagedComputer",
        r["id"],
        r["hostname"],
        r["company_id"],
        r["location_id"],
        r["subtenant_id"],
        severity,
        message,
    )


def _server(r: dict[str, Any], severity: AlarmSeverity, message: str) -> Condition:
    return Condition(
        "BackupServer",
        r["id"],
        r["name"],
        r["company_id"],
        r["location_id"],
        None,
        severity,
        message,
    )


async def backup_agent_offline(check: Check) -> list[Condition]:
    """Backup agents reported inaccessible, or whose computer has been silent too long (the
    backup agent reports through the computer's management agent)."""
    if check.empty_scope:
        return []
    rows = await check.narrow(
        BackupAgent.filter(_silent(check, "status", "computer__last_heartbeat_at")),
        "computer__company_id",
    ).values(*AGENT_FIELDS)
    return [
        _agent(
            r,
            check.severity,
            "backup agent on "
            f"{r['computer__hostname']}: " + _silence(check, r["computer__last_heartbeat_at"]),
        )
        for r in rows
    ]


async def backup_agent_error(check: Check) -> list[Condition]:
    if check.empty_scope:
        return []
    rows = await check.narrow(BackupAgent.filter(status__in=BAD), "computer__company_id").values(
        *AGENT_FIELDS
    )
    return [
        _agent(
            r,
            _bad_severity(check, r["status"]),
            f"backup agent on {r['computer__hostname']} reports {r['status'].lower()}",
        )
        for r in rows
    ]


async def management_agent_offline(check: Check) -> list[Condition]:
    if check.empty_scope:
        return []
    rows = await check.narrow(
        ManagedComputer.filter(_silent(check, "agent_status", "last_heartbeat_at")), "company_id"
    ).values(*COMPUTER_FIELDS, "agent_status", "last_heartbeat_at")
    return [
        _computer(
            r,
            check.severity,
            "management agent: " + _silence(check, r["last_heartbeat_at"]),
        )
        for r in rows
    ]


async def management_agent_error(check: Check) -> list[Condition]:
    if check.empty_scope:
        return []
    rows = await check.narrow(ManagedComputer.filter(agent_status__in=BAD), "company_id").values(
        *COMPUTER_FIELDS, "agent_status"
    )
    return [
        _computer(
            r,
            _bad_severity(check, r["agent_status"]),
            f"management agent reports {r['agent_status'].lower()}",
        )
        for r in rows
    ]


async def backup_server_offline(check: Check) -> list[Condition]:
    if check.empty_scope:
        return []
    rows = await check.narrow(
        BackupServer.filter(_silent(check, "status", "last_heartbeat_at")), "company_id"
    ).values(*SERVER_FIELDS)
    return [_server(r, check.severity, _silence(check, r["last_heartbeat_at"])) for r in rows]


async def backup_server_error(check: Check) -> list[Condition]:
    if check.empty_scope:
        return []
    rows = await check.narrow(BackupServer.filter(status__in=BAD), "company_id").values(
        *SERVER_FIELDS
    )
    return [
        _server(r, _bad_severity(check, r["status"]), f"server reports {r['status'].lower()}")
        for r in rows
    ]


async def veeam_one_errors(check: Check) -> list[Condition]:
    """Per Veeam ONE server: its ERROR records of the last `hours`. Two statements: the counts
    per server, then the servers' names."""
    if check.empty_scope:
        return []
    limit = check.thresholds["hours"]
    counts = await (
        check.narrow(
            VeeamOneRecord.filter(
                severity=Severity.ERROR, recorded_at__gte=check.now - timedelta(hours=limit)
            ),
            "company_id",
        )
        .group_by("server_id")
        .annotate(n=Count("id"), last=Max("recorded_at"))
        .values("server_id", "n", "last")
    )
    if not counts:
        return []
    servers = {
        r["id"]: r
        for r in await BackupServer.filter(id__in=[c["server_id"] for c in counts]).values(
            *SERVER_FIELDS
        )
    }
    return [
        _server(
            servers[c["server_id"]],
            check.severity,
            f"{c['n']} Veeam ONE error record(s) in the last {limit} h (latest {stamp(c['last'])})",
        )
        for c in counts
        if c["server_id"] in servers
    ]


DEFINITIONS = [
    define(
        "backup_agent_offline",
        "Backup agent offline",
        "A backup agent is inaccessible, or its computer has not reported for the allowed minutes.",
        K.STATE_CHANGE,
        S.ERROR,
        "heartbeats",
        backup_agent_offline,
        "BackupAgent",
        {"minutes": 30},
        MINUTES,
    ),
    define(
        "backup_agent_error",
        "Backup agent in error",
        "A backup agent reports an error (or a warning, raised as a warning).",
        K.STATE_CHANGE,
        S.ERROR,
        "heartbeats",
        backup_agent_error,
        "BackupAgent",
    ),
    define(
        "management_agent_offline",
        "Management agent offline",
        "A computer's management agent is inaccessible or has not sent a heartbeat for the"
        " allowed minutes.",
        K.STATE_CHANGE,
        S.ERROR,
        "heartbeats",
        management_agent_offline,
        "ManagedComputer",
        {"minutes": 30},
        MINUTES,
    ),
    define(
        "management_agent_error",
        "Management agent in error",
        "A computer's management agent reports an error (or a warning, raised as a warning).",
        K.STATE_CHANGE,
        S.ERROR,
        "heartbeats",
        management_agent_error,
        "ManagedComputer",
    ),
    define(
        "backup_server_offline",
        "Backup server offline",
        "A backup server or appliance is inaccessible or has not reported for the allowed minutes.",
        K.STATE_CHANGE,
        S.ERROR,
        "heartbeats",
        backup_server_offline,
        "BackupServer",
        {"minutes": 30},
        MINUTES,
    ),
    define(
        "backup_server_error",
        "Backup server in error",
        "A backup server reports an error (or a warning, raised as a warning).",
        K.STATE_CHANGE,
        S.ERROR,
        "heartbeats",
        backup_server_error,
        "BackupServer",
    ),
    define(
        "veeam_one_errors",
        "Veeam ONE errors",
        "A Veeam ONE server reported error records within the last hours.",
        K.EVENT,
        S.ERROR,
        "inventory",
        veeam_one_errors,
        "BackupServer",
        {"hours": 24},
        HOURS,
    ),
]
