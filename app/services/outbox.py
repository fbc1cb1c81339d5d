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

Channels: EMAIL (`app.services.outbox_email`: SMTP, or an .eml file without an SMTP host) and
WEBHOOK (`app.services.outbox_webhook`: a signed POST).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.models.billing import OutboxChannel, OutboxDelivery, OutboxMessage, OutboxState
from app.services.multirow_insert import insert_rows
from app.services.outbox_email import send_email
from app.services.outbox_transport import DeliveryError, Rendered, utcnow
from app.services.outbox_webhook import send_webhook

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
RETRY_BASE = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)
LEASE = timedelta(minutes=2)  # longer than any transport timeout (SMTP 30 s, webhooks 10 s)


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


async def send(
    message: OutboxMessage, rendered: Rendered | None = None, now: datetime | None = None
) -> str:
    """Deliver through the message's channel; the transport's status (raises on failure)."""
    if message.channel is OutboxChannel.EMAIL:
        return await send_email(message, rendered)
    if message.channel is OutboxChannel.WEBHOOK:
        return await send_webhook(message, now)
    raise DeliveryError(f"unknown channel {message.channel}")
