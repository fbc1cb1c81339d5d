"""Evaluators (placeholder until filled)."""

from __future__ import annotations

from app.alarms.evaluators.base import (
    HOURS,
    MINUTES,
    Check,
    Condition,
    K,
    S,
    define,
)


async def backup_agent_offline(check: Check) -> list[Condition]:
    return []


async def backup_agent_error(check: Check) -> list[Condition]:
    return []


async def management_agent_offline(check: Check) -> list[Condition]:
    return []


async def management_agent_error(check: Check) -> list[Condition]:
    return []


async def backup_server_offline(check: Check) -> list[Condition]:
    return []


async def backup_server_error(check: Check) -> list[Condition]:
    return []


async def veeam_one_errors(check: Check) -> list[Condition]:
    return []


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
