"""The notification outbox: e-mail to the data folder and through SMTP (a local stub server),
signed webhooks to a real local HTTP server, retries with backoff, the delivery log, and one
delivery per message with two workers at once or after a worker died holding a claim."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.models import Organization, OrgKind
from app.models.billing import (
    Invoice,
    InvoiceState,
    InvoiceType,
    OutboxChannel,
    OutboxDelivery,
    OutboxMessage,
    OutboxState,
)
from app.services import outbox, outbox_email, outbox_webhook
from app.services.webhook_signature import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

# Virtual "now"s a little ahead of the clock (enqueue makes messages due at the real now).
# Far enough ahead that a long suite run never catches up with it (messages are due from
# their creation on, in real time).
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
SECRET = "endpoint-1-secret"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path))
    return tmp_path


# --- a webhook receiver ------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)  # answers to give, then 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # the receiver's clock, per request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        return [h["X-Tenantry-Delivery"] for h, _ in self.requests]

    def verified(self, n: int, secret: str = SECRET) -> bool:
        """The n-th request checked as a receiver does: against its own clock on arrival."""
        headers, body = self.requests[n]
        return verify(headers, body, self.received_at[n], secret)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.requests.append((dict(self.headers.items()), body))
                state.received_at.append(time.time())
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def secrets() -> Iterator[None]:
    async def lookup(key: str) -> str | None:
        return SECRET if key == "endpoint-1" else None

    outbox_webhook.register_secret_source("test", lookup)
    yield
    outbox_webhook.SECRET_SOURCES.pop("test", None)


async def webhook(key: str, body: dict | None = None, secret_ref: str = "test:endpoint-1") -> int:
    await outbox.enqueue(
        OutboxChannel.WEBHOOK,
        "",
        "",
        "",
        key,
        payload={
            "body": body or {"event": "alarm.triggered", "key": key},
            "secret_ref": secret_ref,
        },
    )
    # The receiver's URL is set per test; enqueue() stores what it is given.
    return (await OutboxMessage.get(dedup_key=key)).id


async def hook(receiver: Receiver, key: str, body: dict | None = None) -> int:
    message_id = await webhook(key, body)
    await OutboxMessage.filter(id=message_id).update(recipient=receiver.url)
    return message_id


def verify(
    headers: dict[str, str], body: bytes, now: datetime | float, secret: str = SECRET
) -> bool:
    timestamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    return verify_signature(secret, timestamp, body, signature, now)


async def deliveries(message_id: int) -> list[tuple[int, bool, str]]:
    return [
        (r.attempt, r.ok, r.status)
        for r in await OutboxDelivery.filter(message_id=message_id).order_by("id")
    ]


# --- enqueue ----------------------------------------------------------------------------------


async def test_a_dedup_key_enqueues_once_without_breaking_the_callers_transaction(db) -> None:
    async with in_transaction(connection_name()):
        for _ in range(3):
            await outbox.enqueue(OutboxChannel.EMAIL, "a@example.test", "Hi", "body", "k-1")
        # The transaction is still usable after the duplicates (no aborted statement).
        await Organization.create(kind=OrgKind.PROVIDER, name="After")
    rows = await OutboxMessage.all().values("dedup_key", "state", "attempts", "recipient")
    assert rows == [
        {
            "dedup_key": "k-1",
            "state": OutboxState.PENDING,
            "attempts": 0,
            "recipient": "a@example.test",
        }
    ]
    assert await Organization.filter(name="After").count() == 1


async def test_enqueue_is_rolled_back_with_the_callers_transaction(db) -> None:
    with pytest.raises(RuntimeError):
        async with in_transaction(connection_name()):
            await outbox.enqueue(OutboxChannel.EMAIL, "a@example.test", "Hi", "body", "k-2")
            raise RuntimeError("the change failed")
    assert await OutboxMessage.all().count() == 0


# --- e-mail -----------------------------------------------------------------------------------


async def make_invoice() -> Invoice:
    provider = await Organization.create(kind=OrgKind.PROVIDER, name="Provider")
    company = await Organization.create(kind=OrgKind.COMPANY, name="Zürich ☃ AG", parent=provider)
    return await Invoice.create(
        customer=company,
        issuer=provider,
        type=InvoiceType.SUMMARY,
        number="P-2026-0007",
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        issued_on=date(2026, 11, 1),
        due_on=date(2026, 12, 1),
        currency="EUR",
        subtotal=Decimal("10.00"),
        total=Decimal("10.00"),
        state=InvoiceState.UNPAID,
        generated=True,
    )


async def test_email_without_smtp_host_is_written_to_the_outbox_folder(db, data_dir) -> None:
    invoice = await make_invoice()
    await outbox.enqueue(
        OutboxChannel.EMAIL,
        "owner@example.test",
        "Invoice P-2026-0007",
        "Hello,\nyour invoice is attached.\n",
        "invoice-issued:1:1",
        organization_id=invoice.customer_id,  # type: ignore[attr-defined]
        attachments={"invoice_pdf": invoice.id},
    )
    assert await outbox.deliver_due("w1") == {"sent": 1, "retry": 0, "failed": 0, "lost": 0}
    message = await OutboxMessage.get(dedup_key="invoice-issued:1:1")
    files = sorted((data_dir / "outbox").iterdir())
    assert [f.name for f in files] == [f"{message.id}.eml"]
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "owner@example.test"
    assert parsed["Subject"] == "Invoice P-2026-0007"
    assert parsed["Message-ID"] == f"<outbox-{message.id}@tenantry>"
    parts = list(parsed.iter_attachments())
    assert [p.get_filename() for p in parts] == ["P-2026-0007.pdf"]
    assert parts[0].get_content().startswith(b"%PDF-")
    body = parsed.get_body(("plain",))
    assert body is not None and "your invoice is attached" in body.get_content()
    assert message.state is OutboxState.SENT and message.attempts == 1
    assert message.sent_at is not None and message.lease_until is None
    assert await deliveries(message.id) == [(1, True, "FILE")]
    # Nothing is due any more: a second sweep sends nothing and logs nothing.
    assert await outbox.deliver_due("w1") == {"sent": 0, "retry": 0, "failed": 0, "lost": 0}
    assert await OutboxDelivery.all().count() == 1


async def test_an_invoice_pdf_is_rendered_once_per_batch_for_all_its_recipients(
    db, data_dir, monkeypatch
) -> None:
    invoice = await make_invoice()
    calls: list[object] = []
    real = outbox_email.ATTACHMENT_RENDERERS["invoice_pdf"]

    async def counting(ref: object) -> tuple[str, str, bytes]:
        calls.append(ref)
        return await real(ref)

    monkeypatch.setitem(outbox_email.ATTACHMENT_RENDERERS, "invoice_pdf", counting)
    for user in ("owner", "auditor"):
        await outbox.enqueue(
            OutboxChannel.EMAIL,
            f"{user}@example.test",
            "Invoice",
            "Body",
            f"i-{user}",
            attachments={"invoice_pdf": invoice.id},
        )
    assert (await outbox.deliver_due("w1"))["sent"] == 2
    assert calls == [invoice.id]
    files = sorted((data_dir / "outbox").glob("*.eml"))
    pdfs = [
        next(
            email.message_from_bytes(f.read_bytes(), policy=email.policy.default).iter_attachments()
        ).get_content()
        for f in files
    ]
    assert len(pdfs) == 2 and pdfs[0] == pdfs[1]


class SmtpStub(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA, QUIT. The server's `data_reply`
    is the answer to the end of DATA (e.g. 451 to fail the attempt)."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        server = self.server
        self.reply("220 stub ESMTP")
        envelope: dict = {"rcpt": []}
        while True:
            line = self.rfile.readline().decode().rstrip("\r\n")
            if not line:
                return
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 stub")
            elif verb == "MAIL":
                envelope["from"] = line
                self.reply("250 ok")
            elif verb == "RCPT":
                envelope["rcpt"].append(line)
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk)
                envelope["data"] = b"".join(data)
                server.received.append(envelope)  # type: ignore[attr-defined]
                self.reply(server.data_reply)  # type: ignore[attr-defined]
                envelope = {"rcpt": []}
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp(use_settings) -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpStub)
    server.daemon_threads = True
    server.received = []  # type: ignore[attr-defined]
    server.data_reply = "250 queued"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    use_settings(
        smtp_host="127.0.0.1",
        smtp_port=server.server_address[1],
        smtp_starttls=False,
        smtp_from="billing@provider.test",
    )
    yield server
    server.shutdown()
    server.server_close()


async def test_email_through_smtp_and_a_refused_attempt_is_retried(db, smtp, data_dir) -> None:
    await outbox.enqueue(OutboxChannel.EMAIL, "auditor@example.test", "Subject ü", "Body", "m-1")
    message_id = (await OutboxMessage.get(dedup_key="m-1")).id
    smtp.data_reply = "451 try again later"  # type: ignore[attr-defined]
    assert (await outbox.deliver_due("w1", now=T0))["retry"] == 1
    failed = await OutboxMessage.get(id=message_id)
    assert failed.state is OutboxState.PENDING
    assert failed.next_attempt_at == T0 + outbox.RETRY_BASE
    assert "451" in (failed.last_error or "")
    smtp.data_reply = "250 queued"  # type: ignore[attr-defined]
    assert (await outbox.deliver_due("w1", now=T0 + timedelta(seconds=31)))["sent"] == 1
    assert await deliveries(message_id) == [(1, False, "451"), (2, True, "250")]
    received = smtp.received  # type: ignore[attr-defined]
    assert len(received) == 2
    assert [r.upper() for r in received[1]["rcpt"]] == ["RCPT TO:<AUDITOR@EXAMPLE.TEST>"]
    parsed = email.message_from_bytes(received[1]["data"], policy=email.policy.default)
    assert parsed["From"] == "billing@provider.test"
    assert str(parsed["Subject"]) == "Subject ü"
    assert parsed["Message-ID"] == f"<outbox-{message_id}@tenantry>"
    assert not (data_dir / "outbox").exists()  # with an SMTP host nothing goes to the folder


# --- webhooks ---------------------------------------------------------------------------------


async def test_webhook_is_signed_and_retried_with_backoff_after_500s(db, receiver, secrets) -> None:
    message_id = await hook(receiver, "w-1", {"alarm": 7, "name": "Zürich"})
    receiver.statuses = [500, 503]
    assert (await outbox.deliver_due("w1", now=T0))["retry"] == 1
    row = await OutboxMessage.get(id=message_id)
    assert (row.state, row.attempts, row.next_attempt_at) == (
        OutboxState.PENDING,
        1,
        T0 + timedelta(seconds=30),
    )
    # Not due before its backoff has passed.
    assert (await outbox.deliver_due("w1", now=T0 + timedelta(seconds=29)))["retry"] == 0
    second = T0 + timedelta(seconds=30)
    assert (await outbox.deliver_due("w1", now=second))["retry"] == 1
    row = await OutboxMessage.get(id=message_id)
    assert row.next_attempt_at == second + timedelta(seconds=60)  # 30 s × 2^(2-1)
    assert (await outbox.deliver_due("w1", now=second + timedelta(seconds=60)))["sent"] == 1
    assert await deliveries(message_id) == [(1, False, "500"), (2, False, "503"), (3, True, "200")]
    assert receiver.ids() == [str(message_id)] * 3
    # Each attempt is signed afresh at its own send time; the delivery id stays the same.
    sent_at = [T0, second, second + timedelta(seconds=60)]
    stamps = [h[TIMESTAMP_HEADER] for h, _ in receiver.requests]
    assert stamps == [str(int(at.timestamp())) for at in sent_at]
    assert len({h[SIGNATURE_HEADER] for h, _ in receiver.requests}) == 3
    for (headers, body), at in zip(receiver.requests, sent_at, strict=True):
        assert verify(headers, body, at)
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"alarm": 7, "name": "Zürich"}
    assert [h["X-Tenantry-Attempt"] for h, _ in receiver.requests] == ["1", "2", "3"]
    first_headers, first_body = receiver.requests[0]
    assert not verify(first_headers, first_body, T0, "another secret")
    # The first attempt's signature does not carry over to the retry's timestamp.
    moved = {**first_headers, TIMESTAMP_HEADER: stamps[1]}
    assert not verify(moved, first_body, second)
    row = await OutboxMessage.get(id=message_id)
    assert row.state is OutboxState.SENT and row.last_error is None


async def test_a_webhook_signs_its_timestamp_and_a_replay_later_is_rejected(
    db, receiver, secrets
) -> None:
    """The signed string is `f"{timestamp}.".encode() + body` (computed here by hand, as a
    receiver in another language would); outside the tolerance a replay fails, and moving
    the timestamp to look fresh breaks the signature."""
    await hook(receiver, "w-6", {"alarm": 9})
    assert (await outbox.deliver_due("w1", now=T0))["sent"] == 1
    headers, body = receiver.requests[0]
    stamp = headers[TIMESTAMP_HEADER]
    assert stamp == str(int(T0.timestamp()))
    by_hand = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert headers[SIGNATURE_HEADER] == "sha256=" + by_hand.hexdigest()

    tolerance = timedelta(seconds=DEFAULT_TOLERANCE)
    assert DEFAULT_TOLERANCE == 300  # 5 minutes, as the docs recommend
    assert verify(headers, body, T0 + tolerance)  # late but within the window
    assert verify(headers, body, (T0 - tolerance).timestamp())  # a receiver's clock behind
    # Captured and replayed later: the same bytes, too old.
    assert not verify(headers, body, T0 + tolerance + timedelta(seconds=1))
    assert not verify(headers, body, T0 - tolerance - timedelta(seconds=1))
    # The replay with its timestamp moved to "now": the signature no longer matches.
    later = T0 + timedelta(hours=1)
    tampered = {**headers, TIMESTAMP_HEADER: str(int(later.timestamp()))}
    assert not verify(tampered, body, later)
    # Nor do another body, or timestamps written differently from the signed digits.
    assert not verify(headers, body.replace(b"9", b"8"), T0)
    for spelled in (f"0{stamp}", f"+{stamp}", f" {stamp}", f"{stamp}.0", "", "１２３"):
        assert not verify({**headers, TIMESTAMP_HEADER: spelled}, body, T0), spelled
    assert not verify({**headers, SIGNATURE_HEADER: "sha256=é"}, body, T0)
    # A tolerance of the receiver's choosing.
    assert verify_signature(
        SECRET, stamp, body, headers[SIGNATURE_HEADER], T0 + timedelta(minutes=9), tolerance=600
    )


async def test_webhook_gives_up_after_the_last_attempt(db, receiver, secrets, monkeypatch) -> None:
    monkeypatch.setattr(outbox, "MAX_ATTEMPTS", 3)
    message_id = await hook(receiver, "w-2")
    receiver.statuses = [500] * 10
    at = T0
    outcomes = []
    for _ in range(5):
        counts = await outbox.deliver_due("w1", now=at)
        outcomes.append(next((k for k, v in counts.items() if v), "none"))
        at += outbox.RETRY_MAX
    assert outcomes == ["retry", "retry", "failed", "none", "none"]
    row = await OutboxMessage.get(id=message_id)
    assert (row.state, row.attempts) == (OutboxState.FAILED, 3)
    assert len(receiver.requests) == 3


async def test_backoff_doubles_and_is_capped() -> None:
    assert [outbox.backoff(n).total_seconds() for n in (1, 2, 3, 4, 8, 20)] == [
        30,
        60,
        120,
        240,
        3600,
        3600,
    ]


async def test_webhook_without_its_secret_or_with_a_redirect_fails(db, receiver, secrets) -> None:
    unknown = await webhook("w-3", secret_ref="test:nobody")
    await OutboxMessage.filter(id=unknown).update(recipient=receiver.url)
    redirected = await hook(receiver, "w-4")
    receiver.statuses = [302]
    await outbox.deliver_due("w1", now=T0)
    assert await deliveries(unknown) == [(1, False, "no-secret")]
    assert await deliveries(redirected) == [(1, False, "302")]
    assert len(receiver.requests) == 1  # the unsigned one was never sent


async def test_the_default_secret_signs_webhooks_without_an_endpoint_secret(
    db, receiver, use_settings
) -> None:
    use_settings(webhook_secret="platform-secret")
    await webhook("w-5", {"x": 1}, secret_ref="")
    await OutboxMessage.filter(dedup_key="w-5").update(recipient=receiver.url)
    assert (await outbox.deliver_due("w1"))["sent"] == 1
    assert receiver.verified(0, "platform-secret")
    assert not receiver.verified(0)


async def test_two_workers_at_once_send_each_message_once(db, receiver, secrets) -> None:
    ids = [await hook(receiver, f"c-{i}") for i in range(20)]
    results = await asyncio.gather(
        outbox.deliver_due("w1", now=T0), outbox.deliver_due("w2", now=T0)
    )
    assert sum(r["sent"] for r in results) == 20
    assert sorted(receiver.ids(), key=int) == [str(i) for i in ids]
    assert await OutboxDelivery.all().count() == 20
    assert await OutboxMessage.filter(state=OutboxState.SENT, attempts=1).count() == 20


async def test_a_worker_dying_after_its_claim_is_replaced_once_the_lease_runs_out(
    db, receiver, secrets
) -> None:
    message_id = await hook(receiver, "d-1")
    assert [c.message_id for c in await outbox.claim_due("dead-worker", now=T0)] == [message_id]
    # The dead worker sent nothing; while its lease runs, nobody else takes the message.
    assert await outbox.deliver_due("w2", now=T0 + outbox.LEASE - timedelta(seconds=1)) == {
        "sent": 0,
        "retry": 0,
        "failed": 0,
        "lost": 0,
    }
    later = T0 + outbox.LEASE + timedelta(seconds=1)
    assert (await outbox.deliver_due("w2", now=later))["sent"] == 1
    assert (await outbox.deliver_due("w3", now=later + outbox.LEASE * 2))["sent"] == 0
    assert receiver.ids() == [str(message_id)]
    row = await OutboxMessage.get(id=message_id)
    assert (row.state, row.attempts) == (OutboxState.SENT, 2)
    assert await OutboxDelivery.filter(message_id=message_id).values_list(
        "attempt", "ok", "worker_id"
    ) == [(2, True, "w2")]


async def test_a_late_outcome_of_a_lost_lease_does_not_overwrite_the_new_attempt(
    db, receiver, secrets
) -> None:
    message_id = await hook(receiver, "d-2")
    [slow] = await outbox.claim_due("slow-worker", now=T0)
    later = T0 + outbox.LEASE + timedelta(seconds=1)
    [fresh] = await outbox.claim_due("w2", now=later)  # reclaimed: attempt 2 is w2's
    # The slow worker finds its claim gone: it sends nothing and writes nothing.
    assert await outbox.deliver(slow, "slow-worker", now=later) == "lost"
    assert receiver.requests == []
    row = await OutboxMessage.get(id=message_id)
    assert (row.state, row.attempts) == (OutboxState.SENDING, 2)
    assert await outbox.deliver(fresh, "w2", now=later) == "sent"
    assert (await OutboxMessage.get(id=message_id)).state is OutboxState.SENT
    assert await deliveries(message_id) == [(2, True, "200")]


# --- the job and its schedule -------------------------------------------------------------------


async def test_the_deliver_job_sends_what_is_due_and_is_scheduled_every_15_seconds(
    db, data_dir, monkeypatch
) -> None:
    from dataclasses import replace

    from app.services import jobs
    from app.settings import load_settings
    from tests.conftest import TEST_SETTINGS
    from workers.actors.jobs import execute
    from workers.schedules import OUTBOX, default_schedules

    previous = jobs._dispatcher
    jobs.set_dispatcher(lambda job_id, delay_ms: None)
    try:
        for i in range(3):
            await outbox.enqueue(OutboxChannel.EMAIL, f"u{i}@example.test", "S", "B", f"j-{i}")
        job, _ = await jobs.create(None, OUTBOX, None)
        assert await execute(job.id, "test-worker") == "succeeded"
    finally:
        jobs.set_dispatcher(previous)
    assert await OutboxMessage.filter(state=OutboxState.SENT).count() == 3
    assert len(list((data_dir / "outbox").glob("*.eml"))) == 3
    assert OUTBOX not in [s.name for s in default_schedules(TEST_SETTINGS)]
    on = replace(TEST_SETTINGS, schedule_outbox="* * * * * */15")
    sweep = next(s for s in default_schedules(on) if s.name == OUTBOX)
    assert sweep.job_kind == OUTBOX
    tick = sweep.next_tick(T0)
    assert (sweep.next_tick(tick) - tick).total_seconds() == 15
    monkeypatch.delenv("TENANTRY_SCHEDULE_OUTBOX", raising=False)
    assert load_settings().schedule_outbox == "* * * * * */15"
