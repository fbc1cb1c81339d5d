"""Free-text input as every service cleans it: trimmed, required or not, bounded in length."""

from __future__ import annotations

from app.errors import BadInput


def clean_text(value: str, field: str, limit: int, *, required: bool = True) -> str:
    """`value` without surrounding blanks; BAD_INPUT on `field` when it is empty but required or
    longer than `limit` characters."""
    value = value.strip()
    if required and not value:
        raise BadInput("a value is required", field=field)
    if len(value) > limit:
        raise BadInput(f"longer than {limit} characters", field=field)
    return value
