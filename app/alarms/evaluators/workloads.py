"""Evaluators (placeholder until filled)."""

from __future__ import annotations

from app.alarms.evaluators.base import (
    HOURS,
    Check,
    Condition,
    K,
    S,
    define,
)


async def job_failed(check: Check) -> list[Condition]:
    return []


async def job_warning(check: Check) -> list[Condition]:
    return []


async def job_too_long(check: Check) -> list[Condition]:
    return []


async def rpo_exceeded(check: Check) -> list[Condition]:
    return []


async def file_restore_failed(check: Check) -> list[Condition]:
    return []


async def discovery_failed(check: Check) -> list[Condition]:
    return []


DEFINITIONS = [
    define(
        "job_session_failed",
        "Job session failed",
        "The latest finished session of a backup job failed; clears when a later session"
        " succeeds or ends with a warning.",
        K.STATE_CHANGE,
        S.ERROR,
        "sessions",
        job_failed,
        "BackupJob",
    ),
    define(
        "job_session_warning",
        "Job session warning",
        "The latest finished session of a backup job ended with warnings.",
        K.STATE_CHANGE,
        S.WARNING,
        "sessions",
        job_warning,
        "BackupJob",
    ),
    define(
        "job_running_too_long",
        "Job running longer than allowed",
        "A backup job session has been running for more than the allowed hours.",
        K.THRESHOLD,
        S.WARNING,
        "time",
        job_too_long,
        "BackupJob",
        {"hours": 8},
        HOURS,
    ),
    define(
        "rpo_exceeded",
        "No successful backup within the RPO",
        "A protected computer (one with backup jobs) has no restore point newer than the"
        " allowed hours.",
        K.THRESHOLD,
        S.ERROR,
        "time",
        rpo_exceeded,
        "ManagedComputer",
        {"hours": 24},
        HOURS,
    ),
    define(
        "file_restore_failed",
        "File-level restore failed",
        "A file-level restore failed within the last hours and no later restore of the same"
        " computer completed.",
        K.EVENT,
        S.ERROR,
        "inventory",
        file_restore_failed,
        "FileRestoreRequest",
        {"hours": 72},
        HOURS,
    ),
    define(
        "discovery_rule_failed",
        "Discovery rule failed",
        "The last run of a discovery rule failed or reported errors.",
        K.STATE_CHANGE,
        S.WARNING,
        "inventory",
        discovery_failed,
        "DiscoveryRule",
    ),
]
