"""The billing figures computed without the application: the floor and the checks.

* `FLOOR_SQL`: one hand-written aggregate of every billed figure of every assigned company
  (the benchmark's floor, and the checks' independent measure);
* `expected_invoice`: an invoice's lines and totals recomputed with `Decimal` from those
  figures and the plan's rows, written from the documented rules of `app.billing.pricing`
  without calling it;
* `recompute`: every invoice of a first run compared with that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg

ITEMS = (
    "WORKSTATION_AGENT",
    "SERVER_AGENT",
    "MANAGED_VM",
    "CLOUD_BACKUP_WORKSTATION",
    "CLOUD_BACKUP_SERVER",
    "CLOUD_BACKUP_VM",
    "REPLICATED_VM",
    "CLOUD_STORAGE_GB",
    "COMPUTE_HOUR",
    "TRANSFER_OUT_GB",
)
MINOR_UNITS = {"EUR": 2, "USD": 2, "JPY": 0, "BHD": 3, "GBP": 2}

# --- the floor: one aggregate of the same usage ------------------------------------------

# Every billed figure of every assigned company, per (company, location) — location NULL for
# replicas and storage, as `app.services.billing_usage` measures them — in ONE statement. The
# ledger is summed over each company's first period: from its billing start (00:00 UTC) to the
# invoice date $1 (exclusive), which is every invoice's period in a first run.
FLOOR_SQL = """
WITH billed AS (SELECT customer_id AS company_id, billing_start FROM plan_assignments),
agents AS (
    SELECT c.company_id, c.location_id, a.edition,
           EXISTS (SELECT 1 FROM backup_jobs j WHERE j.computer_id = a.computer_id
                   AND j.kind = 'AGENT' AND j.target_kind = 'CLOUD') AS cloud
    FROM backup_agents a
    JOIN managed_computers c ON c.id = a.computer_id
    JOIN billed b ON b.company_id = c.company_id
)
SELECT company_id, location_id,
       CASE edition WHEN 'SERVER' THEN 'SERVER_AGENT' ELSE 'WORKSTATION_AGENT' END AS item,
       count(*)::numeric AS quantity, NULL::numeric AS consumed
FROM agents GROUP BY 1, 2, 3
UNION ALL
SELECT company_id, location_id,
       CASE edition WHEN 'SERVER' THEN 'CLOUD_BACKUP_SERVER' ELSE 'CLOUD_BACKUP_WORKSTATION' END,
       count(*), NULL
FROM agents WHERE cloud GROUP BY 1, 2, 3
UNION ALL
SELECT j.company_id, j.location_id, 'MANAGED_VM', count(*), NULL
FROM backup_jobs j JOIN billed b ON b.company_id = j.company_id
WHERE j.kind IN ('VBR_BACKUP', 'REPLICATION') GROUP BY 1, 2
UNION ALL
SELECT j.company_id, j.location_id, 'CLOUD_BACKUP_VM', count(*), NULL
FROM backup_jobs j JOIN billed b ON b.company_id = j.company_id
WHERE j.kind IN ('VBR_BACKUP', 'BACKUP_COPY') AND j.target_kind = 'CLOUD' GROUP BY 1, 2
UNION ALL
SELECT t.company_id, NULL, 'REPLICATED_VM', count(*), NULL
FROM vm_replicas r JOIN tenant_accounts t ON t.id = r.tenant_account_id
JOIN billed b ON b.company_id = t.company_id GROUP BY 1
UNION ALL
SELECT t.company_id, NULL, 'CLOUD_STORAGE_GB', sum(r.quota_gb), sum(r.used_gb)
FROM backup_resources r JOIN tenant_accounts t ON t.id = r.tenant_account_id
JOIN billed b ON b.company_id = t.company_id GROUP BY 1
UNION ALL
SELECT l.company_id, l.location_id, l.item, sum(l.quantity), NULL
FROM usage_ledger l JOIN billed b ON b.company_id = l.company_id
WHERE l.item IN ('COMPUTE_HOUR', 'TRANSFER_OUT_GB')
  AND l.at >= b.billing_start::timestamp AT TIME ZONE 'UTC'
  AND l.at < $1::date::timestamp AT TIME ZONE 'UTC'
GROUP BY 1, 2, 3
"""

# company → {(location id or None, item): (quantity, consumed)}
Figures = dict[int, dict[tuple[int | None, str], tuple[Decimal, Decimal]]]


def figures_of(rows: list[Any]) -> Figures:
    out: Figures = {}
    for r in rows:
        out.setdefault(r["company_id"], {})[(r["location_id"], r["item"])] = (
            Decimal(r["quantity"]),
            Decimal(r["consumed"] or 0),
        )
    return out


# --- the independent recomputation --------------------------------------------------------


def _money(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]), rounding=ROUND_HALF_UP)


def _storage(quantity: Decimal, consumed: Decimal, rate: dict[str, Any]) -> Decimal:
    if rate["storage_mode"] == "ALLOCATED":
        return quantity
    if rate["round_up"]:
        return Decimal(math.ceil(consumed / rate["block_gb"]) * rate["block_gb"])
    return consumed


def expected_invoice(
    figures: dict[tuple[int | None, str], tuple[Decimal, Decimal]],
    plan: dict[str, Any],
    rates: dict[str, dict[str, Any]],
) -> tuple[list[tuple[str, int | None, Decimal]], dict[str, Decimal]]:
    """(item, location, amount) of each line and the totals of a SUMMARY or DETAILED invoice,
    from the documented rules: per-line half-up rounding, allowances per invoice (consumed
    location by location, ascending id, no location last), storage blocks on the invoice's
    (or location's) figure, discount on the subtotal, tax on the discounted sum."""
    currency = plan["currency"]
    detailed = plan["invoice_type"] == "DETAILED"
    merged: dict[tuple[str, int | None], list[Decimal]] = {}
    for (loc, item), (quantity, consumed) in figures.items():
        acc = merged.setdefault((item, loc if detailed else None), [Decimal(0), Decimal(0)])
        acc[0] += quantity
        acc[1] += consumed
    order = sorted(
        merged, key=lambda k: (ITEMS.index(k[0]), k[1] is None, k[1] if k[1] is not None else 0)
    )
    lines: list[tuple[str, int | None, Decimal]] = []
    left: dict[str, Decimal] = {}
    for item, loc in order:
        rate = rates.get(item)
        if rate is None or rate["rate"] is None:
            continue
        quantity, consumed = merged[(item, loc)]
        if item == "CLOUD_STORAGE_GB":
            quantity = _storage(quantity, consumed, rate)
        if quantity == 0:
            continue
        allowance = left.setdefault(item, Decimal(rate["free_allowance"]))
        used = min(allowance, quantity)
        left[item] = allowance - used
        lines.append((item, loc, _money((quantity - used) * Decimal(rate["rate"]), currency)))
    subtotal = sum((amount for _, _, amount in lines), _money(Decimal(0), currency))
    discount = _money(subtotal * Decimal(plan["discount_percent"]) / 100, currency)
    tax = _money((subtotal - discount) * Decimal(plan["tax_rate_percent"]) / 100, currency)
    totals = {"subtotal": subtotal, "discount": discount, "tax": tax,
              "total": subtotal - discount + tax}  # fmt: skip
    return lines, totals


@dataclass
class Checked:
    invoices: int = 0
    with_money: int = 0  # invoices whose expected total is not zero
    mismatches: int = 0
    wrong: list[str] = field(default_factory=list)  # the first few differences


async def recompute(conn: asyncpg.Connection, as_of: date) -> Checked:
    """Every invoice of the first run dated `as_of` against the independent recomputation
    (FLOOR_SQL's figures priced by `expected_invoice`): currency, lines (item, location,
    amount, in order) and totals."""
    figures = figures_of(await conn.fetch(FLOOR_SQL, as_of))
    plans = {r["id"]: dict(r) for r in await conn.fetch("SELECT * FROM subscription_plans")}
    rates: dict[int, dict[str, dict[str, Any]]] = {}
    for r in await conn.fetch("SELECT * FROM plan_rates"):
        rates.setdefault(r["plan_id"], {})[r["item"]] = dict(r)
    lines: dict[int, list[tuple[str, int | None, Decimal]]] = {}
    for r in await conn.fetch(
        "SELECT invoice_id, item, location_id, amount FROM invoice_lines "
        "ORDER BY invoice_id, position"
    ):
        lines.setdefault(r["invoice_id"], []).append((r["item"], r["location_id"], r["amount"]))
    out = Checked()
    for inv in await conn.fetch(
        "SELECT i.*, a.plan_id AS assigned FROM invoices i "
        "JOIN plan_assignments a ON a.customer_id = i.customer_id WHERE i.issued_on = $1",
        as_of,
    ):
        plan = plans[inv["assigned"]]
        want_lines, want = expected_invoice(
            figures.get(inv["customer_id"], {}), plan, rates.get(plan["id"], {})
        )
        got = {k: inv[k] for k in want}
        out.invoices += 1
        out.with_money += want["total"] != 0
        got_lines = lines.get(inv["id"], [])
        if (inv["currency"], got, got_lines) != (plan["currency"], want, want_lines):
            out.mismatches += 1
            if len(out.wrong) < 3:
                out.wrong.append(
                    f"invoice {inv['number']} (customer {inv['customer_id']}, {plan['name']}): "
                    f"{inv['currency']} {got} {got_lines} != {want} {want_lines}"
                )
    return out
