"""Money: the accepted currencies (ISO 4217) and the one rounding rule.

Rounding rule: an amount is rounded to the currency's minor units (its ISO 4217 exponent:
0 for JPY, KRW, ISK…, 3 for BHD, KWD, OMR, JOD, TND, IQD, LYD, 2 for every other accepted code)
with ROUND_HALF_UP — a half minor unit rounds away from zero (2.345 USD → 2.35, 2.5 JPY → 3,
-2.345 USD → -2.35). Everything is `Decimal`; floats never enter a computation.

Codes are matched exactly (three upper-case letters, as stored on plans and invoices); an
unknown code is a `BadInput` on the `currency` field. Only circulating currencies are
accepted: no fund codes (CLF, UYI…), precious metals or test codes.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from app.errors import BadInput

_ZERO_DECIMALS = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split()
)
_THREE_DECIMALS = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
_TWO_DECIMALS = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
    GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD
    LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB
    PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC
    SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST XCD XCG YER ZAR ZMW
    ZWG
    """.split()
)

CURRENCIES: frozenset[str] = _ZERO_DECIMALS | _THREE_DECIMALS | _TWO_DECIMALS
"""The accepted ISO 4217 codes."""


def minor_units(currency: str) -> int:
    """The number of decimals of `currency` (its ISO 4217 exponent)."""
    if currency in _ZERO_DECIMALS:
        return 0
    if currency in _THREE_DECIMALS:
        return 3
    if currency in _TWO_DECIMALS:
        return 2
    raise BadInput(f"unknown currency {currency!r}: use an ISO 4217 code", field="currency")


def quantum(currency: str) -> Decimal:
    """The smallest unit of `currency` as a Decimal exponent (Decimal('0.01') for EUR)."""
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(value: Decimal, currency: str) -> Decimal:
    """`value` rounded half-up to the minor units of `currency`."""
    return Decimal(value).quantize(quantum(currency), rounding=ROUND_HALF_UP)


# --- display (documents and e-mails) ------------------------------------------------------


def currency_digits(currency: str) -> int:
    """The currency's minor units (2 for a code the money module does not know)."""
    try:
        return minor_units(currency)
    except BadInput:
        return 2


def in_minor_units(value: Decimal, currency: str) -> Decimal:
    """`value` rounded half-up (the money module's rule) to the currency's minor units."""
    return Decimal(value).quantize(Decimal(1).scaleb(-currency_digits(currency)), ROUND_HALF_UP)


def money(value: Decimal, currency: str) -> str:
    """1234.5 EUR → '1,234.50'; JPY without decimals, BHD with three."""
    return f"{in_minor_units(value, currency):,}"
