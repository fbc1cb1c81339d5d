"""Invoices left unpaid and license usage above the template's per-product quotas."""

from __future__ import annotations

from datetime import date, timedelta
from functools import reduce
from operator import or_

from tortoise.expressions import Q

from app.alarms.evaluators.base import QUOTAS, Check, Condition, K, Limit, S, define
from app.models import Invoice, InvoiceState, LicensedProduct, LicenseUsage


async def invoice_unpaid(check: Check) -> list[Condition]:
    """Generated invoices still UNPAID or OVERDUE more than `days` after their due date; the
    customer is the organization (its administrators and its issuer's watch it)."""
    if check.empty_scope:
        return []
    limit = check.thresholds["days"]
    today = check.now.date()
    rows = await check.narrow(
        Invoice.filter(
            state__in=[InvoiceState.UNPAID, InvoiceState.OVERDUE],
            generated=True,
            due_on__lt=today - timedelta(days=limit),
        ),
        "customer_id",
    ).values("id", "number", "customer_id", "due_on", "total", "currency")
    return [
        Condition(
            "Invoice",
            r["id"],
            r["number"],
            r["customer_id"],
            None,
            None,
            check.severity,
            f"invoice {r['number']} ({r['total']:.2f} {r['currency']}) unpaid since its due"
            f" date {r['due_on']} (limit {limit} days)",
        )
        for r in rows
    ]


async def license_over_quota(check: Check) -> list[Condition]:
    """This month's usage rows above the product's quota (quotas of 0 are not watched). The
    object is the company's usage row of the month: a new month starts a new alarm."""
    quotas = {p: q for p, q in check.thresholds.items() if q}
    if check.empty_scope or not quotas:
        return []
    month = date(check.now.year, check.now.month, 1)
    over = reduce(or_, (Q(product=p, units__gt=q) for p, q in quotas.items()))
    rows = await check.narrow(LicenseUsage.filter(over, month=month), "company_id").values(
        "id", "company_id", "company__name", "product", "units"
    )
    return [
        Condition(
            "LicenseUsage",
            r["id"],
            f"{r['company__name']}: {r['product']}",
            r["company_id"],
            None,
            None,
            check.severity,
            f"{r['units']} {r['product']} units used in {month:%B %Y}"
            f" (quota {quotas[str(r['product'])]})",
        )
        for r in rows
    ]


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
        "LicenseUsage",
        dict.fromkeys((p.value for p in LicensedProduct), 0),
        QUOTAS,
    ),
]
