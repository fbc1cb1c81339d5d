"""Alarm evaluation: full and incremental sweeps (only the organizations whose sources changed,
plus the clock's templates; cursors), the scheduled sweep's full/incremental choice, the
evaluate job per organization and minute, and end to end: a failed session ingested through
POST /ingest/v1/batch → alarms.evaluate on the in-process broker → ACTIVE alarms for the
company's, its reseller's and the provider's templates."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.alarms import engine, evaluation, resolution, rows, templates
from app.alarms.catalogue import Condition, Definition, EvalScope
from app.models import (
    AuditEntry,
    BackupJob,
    BackupJobKind,
    BackupJobSession,
    Job,
    JobState,
)
from app.models.alarms import (
    Alarm,
    AlarmSeverity,
    AlarmStatus,
    AlarmTemplate,
    EvaluationCursor,
    RuleKind,
)
from app.models.backups import SessionResult
from app.models.failover import DomainEvent
from app.services import jobs
from tests.conftest import TEST_SETTINGS
from tests.factories import World
from tests.querycount import count_queries
from workers.broker import setup
from workers.runtime import run_queued_inline

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAKE_KEYS = ("fake_sessions", "fake_events", "fake_logins", "fake_time")


class Fake:
    """A catalogue of four templates, one per kind of source, whose evaluators report what
    `firing` holds and record the scopes they were asked for."""

    def __init__(self) -> None:
        self.firing: dict[str, list[Condition]] = {k: [] for k in FAKE_KEYS}
        self.calls: list[tuple[str, list[int] | None]] = []

    def definition(self, key: str, source: str) -> Definition:
        async def evaluate(template: AlarmTemplate, scope: EvalScope) -> list[Condition]:
            self.calls.append((key, scope.organization_ids))
            return [c for c in self.firing[key] if scope.allows(c.organization_id)]

        return Definition(
            key, key, key, RuleKind.STATE_CHANGE, AlarmSeverity.ERROR, {}, source, evaluate
        )

    def catalogue(self) -> dict[str, Definition]:
        sources = ("sessions", "events", "logins", "time")
        return {k: self.definition(k, s) for k, s in zip(FAKE_KEYS, sources, strict=True)}

    def called(self) -> dict[str, list[int] | None]:
        out = dict(self.calls)
        self.calls.clear()
        return out


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    fake = Fake()
    catalogue = fake.catalogue()
    for module in (engine, evaluation, resolution, templates):
        monkeypatch.setattr(module, "CATALOGUE", catalogue)
    return fake


@pytest.fixture
def broker() -> Iterator[Any]:
    previous = jobs._dispatcher
    b = setup(TEST_SETTINGS, stub=True)
    yield b
    jobs.set_dispatcher(previous)


def cond(world: World, org: str, object_id: int) -> Condition:
    return Condition(
        "Thing", object_id, f"thing-{object_id}", world.orgs[org].id, None, None,
        AlarmSeverity.ERROR, "wrong",
    )  # fmt: skip


async def open_by_owner(key: str) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    rows = await Alarm.filter(active_key__isnull=False, template__catalogue_key=key).values_list(
        "template__owner_id", "object_id"
    )
    for owner, obj in rows:
        out.setdefault(owner, []).append(obj)
    return {k: sorted(v) for k, v in sorted(out.items())}


async def add_session(world: World, org: str, n: int) -> BackupJobSession:
    company = world.orgs[org]
    job = await BackupJob.create(
        company=company,
        location=world.locations[f"{org}-Default"],
        uid=f"j-{org}-{n}",
        name=f"job {n}",
        kind=BackupJobKind.AGENT,
        functionality="AGENTS",
    )
    return await BackupJobSession.create(
        job=job, uid=f"s-{n}", company_id=company.id, location_id=job.location_id,
        functionality="AGENTS", result=SessionResult.FAILED, started_at=T0,
    )  # fmt: skip


async def cursors() -> dict[str, int]:
    return dict(await EvaluationCursor.all().values_list("name", "last_id"))  # type: ignore[arg-type]


async def test_full_sweep_evaluates_each_template_group_once_over_everything(world, fake):
    w = world
    fake.firing["fake_time"] = [cond(w, "A1", 1), cond(w, "B1", 2)]
    report = await evaluation.evaluate_all(T0)
    # Seven organizations × four templates, one evaluator call per key over everything.
    assert (report.templates, report.evaluator_calls) == (28, 4)
    assert fake.called() == {k: None for k in FAKE_KEYS}
    ids = {k: o.id for k, o in w.orgs.items()}
    assert await open_by_owner("fake_time") == {
        ids["Provider"]: [1, 2],
        ids["R1"]: [1],
        ids["R2"]: [2],
        ids["A1"]: [1],
        ids["B1"]: [2],
    }
    assert report.changes.counts()["triggered"] == 6
    assert (await cursors())["sweep:full"] == int(T0.timestamp())
    # A template with other thresholds is its own group: one more call.
    await AlarmTemplate.filter(owner_id=ids["R1"], catalogue_key="fake_time").update(
        thresholds={"x": 1}
    )
    report = await evaluation.evaluate_all(T0)
    assert report.evaluator_calls == 5 and report.changes.counts()["triggered"] == 0


async def test_incremental_sweep_evaluates_only_changed_organizations(world, fake):
    w = world
    ids = {k: o.id for k, o in w.orgs.items()}
    await evaluation.evaluate_all(T0)
    fake.called()
    # Nothing changed, and the clock's templates ran with the full sweep: nothing runs.
    with count_queries() as quiet:
        report = await evaluation.evaluate_changed(T0)
    assert fake.called() == {}
    assert report.templates == 0
    assert quiet.count <= 20, quiet.statements
    # A session of A1: the sessions and clock templates of A1, R1 and the provider, over A1.
    session = await add_session(w, "A1", 1)
    fake.firing["fake_sessions"] = [cond(w, "A1", 1), cond(w, "A2", 9)]
    report = await evaluation.evaluate_changed(T0)
    assert fake.called() == {"fake_sessions": [ids["A1"]], "fake_time": [ids["A1"]]}
    assert report.templates == 3 + 3
    assert await open_by_owner("fake_sessions") == {
        ids["Provider"]: [1],
        ids["R1"]: [1],
        ids["A1"]: [1],
    }  # A2's condition is not evaluated: A2 did not change
    assert (await cursors())["source:sessions"] == session.id
    # The cursor moved: the next run does not evaluate A1's sessions again.
    await evaluation.evaluate_changed(T0)
    assert fake.called() == {}
    # The clock's templates run whole every CLOCK_MINUTES.
    due = T0 + timedelta(minutes=evaluation.CLOCK_MINUTES)
    report = await evaluation.evaluate_changed(due)
    assert fake.called() == {"fake_time": None}
    assert report.templates == 7
    assert (await cursors())[evaluation.CLOCK_CURSOR] == int(due.timestamp())
    await evaluation.evaluate_changed(due + timedelta(minutes=evaluation.CLOCK_MINUTES - 1))
    assert fake.called() == {}


def alarm_writes(statements: list[str]) -> list[str]:
    return [
        s
        for s in statements
        if re.match(r'\s*(UPDATE|INSERT INTO|DELETE FROM) "alarm(s|_events)"', s, re.IGNORECASE)
    ]


async def test_a_sweep_that_sees_the_same_conditions_writes_nothing(world, fake):
    """Still-firing alarms are not rewritten every minute: no repeat is counted, and their
    last_seen_at is refreshed in one UPDATE once due (rows.LAST_SEEN_REFRESH + spread)."""
    w = world
    fake.firing["fake_time"] = [cond(w, "A1", 1), cond(w, "B1", 2)]
    await evaluation.evaluate_all(T0)
    with count_queries() as quiet:
        report = await evaluation.evaluate_changed(T0 + timedelta(minutes=evaluation.CLOCK_MINUTES))
    assert report.organizations["time"] is None  # the clock's templates ran whole
    counts = report.changes.counts()
    assert (counts["repeated"], counts["unchanged"], counts["refreshed"]) == (0, 6, 0)
    assert alarm_writes(quiet.statements) == []
    due = T0 + rows.LAST_SEEN_REFRESH + timedelta(minutes=rows.LAST_SEEN_SPREAD)
    with count_queries() as refresh:
        report = await evaluation.evaluate_changed(due)
    assert report.changes.counts()["refreshed"] == 6
    assert [s.split()[0].upper() for s in alarm_writes(refresh.statements)] == ["UPDATE"]
    stored = await Alarm.filter(active_key__isnull=False).values_list("occurrences", "last_seen_at")
    assert set(stored) == {(1, due)}


async def test_event_sources_follow_their_cursor_and_clear_their_open_alarms(world, fake):
    w = world
    ids = {k: o.id for k, o in w.orgs.items()}
    await evaluation.evaluate_all(T0)
    fake.called()
    await DomainEvent.create(
        kind="failover_session.finished",
        organization_id=ids["B1"],
        subject_type="FailoverSession",
        subject_id=1,
    )
    entry = await AuditEntry.create(
        action="login", outcome="FAILURE", organization_id=ids["A2"], object_type="User"
    )
    await AuditEntry.create(action="login", outcome="SUCCESS", organization_id=ids["P1"])
    fake.firing["fake_events"] = [cond(w, "B1", 5)]
    fake.firing["fake_logins"] = [cond(w, "A2", 6)]
    await evaluation.evaluate_changed(T0)
    assert fake.called() == {"fake_events": [ids["B1"]], "fake_logins": [ids["A2"]]}
    assert await open_by_owner("fake_events") == {
        ids["Provider"]: [5],
        ids["R2"]: [5],
        ids["B1"]: [5],
    }
    assert (await cursors())["source:logins"] >= entry.id
    # No new event: B1 still has open alarms, so it is evaluated again; the event left its
    # window (the evaluator no longer reports it): resolved.
    fake.firing["fake_events"] = []
    report = await evaluation.evaluate_changed(T0 + timedelta(minutes=1))
    assert fake.called()["fake_events"] == [ids["B1"]]
    assert await open_by_owner("fake_events") == {}
    assert report.changes.counts()["auto_resolved"] == 3
    await evaluation.evaluate_changed(T0 + timedelta(minutes=2))
    assert "fake_events" not in fake.called()


async def test_the_full_sweep_resolves_what_nobody_watches_any_more(world, fake):
    w = world
    ids = {k: o.id for k, o in w.orgs.items()}
    fake.firing["fake_sessions"] = [cond(w, "A1", 1), cond(w, "A2", 2)]
    await evaluation.evaluate_all(T0)
    # R1 excludes A2; the provider's template is disabled without resolve_for_template.
    await AlarmTemplate.filter(owner_id=ids["R1"], catalogue_key="fake_sessions").update(
        assignment={"all": True, "excludeCompanies": [ids["A2"]]}
    )
    await AlarmTemplate.filter(owner_id=ids["Provider"], catalogue_key="fake_sessions").update(
        enabled=False
    )
    await evaluation.evaluate_all(T0)
    assert await open_by_owner("fake_sessions") == {
        ids["R1"]: [1],
        ids["A1"]: [1],
        ids["A2"]: [2],
    }


async def test_the_scheduled_sweep_is_full_when_due(world, fake, use_settings):
    use_settings(alarms_full_sweep_minutes=60)
    assert (await evaluation.sweep(T0)).full is True
    assert (await evaluation.sweep(T0 + timedelta(minutes=59))).full is False
    assert (await evaluation.sweep(T0 + timedelta(minutes=60))).full is True
    use_settings(alarms_full_sweep_minutes=0)  # never full
    assert (await evaluation.sweep(T0 + timedelta(hours=5))).full is False


def test_the_sweep_schedule_is_on_in_real_settings_and_off_in_tests(monkeypatch):
    from app.settings import load_settings
    from workers.schedules import ALARMS, default_schedules

    assert ALARMS not in [s.name for s in default_schedules(TEST_SETTINGS)]
    monkeypatch.delenv("TENANTRY_SCHEDULE_ALARMS", raising=False)
    real = load_settings()
    [sweep] = [s for s in default_schedules(real) if s.name == ALARMS]
    assert (sweep.cron, sweep.job_kind, real.alarms_full_sweep_minutes) == (
        "* * * * *",
        "alarms.sweep",
        60,
    )
    assert (
        real.alarms_evaluate_on_events is True and TEST_SETTINGS.alarms_evaluate_on_events is False
    )
    monkeypatch.setenv("TENANTRY_SCHEDULE_ALARMS", "")
    monkeypatch.setenv("TENANTRY_ALARMS_FULL_SWEEP_MINUTES", "15")
    real = load_settings()
    assert ALARMS not in [s.name for s in default_schedules(real)]
    assert real.alarms_full_sweep_minutes == 15


async def test_one_evaluate_job_per_organization_and_minute(world, broker, use_settings):
    a1 = world.orgs["A1"].id
    assert await evaluation.request_evaluation(a1, T0) is None  # off in code-built settings
    use_settings(alarms_evaluate_on_events=True)
    first = await evaluation.request_evaluation(a1, T0)
    again = await evaluation.request_evaluation(a1, T0 + timedelta(seconds=30))
    assert first is not None and again is not None and again.id == first.id
    assert (first.kind, first.organization_id, first.dedup_key) == (  # type: ignore[attr-defined]
        "alarms.evaluate",
        a1,
        f"alarms:{a1}:202603011200",
    )
    assert await run_queued_inline(broker) == 1
    assert (await Job.get(id=first.id)).state is JobState.SUCCEEDED
    # This minute's job already ran: a change now gets a follow-up next minute, once.
    follow = await evaluation.request_evaluation(a1, T0 + timedelta(seconds=40))
    more = await evaluation.request_evaluation(a1, T0 + timedelta(seconds=50))
    assert follow is not None and more is not None and follow.id == more.id != first.id
    assert follow.dedup_key == f"alarms:{a1}:202603011201"
    assert await Job.filter(kind="alarms.evaluate").count() == 2


async def test_a_failed_login_requests_its_organizations_evaluation(
    world, gql, broker, use_settings
):
    use_settings(alarms_evaluate_on_events=True)
    user = world.user("A2", "Company Owner")
    body = await gql(
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
        {"e": user.email, "p": "wrong"},
    )
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    [job] = await Job.filter(kind="alarms.evaluate")
    assert job.organization_id == world.orgs["A2"].id  # type: ignore[attr-defined]


# --- end to end -------------------------------------------------------------------------------

KEY_CREATE = """mutation($input: AgentKeyCreateInput!) {
  agentKeyCreate(input: $input) { secret } }"""


async def ingest(client: httpx.AsyncClient, key: str, result: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    batch = {
        "reportedAt": now.isoformat(),
        "computers": [{"uid": "pc-1", "hostname": "sql01", "osFamily": "WINDOWS"}],
        "jobs": [{"uid": "job-1", "kind": "AGENT", "name": "sql01 daily", "computer": "pc-1"}],
        "sessions": [
            {
                "uid": f"s-{result}",
                "job": "job-1",
                "result": result,
                "startedAt": (now - timedelta(minutes=30)).isoformat(),
                "endedAt": (now - timedelta(minutes=1 if result == "FAILED" else 0)).isoformat(),
            }
        ],
    }
    resp = await client.post(
        "/ingest/v1/batch", json=batch, headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status_code == 200 and resp.json()["rejected"] == [], resp.text


async def test_an_ingested_failed_session_raises_alarms_for_every_watching_portal(
    world, client, gql, broker, use_settings
):
    from tests.permission_cases import org_gid

    use_settings(alarms_evaluate_on_events=True)
    w = world
    ids = {k: o.id for k, o in w.orgs.items()}
    body = await gql(
        KEY_CREATE,
        {"input": {"companyId": org_gid(w.orgs["A1"]), "name": "vbr"}},
        token=w.token("A1", "Company Owner"),
    )
    key = body["data"]["agentKeyCreate"]["secret"]
    await ingest(client, key, "FAILED")
    assert await run_queued_inline(broker) == 1
    alarms = await Alarm.filter(
        template__catalogue_key="job_session_failed", active_key__isnull=False
    ).values_list("template__owner_id", "status", "object_name", "organization_id")
    assert sorted(alarms) == sorted(
        (ids[o], AlarmStatus.ACTIVE, "sql01 daily", ids["A1"]) for o in ("Provider", "R1", "A1")
    )
    # A later successful session clears them all (the follow-up evaluation of this minute).
    await ingest(client, key, "SUCCESS")
    assert await run_queued_inline(broker) == 1
    assert (
        await Alarm.filter(
            template__catalogue_key="job_session_failed", active_key__isnull=False
        ).count()
        == 0
    )
    assert (
        await Alarm.filter(
            template__catalogue_key="job_session_failed", status=AlarmStatus.RESOLVED
        ).count()
        == 3
    )
