"""Alarms on real `tenantry worker` processes, Redis and PostgreSQL: a failed session posted to
`POST /ingest/v1/batch` raises its alarm on a worker (`alarms.evaluate`, queued by the
ingestion), and the alarm reaches the company's signed webhook — a real HTTP receiver in this
test — through the outbox (`outbox.deliver` on a worker):

* the signature verifies with the secret shown once when the webhook was registered, on the
  receiver's own clock on arrival, and no longer once the tolerance has passed (a replay);
* a receiver answering 500 twice, then 200, gets three attempts of the same message (same
  `X-Tenantry-Delivery` id), accepts it once; the delivery log has the three attempts;
* the worker group killed with `kill -9` while it delivers — before the receiver answered, and
  after it answered 200 but before the worker wrote SENT (the at-least-once window documented
  in app/services/outbox.py) — a new worker delivers once the lease ran out: the receiver
  accepts the message once (one distinct delivery id with a 2xx answer; a repeat carries the
  same id and is recognised by the receiver's dedup), and the outbox row ends SENT.

Time is moved forward in the database, not waited for: the outbox's retry backoff (30 s, then
60 s) and lease (2 minutes) are module constants with no setting, so after checking the value
the code wrote (`next_attempt_at`, `lease_until`), the test sets it to the past — what the clock
would do — and queues the next `outbox.deliver` job itself (production: the scheduler every
15 s).

CI's second pass runs these (TENANTRY_TEST_DATABASE_URL, TENANTRY_TEST_REDIS_URL and
TENANTRY_REQUIRE_SERVICES=1); without those variables they are skipped, and with
TENANTRY_REQUIRE_SERVICES=1 a missing service fails them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.models import BackupJob, Job, JobState
from app.models.alarms import (
    Alarm,
    AlarmChange,
    AlarmEvent,
    AlarmSeverity,
    AlarmStatus,
    AlarmWebhook,
)
from app.models.billing import OutboxChannel, OutboxDelivery, OutboxMessage, OutboxState
from app.services import jobs, outbox
from app.services.webhook_signature import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from tests.test_ingestion import issue_key
from tests.workerproc import (
    WorkerProcess,
    redis_broker,
    require_services,
    wait_for,
    worker_processes,
)

# A Redis database of its own (worker: 7, discovery: 8, failover: 9, billing: 10,
# scheduler: 13; bench: 6, 11, 12, 14).
REDIS_DB = 15
OWNER = ("A1", "Company Owner")
DELIVER = "outbox.deliver"
EVALUATE = "alarms.evaluate"
JOB_FAILED = "job_session_failed"


@pytest.fixture(autouse=True)
def services():
    require_services()


@pytest.fixture
def broker(db, monkeypatch):
    """This process (the in-process API included) sends jobs where the workers read."""
    with redis_broker(REDIS_DB, "tenantry-alarms", monkeypatch) as (_, settings):
        yield settings


@pytest.fixture
def workers(broker, tmp_path: Path):
    with worker_processes(broker, tmp_path) as start:
        yield start


# --- the webhook receiver -----------------------------------------------------------------------


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    received_at: float  # the receiver's clock on arrival
    status: int | None = None  # what the receiver answered (None: it never answered)
    duplicate: bool = False  # a delivery id it had accepted before (its own dedup)

    @property
    def delivery(self) -> str:
        return self.headers["X-Tenantry-Delivery"]


@dataclass
class Receiver:
    """A webhook endpoint: answers `statuses` in turn, then 200. `before_answer(n)` runs in the
    handler before the n-th request (from 0) is answered; returning False leaves it
    unanswered (the handler then waits for `release` and closes the connection)."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    before_answer: Callable[[int], bool] | None = None
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> set[str]:
        """Delivery ids the receiver took in with a 2xx answer."""
        return {h.delivery for h in self.hits if h.status is not None and 200 <= h.status < 300}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hit = Hit(dict(self.headers.items()), body, time.time())
            with state.lock:
                n = len(state.hits)
                state.hits.append(hit)
                status = state.statuses.pop(0) if state.statuses else 200
            state.arrived.set()
            if state.before_answer is not None and not state.before_answer(n):
                state.release.wait(30)
                self.close_connection = True
                return
            with state.lock:
                hit.duplicate = 200 <= status < 300 and hit.delivery in state.accepted()
                hit.status = status
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.flush()
            state.answered.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/alarms"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def signed_by(secret: str, hit: Hit, later: float = 0) -> bool:
    """The receiver's check on arrival (or `later` seconds after it: a replay)."""
    timestamp, signature = hit.headers[TIMESTAMP_HEADER], hit.headers[SIGNATURE_HEADER]
    return verify_signature(secret, timestamp, hit.body, signature, hit.received_at + later)


def signed_afresh(hits: list[Hit]) -> None:
    """Each attempt carries its own send time: not before the previous attempt arrived, not
    after its own arrival (one machine, one clock)."""
    for before, hit in itertools.pairwise(hits):
        stamp = int(hit.headers[TIMESTAMP_HEADER])
        assert int(before.received_at) <= stamp <= hit.received_at, (before, hit)


# --- the outbox, driven like the scheduler would ------------------------------------------------


async def deliver_job() -> Job:
    """One `outbox.deliver` job (production: the scheduler's tick every 15 s)."""
    job, _ = await jobs.create(None, DELIVER, None)
    return job


async def job_done(job_id: int, within: float = 20) -> Job:
    async def done():
        job = await Job.get(id=job_id)
        return job if job.state not in (JobState.QUEUED, JobState.RUNNING) else None

    return await wait_for(done, within, f"job {job_id} to finish")  # type: ignore[return-value]


async def webhook_messages() -> list[OutboxMessage]:
    return list(await OutboxMessage.filter(channel=OutboxChannel.WEBHOOK).order_by("id"))


async def attempts(message_id: int) -> list[tuple[int, bool, str]]:
    rows = await OutboxDelivery.filter(message_id=message_id).order_by("id")
    return [(r.attempt, r.ok, r.status) for r in rows]


async def backoff_passes(message_id: int) -> timedelta:
    """The retry delay the worker wrote after the last failed attempt, then that delay made
    to have passed (next_attempt_at set to the past)."""
    row = await OutboxMessage.get(id=message_id)
    last = await OutboxDelivery.filter(message_id=message_id).order_by("-id").first()
    assert row.state is OutboxState.PENDING and row.next_attempt_at is not None and last
    delay = row.next_attempt_at - last.at
    await OutboxMessage.filter(id=message_id).update(
        next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    return delay


async def lease_runs_out(message_id: int) -> timedelta:
    """The lease the dead worker's claim holds (checked: nobody may take the message while it
    runs), then made to have run out."""
    row = await OutboxMessage.get(id=message_id)
    assert row.state is OutboxState.SENDING and row.lease_until is not None
    left = row.lease_until - datetime.now(UTC)
    # While the lease runs, a sweep takes nothing (the claim's WHERE re-checks it).
    assert await outbox.deliver_due("probe") == {"sent": 0, "retry": 0, "failed": 0, "lost": 0}
    await OutboxMessage.filter(id=message_id, state=OutboxState.SENDING).update(
        lease_until=datetime.now(UTC) - timedelta(seconds=1)
    )
    return left


def freeze_on_first(worker: WorkerProcess, answer_first: bool) -> Callable[[int], bool]:
    """`before_answer` for the kill tests: on the first request, freeze the worker group
    (SIGSTOP) so it can read nothing more; answer it (200) or not."""

    def hook(n: int) -> bool:
        if n == 0:
            worker.pause()
            return answer_first
        return True

    return hook


# --- the alarm: ingested, evaluated by a worker ---------------------------------------------------

HOOK = """mutation($input: AlarmWebhookCreateInput!) { alarmWebhookCreate(input: $input) {
  secret webhook { id url minSeverity enabled } } }"""


@dataclass
class Company:
    """A1 with its signed webhook (secret as shown once) and an agent key."""

    secret: str
    webhook_id: int
    url: str
    key: str


async def company_set_up(world, gql, receiver: Receiver, use_settings) -> Company:
    # The in-process API queues alarms.evaluate after a batch (off in code-built settings).
    use_settings(alarms_evaluate_on_events=True)
    body = await gql(
        HOOK,
        {"input": {"name": "pager", "url": receiver.url, "minSeverity": "ERROR"}},
        token=world.token(*OWNER),
    )
    assert "errors" not in body, body
    created = body["data"]["alarmWebhookCreate"]
    assert created["webhook"]["url"] == receiver.url and created["webhook"]["enabled"]
    row = await AlarmWebhook.get(organization_id=world.orgs["A1"].id)
    assert created["secret"] not in row.secret_encrypted  # shown once, stored sealed
    return Company(created["secret"], row.id, receiver.url, await issue_key(gql, world))


def failed_session_batch(session_uid: str) -> dict[str, Any]:
    """A computer reporting in with its agent job, whose latest session just failed."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "reportedAt": now.isoformat(),
        "computers": [{"uid": "pc-1", "hostname": "sql01", "osFamily": "WINDOWS"}],
        "agents": [
            {"computer": "pc-1", "platform": "WINDOWS", "edition": "SERVER", "status": "HEALTHY"}
        ],
        "jobs": [{"uid": "job-1", "kind": "AGENT", "name": "sql01 nightly", "computer": "pc-1"}],
        "sessions": [
            {
                "uid": session_uid,
                "job": "job-1",
                "result": "FAILED",
                "startedAt": (now - timedelta(minutes=30)).isoformat(),
                "endedAt": (now - timedelta(minutes=1)).isoformat(),
                "messages": ["VSS snapshot failed"],
            }
        ],
        "heartbeats": [{"computer": "pc-1", "at": now.isoformat(), "status": "HEALTHY"}],
    }


@dataclass
class Raised:
    alarm: Alarm
    job: BackupJob
    message: OutboxMessage  # the webhook queued for it


async def ingest_failure(client, world, company: Company, worker: WorkerProcess) -> Raised:
    """POST the batch; the worker's alarms.evaluate raises the alarm and queues the webhook."""
    resp = await client.post(
        "/ingest/v1/batch",
        json=failed_session_batch("s-1"),
        headers={"Authorization": f"Bearer {company.key}"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"]["sessions"] == 1
    a1 = world.orgs["A1"]
    job = await BackupJob.get(company_id=a1.id, uid="job-1")
    evaluation = await Job.get(kind=EVALUATE, organization_id=a1.id)  # queued by the ingestion
    done = await job_done(evaluation.id, 30)
    assert done.state is JobState.SUCCEEDED, (done.state, done.error, worker.output())
    # Evaluated by a process of the worker group (its process group is the master's pid).
    assert os.getpgid(int(done.worker_id.split(":")[1])) == worker.proc.pid
    # One alarm per template watching the job: A1's own, its reseller's and the provider's
    # (each portal configures its own); the company's tells the company's webhook.
    alarms = await Alarm.filter(
        template__catalogue_key=JOB_FAILED, object_type="BackupJob", object_id=job.id
    ).values_list("template__owner_id", "id")
    owners = [world.orgs[k].id for k in ("Provider", "R1", "A1")]
    assert sorted(owner for owner, _ in alarms) == sorted(owners), alarms
    alarm = await Alarm.get(id=dict(alarms)[a1.id])
    assert (alarm.status, alarm.severity) == (AlarmStatus.ACTIVE, AlarmSeverity.ERROR)
    assert alarm.organization_id == a1.id and alarm.object_name == "sql01 nightly"
    hooks = await OutboxMessage.filter(
        channel=OutboxChannel.WEBHOOK, dedup_key__startswith=f"alarm:{alarm.id}:"
    )
    assert [(m.recipient, m.state, m.attempts) for m in hooks] == [
        (company.url, OutboxState.PENDING, 0)
    ]
    assert hooks[0].payload["secret_ref"] == f"alarm_webhook:{company.webhook_id}"
    return Raised(alarm, job, hooks[0])


def check_body(hit: Hit, raised: Raised, secret: str) -> None:
    assert signed_by(secret, hit), "the signature does not verify with the webhook's secret"
    assert not signed_by(secret + "x", hit)
    assert not signed_by(secret, hit, later=DEFAULT_TOLERANCE + 60)  # replayed too late
    assert hit.headers["Content-Type"] == "application/json"
    data = json.loads(hit.body)
    assert data["id"] == raised.alarm.id
    assert data["template"]["key"] == JOB_FAILED
    assert (data["change"], data["severity"], data["status"]) == ("TRIGGERED", "ERROR", "ACTIVE")
    assert data["object"] == {"type": "BackupJob", "id": raised.job.id, "name": "sql01 nightly"}


async def test_failed_session_raises_one_alarm_and_its_webhook_is_retried_until_accepted(
    world, gql, client, workers, receiver, use_settings
):
    worker = workers()
    company = await company_set_up(world, gql, receiver, use_settings)
    worker.wait_ready()
    raised = await ingest_failure(client, world, company, worker)
    message_id = raised.message.id

    receiver.statuses = [500, 500]
    await job_done((await deliver_job()).id)
    assert [h.status for h in receiver.hits] == [500]
    assert await backoff_passes(message_id) == outbox.RETRY_BASE  # 30 s after attempt 1
    await job_done((await deliver_job()).id)
    assert [h.status for h in receiver.hits] == [500, 500]
    assert await backoff_passes(message_id) == 2 * outbox.RETRY_BASE  # 60 s after attempt 2
    await job_done((await deliver_job()).id)

    assert [h.status for h in receiver.hits] == [500, 500, 200]
    assert {h.delivery for h in receiver.hits} == {str(message_id)}  # one message, 3 attempts
    assert [h.headers["X-Tenantry-Attempt"] for h in receiver.hits] == ["1", "2", "3"]
    for hit in receiver.hits:
        check_body(hit, raised, company.secret)
    signed_afresh(receiver.hits)
    assert receiver.accepted() == {str(message_id)}
    assert await attempts(message_id) == [(1, False, "500"), (2, False, "500"), (3, True, "200")]
    row = await OutboxMessage.get(id=message_id)
    assert (row.state, row.attempts, row.last_error) == (OutboxState.SENT, 3, None)

    # Evaluated again (another alarms.evaluate on the worker): the same failed session is the
    # same occurrence (no repeat counted, the row is not rewritten), nothing is raised or
    # queued again, and a further sweep of the outbox sends nothing.
    again, _ = await jobs.create(None, EVALUATE, world.orgs["A1"])
    assert (await job_done(again.id)).state is JobState.SUCCEEDED
    alarm = await Alarm.get(id=raised.alarm.id)
    assert (alarm.status, alarm.occurrences) == (AlarmStatus.ACTIVE, 1)
    assert await Alarm.filter(template__catalogue_key=JOB_FAILED).count() == 3  # as before
    assert [e.change for e in await AlarmEvent.filter(alarm_id=alarm.id)] == [AlarmChange.TRIGGERED]
    assert [m.id for m in await webhook_messages()] == [message_id]
    await job_done((await deliver_job()).id)
    assert len(receiver.hits) == 3


async def kill_while_delivering(world, gql, client, workers, receiver, use_settings, answered):
    """The worker group is frozen when the webhook's first request reaches the receiver,
    answered 200 or not, then killed -9; a new worker delivers once the lease ran out."""
    first = workers()
    company = await company_set_up(world, gql, receiver, use_settings)
    first.wait_ready()
    raised = await ingest_failure(client, world, company, first)
    message_id = raised.message.id

    receiver.before_answer = freeze_on_first(first, answer_first=answered)
    cut = await deliver_job()
    assert await asyncio.to_thread(receiver.arrived.wait, 20), first.output()
    if answered:
        assert await asyncio.to_thread(receiver.answered.wait, 20)
    first.kill()
    receiver.release.set()

    # The dead worker's claim: SENDING under its lease, attempt 1, nothing logged.
    row = await OutboxMessage.get(id=message_id)
    assert (row.state, row.attempts, row.sent_at) == (OutboxState.SENDING, 1, None)
    assert await attempts(message_id) == []
    left = await lease_runs_out(message_id)
    assert outbox.LEASE - timedelta(seconds=30) < left <= outbox.LEASE

    second = workers()
    second.wait_ready()
    await job_done((await deliver_job()).id)
    # The killed deliver job, recovered once its heartbeat is stale, finds nothing to send.
    await wait_for(lambda: stale(cut.id), 10, "the killed job's heartbeat to go stale")
    await jobs.recover()
    await job_done(cut.id)

    row = await OutboxMessage.get(id=message_id)
    assert (row.state, row.attempts) == (OutboxState.SENT, 2)
    assert await attempts(message_id) == [(2, True, "200")]  # SENT written once
    assert len(receiver.hits) == 2, [(h.delivery, h.status) for h in receiver.hits]
    assert [h.delivery for h in receiver.hits] == [str(message_id)] * 2
    assert [h.headers["X-Tenantry-Attempt"] for h in receiver.hits] == ["1", "2"]
    for hit in receiver.hits:
        check_body(hit, raised, company.secret)
    signed_afresh(receiver.hits)  # the repeat too: same delivery id, a new timestamp
    # Accepted once: one distinct delivery id answered 2xx.
    assert receiver.accepted() == {str(message_id)}
    return receiver.hits


async def stale(job_id: int) -> bool:
    job = await Job.get(id=job_id)
    return job.state is not JobState.RUNNING or job.heartbeat_at < jobs.now() - jobs.STALE_AFTER


async def test_worker_killed_before_the_receiver_answered_delivers_once_after_the_lease(
    world, gql, client, workers, receiver, use_settings
):
    hits = await kill_while_delivering(
        world, gql, client, workers, receiver, use_settings, answered=False
    )
    # The first request was never answered: the second is the one and only acceptance.
    assert [(h.status, h.duplicate) for h in hits] == [(None, False), (200, False)]


async def test_worker_killed_after_a_200_before_writing_sent_repeats_the_same_delivery_id(
    world, gql, client, workers, receiver, use_settings
):
    """The at-least-once window of app/services/outbox.py: the receiver answered 200 and the
    worker died before writing SENT. The new attempt carries the same X-Tenantry-Delivery id,
    so the receiver's dedup recognises it: still one message accepted, and the row SENT once."""
    hits = await kill_while_delivering(
        world, gql, client, workers, receiver, use_settings, answered=True
    )
    assert [(h.status, h.duplicate) for h in hits] == [(200, False), (200, True)]


async def test_an_event_template_with_conditions_evaluates_on_a_worker(
    world, gql, client, workers, receiver, use_settings
):
    """EVENT templates (here: Veeam ONE error records) go through the engine's check of
    occurrences resolved by hand, a DISTINCT read that PostgreSQL must accept."""
    worker = workers()
    company = await company_set_up(world, gql, receiver, use_settings)
    worker.wait_ready()
    now = datetime.now(UTC).replace(microsecond=0)
    batch = {
        "reportedAt": now.isoformat(),
        "servers": [{"uid": "one-1", "kind": "VEEAM_ONE", "name": "one01"}],
        "veeamOne": [
            {
                "uid": "v-1",
                "server": "one-1",
                "objectName": "ds01",
                "metric": "free_space",
                "severity": "ERROR",
                "message": "datastore almost full",
                "recordedAt": (now - timedelta(minutes=5)).isoformat(),
            }
        ],
    }
    resp = await client.post(
        "/ingest/v1/batch", json=batch, headers={"Authorization": f"Bearer {company.key}"}
    )
    assert resp.status_code == 200 and resp.json()["accepted"]["veeamOne"] == 1, resp.text
    evaluation = await Job.get(kind=EVALUATE, organization_id=world.orgs["A1"].id)
    done = await job_done(evaluation.id, 30)
    assert done.state is JobState.SUCCEEDED, (done.error, worker.output()[-3000:])
    owners = await Alarm.filter(
        template__catalogue_key="veeam_one_errors", active_key__isnull=False
    ).values_list("template__owner_id", flat=True)
    assert sorted(owners) == sorted(world.orgs[k].id for k in ("Provider", "R1", "A1"))
