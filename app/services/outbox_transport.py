"""What the outbox's queue (`app.services.outbox`) and its transports (`outbox_email`,
`outbox_webhook`) share: the error of a failed attempt, the attachments rendered during one
delivery batch, and the clock."""

from __future__ import annotations

from datetime import UTC, datetime

# Attachments rendered during one delivery batch: (kind, reference) → (name, MIME type, bytes).
Rendered = dict[tuple[str, str], tuple[str, str, bytes]]


class DeliveryError(Exception):
    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


def utcnow() -> datetime:
    return datetime.now(UTC)
