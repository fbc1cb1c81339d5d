"""Suspicious login activity, read from the audit log's failed `login` entries (one per
refused attempt, with the account when the e-mail is known and the client's address)."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from tortoise.functions import Count, Max
from tortoise.queryset import QuerySet

from app.alarms.evaluators.base import (
    LOGINS,
    Check,
    Condition,
    K,
    S,
    define,
    provider_in_scope,
    stamp,
)
from app.models import AuditEntry, User


def _failures(check: Check) -> QuerySet[AuditEntry]:
    since = check.now - timedelta(minutes=check.thresholds["minutes"])
    return AuditEntry.filter(action="login", outcome="FAILURE", at__gte=since, at__lte=check.now)


def _said(check: Check, n: int, last: datetime | None) -> str:
    return (
        f"{n} failed logins in {check.thresholds['minutes']} min"
        f" (limit {check.thresholds['count']}; latest {stamp(last)})"
    )


async def failed_logins_per_account(check: Check) -> list[Condition]:
    """Accounts (known users; the entry's organization is the user's) with at least `count`
    failures within `minutes`. Two statements: the counts, the accounts' e-mails."""
    if check.empty_scope:
        return []
    counts = await (
        check.narrow(_failures(check).exclude(object_id=""), "organization_id")
        .group_by("object_id", "organization_id")
        .annotate(n=Count("id"), last=Max("at"))
        .filter(n__gte=check.thresholds["count"])
        .values("object_id", "organization_id", "n", "last")
    )
    if not counts:
        return []
    emails = dict(
        await User.filter(id__in=[int(c["object_id"]) for c in counts]).values_list("id", "email")
    )
    return [
        Condition(
            "User",
            int(c["object_id"]),
            str(emails.get(int(c["object_id"]), c["object_id"])),
            c["organization_id"],
            None,
            None,
            check.severity,
            _said(check, c["n"], c["last"]),
        )
        for c in counts
        if c["organization_id"] is not None
    ]


def address_id(address: str) -> int:
    """A client address as a stable positive 31-bit object id (alarms key objects by int)."""
    return zlib.crc32(address.encode()) & 0x7FFFFFFF


async def failed_logins_per_address(check: Check) -> list[Condition]:
    """Client addresses with at least `count` failures within `minutes`, whatever the accounts
    (known or not): the provider's concern."""
    provider = await provider_in_scope(check)
    if provider is None:
        return []
    counts = await (
        _failures(check)
        .exclude(client_address="")
        .group_by("client_address")
        .annotate(n=Count("id"), last=Max("at"))
        .filter(n__gte=check.thresholds["count"])
        .values("client_address", "n", "last")
    )
    return [
        Condition(
            "ClientAddress",
            address_id(c["client_address"]),
            c["client_address"],
            provider,
            None,
            None,
            check.severity,
            _said(check, c["n"], c["last"]),
        )
        for c in counts
    ]


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
