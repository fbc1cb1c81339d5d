"""Pricing and money: a table of worked invoices checked to the cent (rates, allowances,
round-up blocks, discount, tax on the discounted sum, 0- and 3-decimal currencies, half-up at
the .5 boundary), detailed invoices consuming the allowance location by location, quota usage
reports without amounts, and properties of the totals over generated usage."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.billing.money import CURRENCIES, minor_units, round_money
from app.billing.pricing import PricedLine, RateSpec, Totals, Usage, price
from app.errors import BadInput
from app.models.billing import BillingItem, InvoiceType, StorageMode

D = Decimal
I = BillingItem  # noqa: E741


def spec(item: BillingItem, rate: str | None, allowance: str = "0", **kw) -> RateSpec:
    return RateSpec(item, None if rate is None else D(rate), D(allowance), **kw)


def rates(*specs: RateSpec) -> dict[BillingItem, RateSpec]:
    return {s.item: s for s in specs}


AMOUNTS = ("quantity", "free_allowance", "billable_quantity", "amount")


def figures(line: PricedLine, *names: str) -> tuple:
    return tuple(getattr(line, name) for name in names)


def storage(quota: str, used: str, location: int | None = None, name: str = "") -> Usage:
    return Usage(I.CLOUD_STORAGE_GB, D(quota), location, name, D(used))


# --- money -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "digits"),
    [
        *[("EUR", 2), ("USD", 2), ("CHF", 2), ("JPY", 0), ("KRW", 0), ("ISK", 0)],
        *[("BHD", 3), ("KWD", 3), ("OMR", 3), ("JOD", 3), ("TND", 3)],
    ],
)
def test_minor_units(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits
    assert currency in CURRENCIES


@pytest.mark.parametrize("code", ["XXX", "eur", "EURO", "", "XAU", "CLF"])
def test_unknown_currency_is_bad_input(code: str) -> None:
    with pytest.raises(BadInput) as err:
        minor_units(code)
    assert err.value.field == "currency"
    with pytest.raises(BadInput):
        round_money(D("1"), code)


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        ("2.345", "EUR", "2.35"),  # half up, not to even
        ("2.335", "EUR", "2.34"),
        ("2.3449999", "EUR", "2.34"),
        ("-2.345", "EUR", "-2.35"),  # away from zero
        ("0.005", "USD", "0.01"),
        ("2.5", "JPY", "3"),
        ("3.5", "JPY", "4"),
        ("1.49", "JPY", "1"),
        ("1.0005", "BHD", "1.001"),
        ("1.0004", "BHD", "1.000"),
        ("7", "EUR", "7.00"),
    ],
)
def test_round_money_half_up(value: str, currency: str, expected: str) -> None:
    result = round_money(D(value), currency)
    assert str(result) == expected


BLOCKS = {"storage_mode": StorageMode.CONSUMED, "block_gb": 100, "round_up": True}

# --- worked examples ---------------------------------------------------------------------------

# Each case: usages, rates, currency, discount %, tax %, expected [(item, quantity, allowance,
# billable, amount)], expected (subtotal, discount, tax, total) as strings.
CASES = {
    "agents at plain rates": (
        [Usage(I.WORKSTATION_AGENT, D(12)), Usage(I.SERVER_AGENT, D(3))],
        rates(spec(I.WORKSTATION_AGENT, "4.50"), spec(I.SERVER_AGENT, "19.99")),
        "EUR",
        "0",
        "0",
        [(I.WORKSTATION_AGENT, "12", "0", "12", "54.00"), (I.SERVER_AGENT, "3", "0", "3", "59.97")],
        ("113.97", "0.00", "0.00", "113.97"),
    ),
    "allowance, discount, then VAT on the discounted sum": (
        [Usage(I.SERVER_AGENT, D(10)), Usage(I.MANAGED_VM, D(25))],
        rates(spec(I.SERVER_AGENT, "20", "2"), spec(I.MANAGED_VM, "7.25", "5")),
        "EUR",
        "10",
        "19",
        [(I.SERVER_AGENT, "10", "2", "8", "160.00"), (I.MANAGED_VM, "25", "5", "20", "145.00")],
        # 305.00 − 30.50 = 274.50; × 19 % = 52.155 → 52.16 (half up)
        ("305.00", "30.50", "52.16", "326.66"),
    ),
    "allowance larger than usage bills nothing, never negative": (
        [Usage(I.REPLICATED_VM, D(3))],
        rates(spec(I.REPLICATED_VM, "15", "10")),
        "USD",
        "0",
        "8.25",
        [(I.REPLICATED_VM, "3", "3", "0", "0.00")],
        ("0.00", "0.00", "0.00", "0.00"),
    ),
    "consumed storage rounded up to 100 GB blocks": (
        [storage("1000", "250.4")],
        rates(spec(I.CLOUD_STORAGE_GB, "0.02", **BLOCKS)),
        "EUR",
        "0",
        "0",
        [(I.CLOUD_STORAGE_GB, "300", "0", "300", "6.00")],
        ("6.00", "0.00", "0.00", "6.00"),
    ),
    "consumed storage exactly on a block boundary stays": (
        [storage("1000", "200")],
        rates(spec(I.CLOUD_STORAGE_GB, "0.02", "50", **BLOCKS)),
        "EUR",
        "0",
        "0",
        [(I.CLOUD_STORAGE_GB, "200", "50", "150", "3.00")],
        ("3.00", "0.00", "0.00", "3.00"),
    ),
    "consumed storage without round-up bills exact GB": (
        [storage("1000", "250.4")],
        rates(spec(I.CLOUD_STORAGE_GB, "0.02", storage_mode=StorageMode.CONSUMED, block_gb=100)),
        "EUR",
        "0",
        "0",
        [(I.CLOUD_STORAGE_GB, "250.4", "0", "250.4", "5.01")],  # 5.008
        ("5.01", "0.00", "0.00", "5.01"),
    ),
    "allocated storage bills the quota": (
        [storage("1000", "250.4")],
        rates(spec(I.CLOUD_STORAGE_GB, "0.02", "100")),
        "EUR",
        "0",
        "0",
        [(I.CLOUD_STORAGE_GB, "1000", "100", "900", "18.00")],
        ("18.00", "0.00", "0.00", "18.00"),
    ),
    "blank rate and missing rate are not billed": (
        [Usage(I.SERVER_AGENT, D(4)), Usage(I.MANAGED_VM, D(9)), Usage(I.COMPUTE_HOUR, D(2))],
        rates(spec(I.SERVER_AGENT, "10"), spec(I.MANAGED_VM, None)),
        "EUR",
        "0",
        "0",
        [(I.SERVER_AGENT, "4", "0", "4", "40.00")],
        ("40.00", "0.00", "0.00", "40.00"),
    ),
    "ledger quantities with fractions, half up per line": (
        [Usage(I.COMPUTE_HOUR, D("10.5")), Usage(I.TRANSFER_OUT_GB, D("3.3"))],
        rates(spec(I.COMPUTE_HOUR, "0.125"), spec(I.TRANSFER_OUT_GB, "0.05")),
        "EUR",
        "0",
        "0",
        # 1.3125 → 1.31; 0.165 → 0.17
        [
            (I.COMPUTE_HOUR, "10.5", "0", "10.5", "1.31"),
            (I.TRANSFER_OUT_GB, "3.3", "0", "3.3", "0.17"),
        ],
        ("1.48", "0.00", "0.00", "1.48"),
    ),
    "JPY has no minor units": (
        [Usage(I.WORKSTATION_AGENT, D(7)), Usage(I.SERVER_AGENT, D(1))],
        rates(spec(I.WORKSTATION_AGENT, "150.5"), spec(I.SERVER_AGENT, "999")),
        "JPY",
        "5",
        "10",
        # 1053.5 → 1054; + 999 = 2053; discount 102.65 → 103; (1950) × 10 % = 195
        [(I.WORKSTATION_AGENT, "7", "0", "7", "1054"), (I.SERVER_AGENT, "1", "0", "1", "999")],
        ("2053", "103", "195", "2145"),
    ),
    "BHD has three": (
        [Usage(I.MANAGED_VM, D(3))],
        rates(spec(I.MANAGED_VM, "1.2345")),
        "BHD",
        "2.5",
        "10",
        # 3.7035 → 3.704; discount 0.0926 → 0.093; (3.611) × 10 % = 0.3611 → 0.361
        [(I.MANAGED_VM, "3", "0", "3", "3.704")],
        ("3.704", "0.093", "0.361", "3.972"),
    ),
    "half-up at the .5 boundary of discount and tax": (
        [Usage(I.SERVER_AGENT, D(1))],
        rates(spec(I.SERVER_AGENT, "10.05")),
        "EUR",
        "50",
        "10",
        # discount 5.025 → 5.03; 10.05 − 5.03 = 5.02; tax 0.502 → 0.50
        [(I.SERVER_AGENT, "1", "0", "1", "10.05")],
        ("10.05", "5.03", "0.50", "5.52"),
    ),
    "nothing used: an empty invoice": (
        [Usage(item, D(0)) for item in BillingItem],
        rates(*(spec(item, "1") for item in BillingItem)),
        "EUR",
        "10",
        "20",
        [],
        ("0.00", "0.00", "0.00", "0.00"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_worked_example(name: str) -> None:
    usages, plan, currency, discount, tax, expected_lines, expected_totals = CASES[name]
    lines, totals = price(usages, plan, currency, D(discount), D(tax), InvoiceType.SUMMARY)
    got = [(line.item, *map(str, figures(line, *AMOUNTS))) for line in lines]
    assert got == expected_lines
    assert (str(totals.subtotal), str(totals.discount), str(totals.tax), str(totals.total)) == (
        expected_totals
    )
    for line in lines:
        assert line.rate == plan[line.item].rate


def test_lines_read_well() -> None:
    plan = rates(
        spec(I.SERVER_AGENT, "1"),
        spec(I.COMPUTE_HOUR, "1"),
        RateSpec(I.CLOUD_STORAGE_GB, D(1), D(0), StorageMode.CONSUMED, 100, True),
    )
    usages = [Usage(I.SERVER_AGENT, D(2)), Usage(I.COMPUTE_HOUR, D(1)), storage("5", "5")]
    lines, _ = price(usages, plan, "EUR", D(0), D(0), "SUMMARY")
    assert [(line.description, line.unit) for line in lines] == [
        ("Server agents", "agent"),
        ("Cloud storage (consumed, 100 GB blocks)", "GB"),
        ("Compute of failed-over replicas", "hour"),
    ]
    for line in lines:
        line.description.encode("latin-1")  # the PDF's core fonts


def test_summary_sums_locations_before_blocks_and_allowance() -> None:
    plan = rates(
        RateSpec(I.CLOUD_STORAGE_GB, D("0.10"), D(0), StorageMode.CONSUMED, 100, True),
        spec(I.SERVER_AGENT, "10", "3"),
    )
    usages = [
        Usage(I.SERVER_AGENT, D(2), 1, "HQ"),
        Usage(I.SERVER_AGENT, D(2), 2, "East"),
        storage("0", "60", 1, "HQ"),
        storage("0", "60", 2, "East"),
    ]
    lines, totals = price(usages, plan, "EUR", D(0), D(0), InvoiceType.SUMMARY)
    assert [(line.item, line.quantity, line.billable_quantity, line.amount) for line in lines] == [
        (I.SERVER_AGENT, 4, 1, D("10.00")),
        (I.CLOUD_STORAGE_GB, 200, 200, D("20.00")),  # 120 GB → 2 blocks
    ]
    assert all(line.location_id is None for line in lines)
    assert totals.total == D("30.00")


def test_detailed_consumes_the_allowance_location_by_location() -> None:
    plan = rates(
        spec(I.SERVER_AGENT, "10", "3"),
        RateSpec(I.CLOUD_STORAGE_GB, D("0.10"), D(0), StorageMode.CONSUMED, 100, True),
    )
    usages = [
        Usage(I.SERVER_AGENT, D(4), 7, "East"),  # later id: after HQ
        Usage(I.SERVER_AGENT, D(2), 3, "HQ"),
        Usage(I.SERVER_AGENT, D(5), None, ""),  # no location: last
        storage("0", "60", 3, "HQ"),
        storage("0", "60", 7, "East"),
    ]
    lines, totals = price(usages, plan, "EUR", D(0), D(0), InvoiceType.DETAILED)
    got = [(line.description, line.location_id, *figures(line, *AMOUNTS)) for line in lines]
    assert got == [
        ("Server agents - HQ", 3, 2, 2, 0, D("0.00")),
        ("Server agents - East", 7, 4, 1, 3, D("30.00")),
        ("Server agents", None, 5, 0, 5, D("50.00")),
        ("Cloud storage (consumed, 100 GB blocks) - HQ", 3, 100, 0, 100, D("10.00")),
        ("Cloud storage (consumed, 100 GB blocks) - East", 7, 100, 0, 100, D("10.00")),
    ]
    assert totals == Totals(D("100.00"), D("0.00"), D("0.00"), D("100.00"))


def test_quota_usage_reports_quantities_without_money() -> None:
    usages = [
        Usage(I.SERVER_AGENT, D(4), 1, "HQ"),
        Usage(I.SERVER_AGENT, D(1), 2, "East"),
        Usage(I.MANAGED_VM, D(0)),
        storage("500", "123.5"),
    ]
    plan = rates(spec(I.SERVER_AGENT, "10", "2"))
    lines, totals = price(usages, plan, "EUR", D(10), D(20), InvoiceType.QUOTA_USAGE)
    assert lines == [
        PricedLine(
            I.SERVER_AGENT, "Server agents", "agent", D(5), D(0), D(5), None, D("0.00"), None
        ),
        PricedLine(I.MANAGED_VM, "Managed VMs", "VM", D(0), D(0), D(0), None, D("0.00"), None),
        PricedLine(
            I.CLOUD_STORAGE_GB,
            "Cloud storage (allocated)",
            "GB",
            D(500),
            D(0),
            D(500),
            None,
            D("0.00"),
            None,
        ),
        PricedLine(
            I.CLOUD_STORAGE_GB,
            "Cloud storage (consumed)",
            "GB",
            D("123.5"),
            D(0),
            D("123.5"),
            None,
            D("0.00"),
            None,
        ),
    ]
    assert totals == Totals(D("0.00"), D("0.00"), D("0.00"), D("0.00"))
    assert str(totals.total) == "0.00"


def test_price_refuses_an_unknown_currency() -> None:
    with pytest.raises(BadInput):
        price([], {}, "ABC", D(0), D(0), InvoiceType.SUMMARY)


# --- properties --------------------------------------------------------------------------------

quantities = st.decimals(min_value=0, max_value=100_000, places=3, allow_nan=False)
money_rates = st.one_of(st.none(), st.decimals(min_value=0, max_value=1000, places=4))
percents = st.decimals(min_value=0, max_value=100, places=4)
currencies = st.sampled_from(["EUR", "USD", "JPY", "KRW", "BHD", "KWD", "CHF"])
invoice_types = st.sampled_from([InvoiceType.SUMMARY, InvoiceType.DETAILED])


@st.composite
def usage_lists(draw) -> list[Usage]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        item = draw(st.sampled_from(list(BillingItem)))
        loc = draw(st.one_of(st.none(), st.integers(1, 4)))
        consumed = draw(quantities) if item is I.CLOUD_STORAGE_GB else None
        out.append(Usage(item, draw(quantities), loc, f"L{loc}" if loc else "", consumed))
    return out


@st.composite
def rate_tables(draw) -> dict[BillingItem, RateSpec]:
    table = {}
    for item in draw(st.sets(st.sampled_from(list(BillingItem)))):
        table[item] = RateSpec(
            item,
            draw(money_rates),
            draw(st.decimals(min_value=0, max_value=1000, places=2)),
            draw(st.sampled_from(list(StorageMode))),
            draw(st.integers(1, 500)),
            draw(st.booleans()),
        )
    return table


@settings(max_examples=200, deadline=None)
@given(usage_lists(), rate_tables(), currencies, percents, percents, invoice_types)
def test_totals_hold_together(usages, plan, currency, discount, tax, kind) -> None:
    lines, totals = price(usages, plan, currency, discount, tax, kind)
    digits = minor_units(currency)
    assert totals.subtotal == sum((line.amount for line in lines), D(0))
    assert totals.discount == round_money(totals.subtotal * discount / 100, currency)
    assert totals.tax == round_money((totals.subtotal - totals.discount) * tax / 100, currency)
    assert totals.total == totals.subtotal - totals.discount + totals.tax
    for amount in [line.amount for line in lines] + list(totals.__dict__.values()):
        assert amount >= 0
        assert -amount.as_tuple().exponent <= digits  # type: ignore[operator]
    for line in lines:
        assert line.rate is not None
        assert line.billable_quantity >= 0
        assert line.billable_quantity == line.quantity - line.free_allowance
        assert line.amount == round_money(line.billable_quantity * line.rate, currency)
    # The allowance of each item, spread over its lines, never exceeds the plan's.
    for item, rate_spec in plan.items():
        used = sum((line.free_allowance for line in lines if line.item is item), D(0))
        assert used <= rate_spec.free_allowance


@settings(max_examples=200, deadline=None)
@given(usage_lists(), rate_tables(), currencies, percents, percents)
def test_quota_usage_never_carries_money(usages, plan, currency, discount, tax) -> None:
    lines, totals = price(usages, plan, currency, discount, tax, InvoiceType.QUOTA_USAGE)
    assert all(line.rate is None and line.amount == 0 for line in lines)
    assert totals.total == totals.subtotal == 0
    measured = {u.item for u in usages}
    assert {line.item for line in lines} == measured


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=0, max_value=10_000, places=3),
    st.integers(1, 1000),
    st.decimals(min_value=0, max_value=5000, places=1),
)
def test_round_up_blocks_cover_the_usage(used, block, allowance) -> None:
    plan = rates(RateSpec(I.CLOUD_STORAGE_GB, D(1), allowance, StorageMode.CONSUMED, block, True))
    lines, _ = price([storage("0", str(used))], plan, "EUR", D(0), D(0), "SUMMARY")
    if used == 0:
        assert lines == []
        return
    (line,) = lines
    assert line.quantity % block == 0
    assert used <= line.quantity < used + block
    assert line.billable_quantity == max(line.quantity - allowance, D(0))
