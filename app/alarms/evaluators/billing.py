"""Evaluators (placeholder until filled)."""

from __future__ import annotations

from app.alarms.evaluators.base import (
    QUOTAS,
    Check,
    Condition,
    K,
    Limit,
    S,
    define,
)
from app.models import LicensedProduct


async def invoice_unpaid(check: Check) -> list[Condition]:
    return []


async def license_over_quota(check: Check) -> list[Condition]:
    return []


DEFINITIONS = [
    define(
        "invoice_unpaid",
        "Invoice unpaid",
        "An invoice is still unpaid the given number of days after its due date.",
        K.THRESHOLD,
        S.WARNING,
        "time",
        invoice_unpaid,
        "Invoice",
        {"days": 7},
        {"days": Limit(0, 365, "days")},
    ),
    define(
        "license_over_quota",
        "License usage over quota",
        "A company uses more units of a product this month than the template's quota for it"
        " (0: no quota).",
        K.THRESHOLD,
        S.WARNING,
        "usage",
        license_over_quota,
        "Organization",
        dict.fromkeys((p.value for p in LicensedProduct), 0),
        QUOTAS,
    ),
]
