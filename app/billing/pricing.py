"""Pricing: measured usage times a plan's rates into invoice lines and totals. Pure: no I/O.

Rounding rule (money in `Decimal`, rounding by `app.billing.money.round_money`: half-up to
the currency's minor units):

- each line's amount = round(billable quantity × rate), rounded on its own;
- subtotal = the sum of the (rounded) line amounts — exact, no further rounding;
- discount = round(subtotal × discount% / 100);
- tax = round((subtotal − discount) × tax% / 100) — tax is charged on the discounted sum;
- total = subtotal − discount + tax — exact.

Quantities:

- Counted items (agents, VMs, replicas) and ledger items (compute hours, GB transferred out)
  are billed as measured.
- CLOUD_STORAGE_GB: a `Usage` carries both figures — `quantity` is the allocated quota in GB,
  `consumed` the space used in GB. A rate in ALLOCATED mode bills `quantity`; in CONSUMED mode
  it bills `consumed`, and when the rate has `round_up` the GB are rounded up to a whole
  multiple of `block_gb` (250 GB in 100 GB blocks → 300 GB; exactly 200 GB stays 200 GB);
  without `round_up` the exact GB are billed (no blocks). The rate is always per GB. In a
  SUMMARY invoice the blocks are taken on the customer's total, in a DETAILED invoice on each
  location's figure.
- Free allowance: per item and per invoice, subtracted after block rounding; the billable
  quantity never goes below zero. In a DETAILED invoice the allowance is consumed location by
  location in location order (ascending location id, usage without a location last) until it
  is used up; each line shows the part of the allowance it used.

Lines: one per billed item (SUMMARY) or per billed item and location (DETAILED), in the order
of `BillingItem`; an item is billed when its `RateSpec` has a rate (no spec, or a null rate:
not billed, no line); lines with zero quantity are left out. QUOTA_USAGE reports every
measured item's quantity for the whole customer (zero included) with no rate, no allowance and a zero amount, and
cloud storage twice when the consumed figure is known (allocated, then consumed); its totals
are zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from app.billing.money import round_money
from app.models.billing import BillingItem, InvoiceType, StorageMode

ZERO = Decimal(0)

ITEM_LABELS: dict[BillingItem, tuple[str, str]] = {
    BillingItem.WORKSTATION_AGENT: ("Workstation agents", "agent"),
    BillingItem.SERVER_AGENT: ("Server agents", "agent"),
    BillingItem.MANAGED_VM: ("Managed VMs", "VM"),
    BillingItem.CLOUD_BACKUP_WORKSTATION: ("Cloud backup of workstations", "agent"),
    BillingItem.CLOUD_BACKUP_SERVER: ("Cloud backup of servers", "agent"),
    BillingItem.CLOUD_BACKUP_VM: ("Cloud backup of VMs", "VM"),
    BillingItem.REPLICATED_VM: ("Replicated VMs", "VM"),
    BillingItem.CLOUD_STORAGE_GB: ("Cloud storage", "GB"),
    BillingItem.COMPUTE_HOUR: ("Compute of failed-over replicas", "hour"),
    BillingItem.TRANSFER_OUT_GB: ("Data transfer out", "GB"),
}
"""Readable description and unit of each item (descriptions stay Latin-1 for PDF fonts)."""

_ITEM_ORDER = {item: i for i, item in enumerate(BillingItem)}


@dataclass
class RateSpec:
    """One billed item of a plan, as pricing needs it (`rate` None: not billed)."""

    item: BillingItem
    rate: Decimal | None
    free_allowance: Decimal = ZERO
    storage_mode: StorageMode = StorageMode.ALLOCATED
    block_gb: int = 1
    round_up: bool = False


@dataclass
class Usage:
    """A measured quantity of one item (for one location in per-location measurements).

    For CLOUD_STORAGE_GB `quantity` is the allocated quota (GB) and `consumed` the used space
    (GB); other items leave `consumed` None."""

    item: BillingItem
    quantity: Decimal
    location_id: int | None = None
    location_name: str = ""
    consumed: Decimal | None = None


@dataclass
class PricedLine:
    item: BillingItem
    description: str
    unit: str
    quantity: Decimal
    free_allowance: Decimal
    billable_quantity: Decimal
    rate: Decimal | None
    amount: Decimal
    location_id: int | None


@dataclass
class Totals:
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal


def describe(item: BillingItem, spec: RateSpec | None = None, *, consumed: bool = False) -> str:
    """The line description of `item` ("Cloud storage (consumed, 100 GB blocks)")."""
    label = ITEM_LABELS[item][0]
    if item != BillingItem.CLOUD_STORAGE_GB:
        return label
    if spec is not None and spec.storage_mode == StorageMode.CONSUMED:
        consumed = True
    if not consumed:
        return f"{label} (allocated)"
    if spec is not None and spec.round_up:
        return f"{label} (consumed, {spec.block_gb} GB blocks)"
    return f"{label} (consumed)"


def billed_quantity(usage: Usage, spec: RateSpec) -> Decimal:
    """The quantity of `usage` that `spec` bills, before the allowance (storage mode and
    blocks applied)."""
    if usage.item != BillingItem.CLOUD_STORAGE_GB:
        return usage.quantity
    if spec.storage_mode == StorageMode.ALLOCATED:
        return usage.quantity
    gb = usage.consumed if usage.consumed is not None else ZERO
    if spec.round_up and spec.block_gb > 0:
        block = Decimal(spec.block_gb)
        return Decimal(math.ceil(gb / block)) * block
    return gb


def _location_key(usage: Usage) -> tuple[int, int]:
    return (1, 0) if usage.location_id is None else (0, usage.location_id)


def _merge(usages: Iterable[Usage], per_location: bool) -> list[Usage]:
    """Usages summed per item (and per location when `per_location`), in billing order."""
    merged: dict[tuple[BillingItem, int | None], Usage] = {}
    for u in usages:
        loc = u.location_id if per_location else None
        key = (BillingItem(u.item), loc)
        acc = merged.get(key)
        if acc is None:
            merged[key] = Usage(
                key[0],
                Decimal(u.quantity),
                loc,
                u.location_name if per_location else "",
                None if u.consumed is None else Decimal(u.consumed),
            )
            continue
        acc.quantity += Decimal(u.quantity)
        if u.consumed is not None:
            acc.consumed = (acc.consumed or ZERO) + Decimal(u.consumed)
    return sorted(merged.values(), key=lambda u: (_ITEM_ORDER[u.item], _location_key(u)))


def _quota_lines(usages: list[Usage], zero: Decimal) -> list[PricedLine]:
    lines = []
    for u in usages:
        unit = ITEM_LABELS[u.item][1]
        figures = [(describe(u.item), u.quantity)]
        if u.item == BillingItem.CLOUD_STORAGE_GB and u.consumed is not None:
            figures.append((describe(u.item, consumed=True), u.consumed))
        for description, quantity in figures:
            if u.location_name:
                description = f"{description} - {u.location_name}"
            lines.append(
                PricedLine(
                    u.item, description, unit, quantity, ZERO, quantity, None, zero, u.location_id
                )
            )
    return lines


def price(
    usages: Iterable[Usage],
    rates: Mapping[BillingItem, RateSpec],
    currency: str,
    discount_percent: Decimal,
    tax_rate_percent: Decimal,
    invoice_type: InvoiceType | str,
) -> tuple[list[PricedLine], Totals]:
    """Lines and totals of one invoice (see the module docstring for every rule)."""
    kind = InvoiceType(invoice_type)
    zero = round_money(ZERO, currency)  # validates the currency too
    per_location = kind == InvoiceType.DETAILED
    merged = _merge(usages, per_location)
    if kind == InvoiceType.QUOTA_USAGE:
        return _quota_lines(merged, zero), Totals(zero, zero, zero, zero)

    lines: list[PricedLine] = []
    allowance_left: dict[BillingItem, Decimal] = {}
    for u in merged:
        spec = rates.get(u.item)
        if spec is None or spec.rate is None:
            continue
        quantity = billed_quantity(u, spec)
        if quantity == 0:
            continue
        left = allowance_left.setdefault(u.item, max(Decimal(spec.free_allowance), ZERO))
        used = min(left, quantity)
        allowance_left[u.item] = left - used
        billable = quantity - used
        description = describe(u.item, spec)
        if u.location_name:
            description = f"{description} - {u.location_name}"
        lines.append(
            PricedLine(
                item=u.item,
                description=description,
                unit=ITEM_LABELS[u.item][1],
                quantity=quantity,
                free_allowance=used,
                billable_quantity=billable,
                rate=Decimal(spec.rate),
                amount=round_money(billable * Decimal(spec.rate), currency),
                location_id=u.location_id,
            )
        )
    subtotal = sum((line.amount for line in lines), zero)
    discount = round_money(subtotal * Decimal(discount_percent) / 100, currency)
    tax = round_money((subtotal - discount) * Decimal(tax_rate_percent) / 100, currency)
    return lines, Totals(subtotal, discount, tax, subtotal - discount + tax)
