"""The outbox's webhook transport: POST of `payload["body"]` as JSON to the recipient URL, with
`X-Tenantry-Timestamp: <unix seconds at send time>` and `X-Tenantry-Signature:
sha256=<hex HMAC-SHA256 of f"{timestamp}.".encode() + body>` (the timestamp as in its header,
a full stop, the exact body bytes). Each attempt is signed afresh with its send time; the
delivery id (`X-Tenantry-Delivery: <id>`) stays. Receivers check with
`webhook_signature.verify_signature`, rejecting timestamps outside their tolerance (5 minutes
recommended): no replay later. The key is the endpoint's own secret, named (never stored here)
by `payload["secret_ref"] = "<source>:<key>"` and looked up through a function registered with
`register_secret_source(source, fn)` (the alarms' webhook endpoints register theirs); without a
reference, settings.webhook_secret (or one derived from secret_key). Timeout 10 s; anything but
a 2xx (redirects included) fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from app.models.billing import OutboxMessage
from app.net_guard import PrivateAddress, check_public
from app.services.outbox_transport import DeliveryError, utcnow
from app.services.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from app.settings import get_settings

WEBHOOK_TIMEOUT = 10  # below the outbox's LEASE

SecretSource = Callable[[str], Awaitable[str | None]]
SECRET_SOURCES: dict[str, SecretSource] = {}


def register_secret_source(name: str, lookup: SecretSource) -> None:
    """`lookup(key)` → the webhook secret of one endpoint (None: unknown endpoint)."""
    SECRET_SOURCES[name] = lookup


def default_webhook_secret() -> str:
    s = get_settings()
    if s.webhook_secret:
        return s.webhook_secret
    return hmac.new(s.secret_key.encode(), b"tenantry-webhooks", hashlib.sha256).hexdigest()


async def webhook_secret(payload: dict[str, Any]) -> str:
    ref = str(payload.get("secret_ref") or "")
    if not ref:
        return default_webhook_secret()
    source, _, key = ref.partition(":")
    lookup = SECRET_SOURCES.get(source)
    secret = await lookup(key) if lookup else None
    if not secret:
        raise DeliveryError(f"no webhook secret for {ref!r}", "no-secret")
    return secret


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer that is not 2xx: the attempt failed


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, headers: dict[str, str]) -> str:
    try:
        check_public(url)  # again at send time: the name may resolve elsewhere by now
    except PrivateAddress as exc:
        raise DeliveryError(f"refused: {exc}", "private-address") from None
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=WEBHOOK_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code}", str(exc.code)) from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}", str(status))
    return str(status)


async def send_webhook(message: OutboxMessage, now: datetime | None = None) -> str:
    """POST the message's body, signed with the endpoint's secret and this attempt's send time
    (`now`, else the clock)."""
    if not message.recipient.lower().startswith(("http://", "https://")):
        raise DeliveryError("a webhook needs an http(s) URL", "bad-url")
    payload = dict(message.payload or {})
    body = json.dumps(payload.get("body", {}), sort_keys=True, separators=(",", ":")).encode()
    secret = await webhook_secret(payload)
    timestamp = int((now or utcnow()).timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Tenantry-Outbox",
        "X-Tenantry-Delivery": str(message.id),
        "X-Tenantry-Attempt": str(message.attempts),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    return await asyncio.to_thread(_post, message.recipient, body, headers)
