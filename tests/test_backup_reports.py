"""Backup reports: the period checked (order, 366 days, not in the future), one generation in
flight per company and period, content computed in SQL for the requester's scope (sessions
by result per job, data processed, computers protected and out of RPO, failed jobs), removal
(cancelling a generation in flight), and who may generate, read and remove them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz.capabilities import BACKUP_REPORTS
from app.authz.engine import allows
from app.authz.matrix import Action
from app.graphql.ids import to_global_id
from app.models import (
    BackupJob,
    BackupJobSession,
    BackupReport,
    Job,
    JobState,
    ManagedComputer,
    RestorePoint,
    SessionResult,
)
from app.services import jobs
from tests.conftest import TEST_SETTINGS
from tests.querycount import count_queries
from tests.workload_fleet import NOW, build_fleet
from workers.broker import setup
from workers.runtime import run_queued_inline

OWNER = "Company Owner"
GA = "Service Provider Global Administrator"
GENERATE = """mutation($input: BackupReportGenerateInput!) { backupReportGenerate(input: $input) {
  created job { id state } report { id periodStart periodEnd generatedAt content viewerCanDelete } } }"""
ONE = "query($id: ID!) { backupReport(id: $id) { id content generatedAt } }"
LIST = "query { backupReports { totalCount nodes { id } } }"
DELETE = "mutation($id: ID!) { backupReportDelete(id: $id) { deletedId } }"
START, END = date(2026, 11, 1), NOW.date()


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


def ask(world, org: str = "A1", start: date = START, end: date = END) -> dict[str, Any]:
    company = gid("Company", world.orgs[org].id)
    return {
        "input": {
            "companyId": company,
            "periodStart": start.isoformat(),
            "periodEnd": end.isoformat(),
        }
    }


@pytest.fixture
def broker():
    previous = jobs._dispatcher
    b = setup(TEST_SETTINGS, stub=True)
    yield b
    jobs.set_dispatcher(previous)


@pytest.fixture
async def fleet(world):
    fleet = await build_fleet(world)
    # A1's East agent job failed twice in the period; one session before it does not count.
    east = await BackupJob.get(computer_id=fleet.computer("A1-East").id, assigned_by_provider=False)
    for i, started in enumerate(
        [NOW - timedelta(days=2), NOW - timedelta(days=1), NOW - timedelta(days=40)]
    ):
        await BackupJobSession.create(
            job=east,
            uid=f"fail-{i}",
            company_id=east.company_id,
            location_id=east.location_id,  # type: ignore[attr-defined]
            computer_id=east.computer_id,
            functionality=east.functionality,  # type: ignore[attr-defined]
            result=SessionResult.FAILED,
            started_at=started,
            processed_bytes=5 * 2**30,
        )
    # A1-East's newest restore point is 3 days old at the period's end: out of RPO.
    await RestorePoint.filter(computer_id=fleet.computer("A1-East").id).update(
        created_at=NOW - timedelta(days=3)
    )
    return fleet


async def test_the_period_is_checked(world, gql, broker):
    token = world.token("Provider", GA)
    cases = [
        (ask(world, start=END, end=START), "input.periodStart"),
        (ask(world, start=END - timedelta(days=366), end=END), "input.periodEnd"),
        (
            ask(world, start=START, end=datetime.now(UTC).date() + timedelta(days=1)),
            "input.periodEnd",
        ),
    ]
    for variables, where in cases:
        body = await gql(GENERATE, variables, token=token)
        assert (code(body), body["errors"][0]["extensions"]["field"]) == ("BAD_USER_INPUT", where)
    body = await gql(GENERATE, ask(world, start=END - timedelta(days=365), end=END), token=token)
    assert body["data"]["backupReportGenerate"]["created"] is True  # 366 days in all
    body = await gql(GENERATE, ask(world, org="R1"), token=token)
    assert (code(body), body["errors"][0]["extensions"]["field"]) == (
        "NOT_FOUND",
        "input.companyId",
    )


async def test_generated_content_in_sql(world, fleet, gql, broker):
    token = world.token("R1", GA)
    body = await gql(GENERATE, ask(world), token=token)
    made = body["data"]["backupReportGenerate"]
    assert (
        made["created"] is True
        and made["report"]["content"] is None
        and made["job"]["state"] == "QUEUED"
    )
    # The same company and period again while it is queued: the same report.
    again = (await gql(GENERATE, ask(world), token=token))["data"]["backupReportGenerate"]
    assert (again["created"], again["report"]["id"]) == (False, made["report"]["id"])
    with count_queries() as counted:
        assert await run_queued_inline(broker) == 1
    report = (await gql(ONE, {"id": made["report"]["id"]}, token=token))["data"]["backupReport"]
    content = report["content"]
    assert report["generatedAt"] is not None

    a1 = world.orgs["A1"].id
    in_period = BackupJobSession.filter(
        company_id=a1, started_at__gte=datetime(2026, 11, 1, tzinfo=UTC)
    )
    assert (
        content["totals"]["sessions"]["SUCCESS"] == await in_period.filter(result="SUCCESS").count()
    )
    assert content["totals"]["sessions"]["FAILED"] == 2
    processed = sum(await in_period.values_list("processed_bytes", flat=True))  # type: ignore[arg-type]
    assert content["totals"]["processedBytes"] == processed
    jobs_with_sessions = await in_period.distinct().values_list("job_id", flat=True)
    assert len(content["jobs"]) == len(set(jobs_with_sessions))
    east = await BackupJob.get(computer_id=fleet.computer("A1-East").id, assigned_by_provider=False)
    assert content["failedJobs"] == [
        {
            "jobId": east.id,
            "name": east.name,
            "failed": 2,
            "lastFailedAt": content["failedJobs"][0]["lastFailedAt"],
        }
    ]
    assert content["failedJobs"][0]["lastFailedAt"].startswith(
        (NOW - timedelta(days=1)).date().isoformat()
    )
    computers = await ManagedComputer.filter(company_id=a1).count()
    assert content["computers"]["total"] == computers == 3  # two locations and the Subtenant's
    assert content["computers"]["protected"] == 2  # the Subtenant's computer has no point
    assert content["computers"]["outOfRpo"] == 1  # A1-East, 3 days old
    assert content["locations"] is None
    # Aggregates, not rows: a handful of statements whatever the number of sessions.
    assert counted.count < 30, counted.count

    # Generated: asking again makes a new report.
    third = (await gql(GENERATE, ask(world), token=token))["data"]["backupReportGenerate"]
    assert third["created"] is True and third["report"]["id"] != made["report"]["id"]


async def test_a_location_administrators_report_covers_their_locations(world, fleet, gql, broker):
    token = world.token("A1", "Location Administrator")
    made = (await gql(GENERATE, ask(world), token=token))["data"]["backupReportGenerate"]
    await run_queued_inline(broker)
    content = (await gql(ONE, {"id": made["report"]["id"]}, token=token))["data"]["backupReport"][
        "content"
    ]
    assert content["locations"] == [world.locations["A1-East"].id]
    assert content["computers"]["total"] == 1 and content["totals"]["sessions"]["FAILED"] == 2
    assert {j["jobId"] for j in content["jobs"]} == {
        (
            await BackupJob.get(
                computer_id=fleet.computer("A1-East").id, assigned_by_provider=False
            )
        ).id
    }
    # The owner's company-wide report is not shown to a principal limited to locations.
    owner = await gql(
        GENERATE,
        ask(world, start=START, end=END - timedelta(days=1)),
        token=world.token("A1", OWNER),
    )
    owner_id = owner["data"]["backupReportGenerate"]["report"]["id"]
    assert (
        code(await gql(ONE, {"id": owner_id}, token=world.token("A1", "Location User")))
        == "NOT_FOUND"
    )
    listed = (await gql(LIST, {}, token=token))["data"]["backupReports"]
    assert [n["id"] for n in listed["nodes"]] == [made["report"]["id"]]


async def test_delete_cancels_a_generation_in_flight(world, fleet, gql, broker):
    token = world.token("A1", OWNER)
    made = (await gql(GENERATE, ask(world), token=token))["data"]["backupReportGenerate"]
    body = await gql(DELETE, {"id": made["report"]["id"]}, token=token)
    assert body["data"]["backupReportDelete"]["deletedId"] == made["report"]["id"]
    assert await BackupReport.all().count() == 0
    job = await Job.get(kind="backup_report.generate")
    assert job.state is JobState.CANCELLED
    await run_queued_inline(broker)
    assert (await Job.get(id=job.id)).state is JobState.CANCELLED


async def test_the_matrix_decides_for_every_principal(world, fleet, gql, broker):
    report = (await gql(GENERATE, ask(world), token=world.token("A1", OWNER)))["data"][
        "backupReportGenerate"
    ]["report"]
    await run_queued_inline(broker)
    seen: dict[str, tuple[str | None, str | None]] = {}
    for key, token in world.tokens.items():
        p = await principal_for_bearer(token)
        read = await gql(ONE, {"id": report["id"]}, token=token)
        generate = await gql(GENERATE, ask(world, end=END - timedelta(days=3)), token=token)
        seen[key] = (code(read), code(generate))
        if not allows(p, BACKUP_REPORTS, Action.READ):
            assert seen[key] == ("FORBIDDEN", "FORBIDDEN"), key
        elif not allows(p, BACKUP_REPORTS, Action.CREATE):
            assert seen[key][1] == "FORBIDDEN", key
    assert seen["Provider:Service Provider User"] == (None, "FORBIDDEN")  # Read
    assert seen["A1:Location User"] == ("NOT_FOUND", "FORBIDDEN")  # Read, own reports only
    assert seen["A1:Subtenant"] == ("FORBIDDEN", "FORBIDDEN")  # N/A
    assert seen["A2:Company Owner"] == ("NOT_FOUND", "NOT_FOUND")
    assert seen["R2:" + GA] == ("NOT_FOUND", "NOT_FOUND")
    assert seen["R1:" + GA] == (None, None)
    assert seen["A1:Company Administrator"] == (None, None)
    assert (
        code(await gql(DELETE, {"id": report["id"]}, token=world.token("A2", OWNER))) == "NOT_FOUND"
    )
    assert (
        code(
            await gql(
                DELETE, {"id": report["id"]}, token=world.token("Provider", "Service Provider User")
            )
        )
        == "FORBIDDEN"
    )
