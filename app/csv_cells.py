"""CSV cells that spreadsheets open safely: shared by every CSV the application writes."""

from __future__ import annotations

from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Spreadsheets run cells that start with = + - @ (or a tab / carriage return) as
    formulas: quote those with a leading apostrophe. Other values pass unchanged."""
    if isinstance(value, str) and value[:1] in FORMULA_PREFIXES:
        return "'" + value
    return value
