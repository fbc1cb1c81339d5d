"""The notification outbox: messages written in the transaction of the change they report,
delivered later by workers (job `outbox.deliver`, every 15 s).

Enqueue: `enqueue(...)` inside the caller's transaction. `dedup_key` is unique: enqueueing
the same key again does nothing (INSERT … ON CONFLICT DO NOTHING, so a duplicate never
aborts the caller's transaction).

Delivery: `deliver_due(worker_id)` claims each due message with one conditional UPDATE
(PENDING and due, or SENDING with an expired lease → SENDING, a new lease, attempts + 1).
Only the worker whose UPDATE changed the row sends it, so two workers never send the same
message. Each attempt writes an OutboxDelivery row; success → SENT; failure → PENDING again
with a backoff (30 s × 2^(attempt-1), at most an hour) until MAX_ATTEMPTS → FAILED. The
outcome is written by a second conditional UPDATE (still SENDING under this claim's lease): a worker that
lost its lease never overwrites the newer attempt.

At-least-once window: the message is marked SENT right after the transport accepted it. A
worker dying between the two (SMTP said 250, or the webhook answered 2xx, and the process was
killed before the UPDATE) leaves the row SENDING; when its lease (LEASE, longer than any
transport timeout) runs out another worker sends it again. Receivers dedupe with the
message id: e-mails carry `Message-ID: <outbox-<id>@tenantry>`, webhooks
`X-Tenantry-Delivery: <id>`. E-mails written as files (no SMTP host) overwrite the same file,
so they are exactly once.

Channels:
* EMAIL: SMTP (settings smtp_*; smtplib in a thread, STARTTLS when asked) or, without an SMTP
  host, an .eml file under `data_dir()/outbox/`. Attachments are references rendered at
  delivery: `{"invoice_pdf": <invoice id>}`.
* WEBHOOK: POST of `payload["body"]` as JSON to the recipient URL, with
  `X-Tenantry-Timestamp: <unix seconds at send time>` and `X-Tenantry-Signature:
  sha256=<hex HMAC-SHA256 of f"{timestamp}.".encode() + body>` (the timestamp as in its header,
  a full stop, the exact body bytes). Each attempt is signed afresh with its send time; the
  delivery id stays. Receivers check with `webhook_signature.verify_signature`, rejecting
  timestamps outside their tolerance (5 minutes recommended): no replay later. The key is the
  endpoint's own secret, named (never stored here) by `payload["secret_ref"] = "<source>:<key>"`
  and looked up through a function registered with `register_secret_source(source, fn)` (the
  alarms' webhook endpoints register theirs); without a reference, settings.webhook_secret (or
  one derived from secret_key). Timeout 10 s; anything but a 2xx (redirects included) fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.models.billing import OutboxChannel, OutboxDelivery, OutboxMessage, OutboxState
from app.net_guard import PrivateAddress, check_public
from app.services.multirow_insert import insert_rows
from app.services.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from app.settings import data_dir, get_settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
RETRY_BASE = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)
LEASE = timedelta(minutes=2)  # longer than any transport timeout below
SMTP_TIMEOUT = 30
WEBHOOK_TIMEOUT = 10

# Attachments rendered during one delivery batch: (kind, reference) → (name, MIME type, bytes).
Rendered = dict[tuple[str, str], tuple[str, str, bytes]]
SecretSource = Callable[[str], Awaitable[str | None]]
SECRET_SOURCES: dict[str, SecretSource] = {}


def register_secret_source(name: str, lookup: SecretSource) -> None:
    """`lookup(key)` → the webhook secret of one endpoint (None: unknown endpoint)."""
    SECRET_SOURCES[name] = lookup


class DeliveryError(Exception):
    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- enqueue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    channel: OutboxChannel
    recipient: str
    subject: str
    body: str
    dedup_key: str
    organization_id: int | None = None
    payload: dict[str, Any] | None = None
    attachments: dict[str, Any] | None = None
    requested_by_id: int | None = None


async def enqueue(
    channel: OutboxChannel,
    recipient: str,
    subject: str,
    body: str,
    dedup_key: str,
    organization_id: int | None = None,
    payload: dict[str, Any] | None = None,
    attachments: dict[str, Any] | None = None,
) -> None:
    """One message, in the caller's transaction; an existing `dedup_key` → nothing."""
    await enqueue_many(
        [
            Outgoing(
                channel,
                recipient,
                subject,
                body,
                dedup_key,
                organization_id,
                payload,
                attachments,
            )
        ]
    )


OUTGOING_COLUMNS = (
    "channel",
    "recipient",
    "subject",
    "body",
    "dedup_key",
    "organization_id",
    "payload",
    "attachments",
    "requested_by_id",
    "state",
    "next_attempt_at",
    "created_at",
)


async def enqueue_many(messages: list[Outgoing]) -> None:
    """Many messages in one INSERT statement (`insert_rows`); those whose dedup key exists
    already are skipped (ON CONFLICT DO NOTHING)."""
    at = utcnow()
    rows = [
        (
            m.channel,
            m.recipient[:1000],
            m.subject[:300],
            m.body,
            m.dedup_key,
            m.organization_id,
            m.payload or {},
            m.attachments or {},
            m.requested_by_id,
            OutboxState.PENDING,
            at,
            at,
        )
        for m in messages
    ]
    await insert_rows(OutboxMessage, OUTGOING_COLUMNS, rows, ignore_conflicts=True)


# --- claiming ---------------------------------------------------------------------------------


def _due(now: datetime) -> Q:
    pending = Q(state=OutboxState.PENDING) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    return pending | Q(state=OutboxState.SENDING, lease_until__lt=now)


async def _candidates(now: datetime, limit: int) -> list[int]:
    ids = (
        await OutboxMessage.filter(_due(now))
        .order_by("next_attempt_at", "id")
        .limit(limit)
        .values_list("id", flat=True)
    )
    return [int(i) for i in ids]  # type: ignore[call-overload]


@dataclass(frozen=True)
class Claim:
    """A message this worker claimed; its lease end tells this claim from any later one."""

    message_id: int
    lease_until: datetime


async def _claim(message_id: int, now: datetime) -> Claim | None:
    lease = now + LEASE
    # The WHERE re-checks the due condition: of two workers, the second changes no row.
    changed = await OutboxMessage.filter(_due(now), id=message_id).update(
        state=OutboxState.SENDING, lease_until=lease, attempts=F("attempts") + 1
    )
    return Claim(message_id, lease) if changed else None


async def claim_due(worker_id: str, now: datetime | None = None, limit: int = 100) -> list[Claim]:
    """Claim up to `limit` due messages at once. (`deliver_due` claims each message just
    before sending it, so a long batch never outlives a lease.)"""
    now = now or utcnow()
    claims = [await _claim(m, now) for m in await _candidates(now, limit)]
    return [c for c in claims if c is not None]


def backoff(attempt: int) -> timedelta:
    return min(RETRY_BASE * (2 ** max(attempt - 1, 0)), RETRY_MAX)


async def deliver_due(worker_id: str, now: datetime | None = None, limit: int = 100) -> dict:
    """Claim and deliver due messages; counts of sent, retried and failed ones."""
    counts = {"sent": 0, "retry": 0, "failed": 0, "lost": 0}
    rendered: Rendered = {}  # an invoice's owner and auditors get one rendering per batch
    for message_id in await _candidates(now or utcnow(), limit):
        claim = await _claim(message_id, now or utcnow())
        if claim is not None:
            counts[await deliver(claim, worker_id, now, rendered)] += 1
    return counts


async def deliver(
    claim: Claim, worker_id: str, now: datetime | None = None, rendered: Rendered | None = None
) -> str:
    """Send one claimed message and write the outcome: 'sent', 'retry', 'failed' or 'lost'
    (the lease ran out and another worker claimed it since: nothing is sent or written)."""
    mine = {"id": claim.message_id, "state": OutboxState.SENDING, "lease_until": claim.lease_until}
    message = await OutboxMessage.filter(**mine).first()
    if message is None:
        return "lost"
    started = time.monotonic()
    ok, status, error = True, "", None
    try:
        status = await send(message, rendered, now)
    except Exception as exc:  # every failure is an attempt that failed, logged below
        ok = False
        status = exc.status if isinstance(exc, DeliveryError) else ""
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.info("outbox message %s attempt %s failed: %s", message.id, message.attempts, error)
    at = now or utcnow()
    if ok:
        state, outcome = OutboxState.SENT, "sent"
        changes: dict[str, Any] = {"sent_at": at, "last_error": None}
    elif message.attempts >= MAX_ATTEMPTS:
        state, outcome = OutboxState.FAILED, "failed"
        changes = {"last_error": error}
    else:
        state, outcome = OutboxState.PENDING, "retry"
        changes = {"last_error": error, "next_attempt_at": at + backoff(message.attempts)}
    async with in_transaction(connection_name()):
        # Still this claim's (a worker that outlived its lease never overwrites a newer one).
        changed = await OutboxMessage.filter(**mine).update(
            state=state, lease_until=None, **changes
        )
        await OutboxDelivery.create(
            message_id=message.id,
            attempt=message.attempts,
            at=at,
            ok=ok,
            status=status[:40],
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
            worker_id=worker_id[:100],
        )
    return outcome if changed else "lost"


# --- transports -------------------------------------------------------------------------------


async def send(
    message: OutboxMessage, rendered: Rendered | None = None, now: datetime | None = None
) -> str:
    """Deliver through the message's channel; the transport's status (raises on failure)."""
    if message.channel is OutboxChannel.EMAIL:
        return await send_email(message, rendered)
    if message.channel is OutboxChannel.WEBHOOK:
        return await send_webhook(message, now)
    raise DeliveryError(f"unknown channel {message.channel}")


async def _invoice_pdf(ref: Any) -> tuple[str, str, bytes]:
    from app.billing.pdf import render_invoice
    from app.models.billing import Invoice

    number = await Invoice.filter(id=int(ref)).values_list("number", flat=True)
    data = await render_invoice(int(ref))
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in (number[0] if number else ""))
    return f"{name or 'invoice'}.pdf", "application/pdf", data


# Attachment references (`attachments` of a message) → (file name, MIME type, bytes).
ATTACHMENT_RENDERERS: dict[str, Callable[[Any], Awaitable[tuple[str, str, bytes]]]] = {
    "invoice_pdf": _invoice_pdf,
}


async def build_email(message: OutboxMessage, rendered: Rendered | None = None) -> EmailMessage:
    settings = get_settings()
    email = EmailMessage()
    email["From"] = settings.smtp_from
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Message-ID"] = f"<outbox-{message.id}@tenantry>"
    email["Date"] = format_datetime(message.created_at or utcnow())
    email["X-Tenantry-Delivery"] = str(message.id)
    email.set_content(message.body)
    for kind, ref in sorted((message.attachments or {}).items()):
        renderer = ATTACHMENT_RENDERERS.get(kind)
        if renderer is None:
            raise DeliveryError(f"unknown attachment {kind!r}")
        cache = rendered if rendered is not None else {}
        key = (kind, json.dumps(ref, sort_keys=True))
        if key not in cache:
            cache[key] = await renderer(ref)
        filename, mime, data = cache[key]
        maintype, _, subtype = mime.partition("/")
        email.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return email


def outbox_dir() -> Path:
    folder = data_dir() / "outbox"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_eml(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _smtp_send(email: EmailMessage) -> str:
    s = get_settings()
    with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=SMTP_TIMEOUT) as smtp:
        smtp.ehlo()
        if s.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if s.smtp_user:
            smtp.login(s.smtp_user, s.smtp_password)
        refused = smtp.send_message(email)
    if refused:
        raise DeliveryError(f"recipients refused: {sorted(refused)}", "refused")
    return "250"


async def send_email(message: OutboxMessage, rendered: Rendered | None = None) -> str:
    email = await build_email(message, rendered)
    if not get_settings().smtp_host:
        path = outbox_dir() / f"{message.id}.eml"
        await asyncio.to_thread(_write_eml, path, email.as_bytes())
        return "FILE"
    try:
        return await asyncio.to_thread(_smtp_send, email)
    except smtplib.SMTPResponseException as exc:
        code = str(exc.smtp_code)
        raise DeliveryError(f"SMTP {code}: {exc.smtp_error!r}", code) from None


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
