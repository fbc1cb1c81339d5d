"""Validation of subscription plan input: the plan's own fields and its rate list. Every
error is a BAD_USER_INPUT naming its GraphQL field (`input.rates.2.rate`).

Amounts and percentages are `Decimal`, finite, with at most 4 decimal places (the columns'
scale): a value that would be rounded on storage is refused rather than silently changed.
Currencies are the ISO 4217 codes `app.billing.money` accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from app.billing import money
from app.errors import BadInput
from app.models.billing import BillingItem, InvoiceType, StorageMode, SubscriptionPlan, TaxType
from app.services.text_inputs import clean_text

PLACES = Decimal("0.0001")  # every stored amount and percentage has 4 decimal places
MAX_AMOUNT = Decimal("9999999999.9999")  # DECIMAL(14, 4)
HUNDRED = Decimal(100)


def clean_decimal(
    value: Decimal | str | int, field: str, low: Decimal = Decimal(0), high: Decimal = MAX_AMOUNT
) -> Decimal:
    """A finite number from `low` to `high` with at most 4 decimal places, stored with 4."""
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise BadInput("not a number", field=field) from None
    if not number.is_finite():
        raise BadInput("not a finite number", field=field)
    if not low <= number <= high:
        raise BadInput(f"must be from {low} to {high}", field=field)
    quantized = number.quantize(PLACES)
    if quantized != number:
        raise BadInput("at most 4 decimal places", field=field)
    return quantized


def clean_currency(value: str, field: str = "input.currency") -> str:
    """An accepted ISO 4217 code, exactly as written (three upper-case letters)."""
    try:
        money.minor_units(value)
    except BadInput as exc:
        raise BadInput(exc.message, field=field) from None
    return value


def _int(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise BadInput(f"must be from {low} to {high}", field=field)
    return value


@dataclass(frozen=True)
class PlanInput:
    """The plan's own fields; None leaves a field as it is (edits) or takes the default."""

    name: str | None = None
    description: str | None = None
    currency: str | None = None
    tax_type: TaxType | None = None
    tax_rate_percent: Decimal | None = None
    discount_percent: Decimal | None = None
    billing_day: int | None = None
    due_days: int | None = None
    invoice_type: InvoiceType | None = None


def clean_plan(data: PlanInput) -> dict[str, Any]:
    """The given fields, validated, by model field name."""
    out: dict[str, Any] = {}
    if data.name is not None:
        out["name"] = clean_text(data.name, "input.name", 200, required=True)
    if data.description is not None:
        out["description"] = clean_text(data.description, "input.description", 1000, required=False)
    if data.currency is not None:
        out["currency"] = clean_currency(data.currency)
    if data.tax_type is not None:
        out["tax_type"] = TaxType(data.tax_type)
    if data.tax_rate_percent is not None:
        out["tax_rate_percent"] = clean_decimal(
            data.tax_rate_percent, "input.taxRatePercent", high=HUNDRED
        )
    if data.discount_percent is not None:
        out["discount_percent"] = clean_decimal(
            data.discount_percent, "input.discountPercent", high=HUNDRED
        )
    if data.billing_day is not None:
        out["billing_day"] = _int(data.billing_day, "input.billingDay", 1, 28)
    if data.due_days is not None:
        out["due_days"] = _int(data.due_days, "input.dueDays", 0, 365)
    if data.invoice_type is not None:
        out["invoice_type"] = InvoiceType(data.invoice_type)
    return out


def check_tax(plan: SubscriptionPlan) -> None:
    if plan.tax_type is TaxType.NONE and Decimal(plan.tax_rate_percent) != 0:
        raise BadInput("a tax rate needs a tax type (VAT, GST or SALES_TAX)", field="input.taxType")


@dataclass(frozen=True)
class RateInput:
    """One billed item. `rate` None: not billed. The storage settings are for
    CLOUD_STORAGE_GB only: ALLOCATED bills the quota given, CONSUMED the space used in blocks
    of `block_gb`, rounded up to whole blocks when `round_up`."""

    item: BillingItem
    rate: Decimal | None = None
    free_allowance: Decimal = Decimal(0)
    storage_mode: StorageMode | None = None
    block_gb: int | None = None
    round_up: bool | None = None


def clean_rates(rates: Sequence[RateInput], prefix: str = "input.rates") -> list[dict[str, Any]]:
    """The whole list, validated item by item; the first error names its field."""
    seen: set[BillingItem] = set()
    out: list[dict[str, Any]] = []
    for i, r in enumerate(rates):
        at = f"{prefix}.{i}"
        item = BillingItem(r.item)
        if item in seen:
            raise BadInput(f"{item.value} is listed twice", field=f"{at}.item")
        seen.add(item)
        row: dict[str, Any] = {
            "item": item,
            "rate": None if r.rate is None else clean_decimal(r.rate, f"{at}.rate"),
            "free_allowance": clean_decimal(r.free_allowance, f"{at}.freeAllowance"),
            "storage_mode": StorageMode.ALLOCATED,
            "block_gb": 1,
            "round_up": False,
        }
        storage = (
            ("storage_mode", "storageMode"),
            ("block_gb", "blockGb"),
            ("round_up", "roundUp"),
        )
        if item is not BillingItem.CLOUD_STORAGE_GB:
            for name, label in storage:
                if getattr(r, name) is not None:
                    raise BadInput(
                        f"{label} applies to CLOUD_STORAGE_GB only", field=f"{at}.{label}"
                    )
        else:
            mode = StorageMode(r.storage_mode or StorageMode.ALLOCATED)
            row["storage_mode"] = mode
            if mode is StorageMode.ALLOCATED:
                if r.block_gb not in (None, 1):
                    raise BadInput("blocks apply to CONSUMED storage only", field=f"{at}.blockGb")
                if r.round_up:
                    raise BadInput(
                        "rounding applies to CONSUMED storage only", field=f"{at}.roundUp"
                    )
            else:
                row["block_gb"] = _int(
                    1 if r.block_gb is None else r.block_gb, f"{at}.blockGb", 1, 1_000_000
                )
                row["round_up"] = bool(r.round_up)
        out.append(row)
    return out
