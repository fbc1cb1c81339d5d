"""Evaluators (placeholder until filled)."""

from __future__ import annotations

from app.alarms.evaluators.base import (
    LOGINS,
    Check,
    Condition,
    K,
    S,
    define,
)


async def failed_logins_per_account(check: Check) -> list[Condition]:
    return []


async def failed_logins_per_address(check: Check) -> list[Condition]:
    return []


DEFINITIONS = [
    define(
        "suspicious_logins_account",
        "Suspicious login activity (account)",
        "An account had at least the given number of failed logins within the given minutes.",
        K.EVENT,
        S.WARNING,
        "logins",
        failed_logins_per_account,
        "User",
        {"count": 5, "minutes": 15},
        LOGINS,
    ),
    define(
        "suspicious_logins_address",
        "Suspicious login activity (address)",
        "One client address had at least the given number of failed logins within the given"
        " minutes, whatever the accounts.",
        K.EVENT,
        S.WARNING,
        "logins",
        failed_logins_per_address,
        "ClientAddress",
        {"count": 20, "minutes": 15},
        LOGINS,
    ),
]
