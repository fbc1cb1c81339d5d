"""The outbox's e-mail transport: SMTP (settings smtp_*; smtplib in a thread, STARTTLS when
asked) or, without an SMTP host, an .eml file under `data_dir()/outbox/` (written again on a
retry, so exactly once). Every e-mail carries `Message-ID: <outbox-<id>@tenantry>` for the
receivers' dedup. Attachments are references rendered at delivery: `{"invoice_pdf": <invoice
id>}`, once per delivery batch (`Rendered`).
"""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from app.models.billing import OutboxMessage
from app.services.outbox_transport import DeliveryError, Rendered, utcnow
from app.settings import data_dir, get_settings

SMTP_TIMEOUT = 30  # below the outbox's LEASE


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
