"""A finished session corrected by a newer report (FAILED, then WARNING once the backup server
re-checked it) is not turned back when the older batch is delivered again later (a retry, a
queue replay): sessions and restore points keep the `reportedAt` of the batch that last wrote
them, and an older batch changes neither them, nor the rollups, nor the job's last run."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

import tests.test_alarm_evaluation as alarm_tests
from app.alarms import evaluation
from app.models import BackupJob, BackupJobSession, ManagedComputer, RestorePoint
from app.models.alarms import Alarm
from app.models.backups import SessionResult
from app.services.rollups import rebuild_rollups
from tests.factories import World
from tests.querycount import count_queries
from tests.test_ingestion import VBR, fleet, issue_key, post, rollups
from workers.runtime import run_queued_inline

T1, T2, T3 = "2026-03-02T08:00:00Z", "2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z"
DONE = {"endedAt": "2026-03-01T23:00:00Z"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def session(result: str, processed: int, uid: str = "run-1", **extra: Any) -> dict[str, Any]:
    s = {"uid": uid, "job": "job-3", "startedAt": "2026-03-01T22:00:00Z", "result": result}
    if result != "NONE":
        s.update(DONE, processedBytes=processed)
    return {**s, **extra}


async def setup(client: httpx.AsyncClient, gql, world: World) -> str:
    key = await issue_key(gql, world)
    body = (await post(client, key, fleet(sessions=0))).json()
    assert body["rejected"] == [], body
    return key


async def send(client: httpx.AsyncClient, key: str, reported_at: str, **lists: Any) -> None:
    body = (await post(client, key, {"reportedAt": reported_at, **lists})).json()
    assert body["rejected"] == [], body
    for name, records in lists.items():
        assert body["accepted"][name] == len(records), body


async def state() -> tuple[Any, ...]:
    """Everything a session report may move: the sessions, the rollups, the jobs."""
    sessions = await BackupJobSession.all().order_by("id").values()
    jobs = await BackupJob.all().order_by("id").values()
    return sessions, await rollups(), jobs


def rollup(world: World, success: int, warning: int, failed: int, processed: int) -> list:
    a1, loc = world.orgs["A1"].id, world.locations["A1-Default"].id
    return [(a1, loc, 0, VBR, date(2026, 3, 1), success, warning, failed, processed)]


async def test_an_older_batch_does_not_turn_back_a_correction(client, gql, world: World):
    key = await setup(client, gql, world)
    await send(client, key, T1, sessions=[session("FAILED", 20)])
    await send(client, key, T2, sessions=[session("WARNING", 50)])
    before = await state()
    assert before[1] == rollup(world, 0, 1, 0, 50)
    job = await BackupJob.get(uid="job-3")
    assert job.last_result is SessionResult.WARNING

    # The FAILED batch again, late, with a session the server had not reported before.
    earlier = session("SUCCESS", 7, uid="run-0", startedAt="2026-03-01T20:00:00Z")
    await send(client, key, T1, sessions=[session("FAILED", 20), earlier])

    sessions, after_rollups, jobs = await state()
    assert [s for s in sessions if s["uid"] == "run-1"] == before[0]
    corrected = await BackupJobSession.get(uid="run-1")
    assert (corrected.result, corrected.processed_bytes) == (SessionResult.WARNING, 50)
    assert corrected.reported_at == at(T2)
    # The new session counts (and is stamped with its batch's time); the correction stands.
    added = await BackupJobSession.get(uid="run-0")
    assert added.result is SessionResult.SUCCESS and added.reported_at == at(T1)
    assert after_rollups == rollup(world, 1, 1, 0, 57)
    # The job's last run is still the corrected session's (run-0 started earlier).
    assert jobs == before[2]
    # The rollups are what the sessions give when rebuilt from scratch.
    await rebuild_rollups()
    assert await rollups() == after_rollups


async def test_a_newer_correction_is_applied(client, gql, world: World):
    key = await setup(client, gql, world)
    await send(client, key, T1, sessions=[session("NONE", 0)])
    await send(client, key, T2, sessions=[session("FAILED", 20)])
    assert await rollups() == rollup(world, 0, 0, 1, 20)
    assert (await BackupJob.get(uid="job-3")).last_result is SessionResult.FAILED
    await send(client, key, T3, sessions=[session("SUCCESS", 50)])
    corrected = await BackupJobSession.get(uid="run-1")
    assert (corrected.result, corrected.processed_bytes) == (SessionResult.SUCCESS, 50)
    assert corrected.reported_at == at(T3)
    assert await rollups() == rollup(world, 1, 0, 0, 50)  # moved, not added
    job = await BackupJob.get(uid="job-3")
    assert job.last_result is SessionResult.SUCCESS
    assert job.last_run_at == at("2026-03-01T22:00:00Z")


async def test_the_same_batch_twice_writes_nothing(client, gql, world: World):
    key = await setup(client, gql, world)
    await send(client, key, T1, sessions=[session("FAILED", 20)])
    batch = {"sessions": [session("WARNING", 50)], "restorePoints": [point(300)]}
    await send(client, key, T2, **batch)
    before = await state(), await points()
    with count_queries() as queries:
        await send(client, key, T2, **batch)
    assert (await state(), await points()) == before
    writes = [q for q in queries.statements if q.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    assert not [w for w in writes if "backup_job_sessions" in w or "restore_points" in w], writes
    assert not [w for w in writes if "backup_session_rollups" in w], writes


async def test_a_confirmation_moves_the_report_time_only(client, gql, world: World):
    """A newer batch that reports the session as stored moves its report time (so a batch
    between the two cannot change it any more), and nothing else."""
    key = await setup(client, gql, world)
    await send(client, key, T1, sessions=[session("FAILED", 20)])
    before_sessions, before_rollups, before_jobs = await state()
    await send(client, key, T3, sessions=[session("FAILED", 20)])
    sessions, after_rollups, jobs = await state()
    assert [{**s, "reported_at": None} for s in sessions] == [
        {**s, "reported_at": None} for s in before_sessions
    ]
    assert sessions[0]["reported_at"] == at(T3)
    assert (after_rollups, jobs) == (before_rollups, before_jobs)
    await send(client, key, T2, sessions=[session("SUCCESS", 50)])  # older than T3
    assert (await BackupJobSession.get(uid="run-1")).result is SessionResult.FAILED
    assert await rollups() == rollup(world, 0, 0, 1, 20)


async def test_running_after_finished_stays_finished_even_when_newer(client, gql, world: World):
    key = await setup(client, gql, world)
    await send(client, key, T1, sessions=[session("SUCCESS", 50)])
    before = await state()
    await send(client, key, T3, sessions=[session("NONE", 0)])
    assert await state() == before  # not even the report time: the report was ignored
    # So a correction from between the two still applies.
    await send(client, key, T2, sessions=[session("WARNING", 50)])
    assert (await BackupJobSession.get(uid="run-1")).result is SessionResult.WARNING
    assert await rollups() == rollup(world, 0, 1, 0, 50)


async def test_a_session_stored_without_a_report_time_takes_one_report(client, gql, world: World):
    """Rows stored before migration 0015 have no report time: the next report applies,
    whatever its time, and from then on an older one does not."""
    key = await setup(client, gql, world)
    await send(client, key, T3, sessions=[session("WARNING", 50)])
    await BackupJobSession.filter(uid="run-1").update(reported_at=None)
    await send(client, key, T2, sessions=[session("FAILED", 20)])
    stored = await BackupJobSession.get(uid="run-1")
    assert (stored.result, stored.reported_at) == (SessionResult.FAILED, at(T2))
    assert await rollups() == rollup(world, 0, 0, 1, 20)
    assert (await BackupJob.get(uid="job-3")).last_result is SessionResult.FAILED
    await send(client, key, T1, sessions=[session("SUCCESS", 5)])
    assert (await BackupJobSession.get(uid="run-1")).result is SessionResult.FAILED
    assert await rollups() == rollup(world, 0, 0, 1, 20)


# --- restore points --------------------------------------------------------------------------


def point(size: int, created: str = "2026-03-02T01:00:00Z") -> dict[str, Any]:
    return {"uid": "rp-9", "computer": "pc-1", "job": "job-1", "createdAt": created,
            "sizeBytes": size}  # fmt: skip


async def points() -> list[dict[str, Any]]:
    return list(await RestorePoint.all().order_by("id").values())


async def test_restore_point_corrections_are_not_turned_back(client, gql, world: World):
    key = await setup(client, gql, world)
    await send(client, key, T1, restorePoints=[point(100, "2026-03-02T03:00:00Z")])
    await send(client, key, T2, restorePoints=[point(300)])  # the server corrected it
    pc1 = await ManagedComputer.get(uid="pc-1")
    before = await points()
    await send(client, key, T1, restorePoints=[point(100, "2026-03-02T03:00:00Z")])
    assert await points() == before
    stored = await RestorePoint.get(uid="rp-9")
    assert (stored.size_bytes, stored.created_at) == (300, at("2026-03-02T01:00:00Z"))
    assert stored.reported_at == at(T2)
    after = await ManagedComputer.get(uid="pc-1")
    assert (after.restore_point_count, after.last_restore_point_at) == (
        pc1.restore_point_count,
        pc1.last_restore_point_at,
    )
    await send(client, key, T3, restorePoints=[point(400)])
    stored = await RestorePoint.get(uid="rp-9")
    assert (stored.size_bytes, stored.reported_at) == (400, at(T3))
    assert (await ManagedComputer.get(uid="pc-1")).restore_point_count == pc1.restore_point_count


# --- statements ------------------------------------------------------------------------------


async def test_statements_do_not_grow_with_corrections_or_stale_batches(client, gql, world: World):
    key = await setup(client, gql, world)

    def batch(first: int, n: int, result: str) -> list[dict[str, Any]]:
        return [
            session(result, 10, uid=f"c-{i}", job=f"job-{1 + i % 3}")
            for i in range(first, first + n)
        ]

    seen: dict[int, list[int]] = {}
    for first, n in ((0, 5), (100, 300)):
        for reported_at, result in ((T2, "FAILED"), (T3, "WARNING"), (T1, "SUCCESS")):
            with count_queries() as queries:
                await send(client, key, reported_at, sessions=batch(first, n, result))
            seen.setdefault(n, []).append(queries.count)
        results = await BackupJobSession.filter(uid__startswith="c-").values_list(
            "result", flat=True
        )
        assert {SessionResult(r) for r in results} == {SessionResult.WARNING}
    assert seen[5] == seen[300], seen


# --- alarms ----------------------------------------------------------------------------------

broker = alarm_tests.broker  # the stub broker fixture, shared


async def test_a_correction_clears_the_alarm_and_a_late_replay_does_not_raise_it(
    world, client, gql, broker, use_settings
):
    """A session corrected in place keeps its id (the sweep's cursor does not see it): the
    batch's own evaluation request picks the correction up, and the job's alarm, raised by
    the FAILED report, clears; the FAILED batch replayed afterwards raises nothing."""
    use_settings(alarms_evaluate_on_events=True)
    key = await issue_key(gql, world)
    now = datetime.now(UTC).replace(microsecond=0)  # the alarms' windows are the clock's

    def batch(reported: datetime, result: str) -> dict[str, Any]:
        return {
            "reportedAt": reported.isoformat(),
            "computers": [{"uid": "pc-1", "hostname": "sql01", "osFamily": "WINDOWS"}],
            "jobs": [{"uid": "job-1", "kind": "AGENT", "name": "sql01", "computer": "pc-1"}],
            "sessions": [
                {"uid": "s-1", "job": "job-1", "result": result,
                 "startedAt": (now - timedelta(minutes=30)).isoformat(),
                 "endedAt": (now - timedelta(minutes=5)).isoformat()}
            ],
        }  # fmt: skip

    def active() -> Any:
        return Alarm.filter(template__catalogue_key="job_session_failed", active_key__isnull=False)

    failed = batch(now - timedelta(minutes=2), "FAILED")
    assert (await post(client, key, failed)).json()["rejected"] == []
    assert await run_queued_inline(broker) == 1
    assert await active().count() > 0
    corrected = batch(now - timedelta(minutes=1), "WARNING")
    assert (await post(client, key, corrected)).json()["rejected"] == []
    assert await run_queued_inline(broker) == 1
    assert await active().count() == 0
    assert (await post(client, key, failed)).json()["accepted"]["sessions"] == 1
    await run_queued_inline(broker)
    await evaluation.evaluate_organizations([world.orgs["A1"].id])
    assert await active().count() == 0
    assert (await BackupJobSession.get(uid="s-1")).result is SessionResult.WARNING
    assert (await BackupJob.get(uid="job-1")).last_result is SessionResult.WARNING
