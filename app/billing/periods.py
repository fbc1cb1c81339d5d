"""Billing periods. Pure: no I/O.

A customer's invoices are dated on its plan's `billing_day` of each month. The first invoice
is dated on the first such day after `PlanAssignment.billing_start` and covers billing_start ..
the day before its date; every later one starts the day after the previous invoice's
period_end (or at billing_start when the customer was re-assigned later than that) and ends
the day before its own date. A customer that is behind gets one invoice per missed period in
the same run (at most `MAX_PERIODS_PER_RUN`; the next run issues the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MAX_PERIODS_PER_RUN = 120


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive: the day before the invoice date
    invoice_date: date


def _add_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, day.day)


def next_invoice_date(after: date, billing_day: int) -> date:
    """The first date strictly after `after` that falls on `billing_day` (1–28)."""
    candidate = date(after.year, after.month, billing_day)
    return candidate if candidate > after else _add_month(candidate)


def due_periods(
    billing_start: date, billing_day: int, last_end: date | None, as_of: date
) -> list[Period]:
    """The periods whose invoice date is on or before `as_of`, after the last invoiced one."""
    start = billing_start
    if last_end is not None:
        start = max(start, date.fromordinal(last_end.toordinal() + 1))
    periods: list[Period] = []
    day = next_invoice_date(start, billing_day)
    while day <= as_of and len(periods) < MAX_PERIODS_PER_RUN:
        periods.append(Period(start, date.fromordinal(day.toordinal() - 1), day))
        start, day = day, _add_month(day)
    return periods
