"""Opaque bearer credentials. Only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

SESSION_PREFIX = "tnts_"
API_KEY_PREFIX = "tntk_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """(prefix, full key). The prefix identifies the key in lists; the key is shown once."""
    prefix = secrets.token_hex(6)
    return prefix, f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def api_key_prefix(key: str) -> str | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    rest = key.removeprefix(API_KEY_PREFIX)
    prefix, sep, _ = rest.partition("_")
    return prefix if sep else None
