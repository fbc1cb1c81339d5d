"""Signatures of the outbox's webhooks: how they are made, and the one check a receiver needs.

Every webhook POST carries
    X-Tenantry-Timestamp: <unix seconds (decimal digits) when this attempt was sent>
    X-Tenantry-Signature: sha256=<hex HMAC-SHA256 of the signed string, keyed by the secret>
where the signed string is the timestamp exactly as in its header, a full stop, then the exact
body bytes:  f"{timestamp}.".encode() + body

A receiver recomputes the HMAC over the bytes it received (before parsing the JSON), compares
in constant time, and rejects a timestamp more than its tolerance away from its own clock
(DEFAULT_TOLERANCE, 5 minutes, is what we recommend): a delivery captured and replayed later
no longer verifies, and the timestamp cannot be moved forward without breaking the signature.
Each attempt, retries included, is signed afresh with its own send time; the delivery id
(`X-Tenantry-Delivery`) stays the same across attempts and is what receivers dedupe on within
the window.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

SIGNATURE_HEADER = "X-Tenantry-Signature"
TIMESTAMP_HEADER = "X-Tenantry-Timestamp"
DEFAULT_TOLERANCE = 300  # seconds either side of the receiver's clock


def signed_string(timestamp: int | str, body: bytes) -> bytes:
    return f"{timestamp}.".encode() + body


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The X-Tenantry-Signature value of `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), signed_string(timestamp, body), hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    now: datetime | float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """True when `signature` (the X-Tenantry-Signature header) signs `timestamp` (the
    X-Tenantry-Timestamp header, as received) and `body` (the raw request body) with
    `secret`, and the timestamp is at most `tolerance` seconds from `now` (the receiver's
    clock: an aware datetime or unix seconds)."""
    text = str(timestamp)
    if not (text.isascii() and text.isdigit()) or not signature.isascii():
        return False
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    fresh = abs(current - int(text)) <= tolerance
    matches = hmac.compare_digest(signature.encode(), sign(secret, text, body).encode())
    return matches and fresh
