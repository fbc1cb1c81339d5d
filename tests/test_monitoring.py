"""The monitoring summary: exact counts from the daily rollups, jobs, agents and restore points,
for every scope (provider, reseller, company, location, Subtenant, Department Portal); period
validation; a handful of aggregate statements whatever the fleet's size."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from app.graphql.ids import to_global_id
from app.models import (
    AgentStatus,
    BackupJobKind,
    ManagedComputer,
    SessionResult,
    SessionRollup,
)
from tests.factories import build_world
from tests.querycount import count_queries
from tests.workload_fleet import build_fleet

SUMMARY = """query($from: Date!, $to: Date!, $companyId: ID) {
  monitoringSummary(from: $from, to: $to, companyId: $companyId) {
    from to
    sessions { success warning failed processedBytes }
    jobsByLastResult { result count }
    computersByAgentStatus { status count }
    computers { protected rpoBreached unprotected } } }"""
GA = ("Provider", "Service Provider Global Administrator")
DAY = date(2026, 11, 1)
PERIOD = {"from": "2026-11-01", "to": "2026-11-30"}


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


def sessions(body: dict[str, Any]) -> tuple[int, int, int]:
    s = body["data"]["monitoringSummary"]["sessions"]
    return s["success"], s["warning"], s["failed"]


def by_key(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    return {i[key]: i["count"] for i in items if i["count"]}


async def rollup(
    world,
    org: str,
    location: str,
    day: date,
    s: int,
    w: int,
    f: int,
    sub: int = 0,
    functionality: str = "BACKUP_AGENTS",
) -> None:
    await SessionRollup.create(
        company_id=world.orgs[org].id,
        location_id=world.locations[location].id,
        subtenant_id=sub,
        functionality=functionality,
        day=day,
        success=s,
        warning=w,
        failed=f,
        processed_bytes=(s + w) * 2**32,
    )


@pytest.fixture
async def fleet(world):
    fleet = await build_fleet(world)
    a1_sub = fleet.subtenants["A1"].id
    await rollup(world, "A1", "A1-Default", DAY, 10, 2, 1)
    await rollup(world, "A1", "A1-Default", DAY + timedelta(days=5), 20, 0, 3)
    await rollup(world, "A1", "A1-East", DAY + timedelta(days=1), 7, 1, 0)
    await rollup(world, "A1", "A1-Default", DAY + timedelta(days=2), 4, 1, 1, sub=a1_sub)
    await rollup(world, "A1", "A1-Default", DAY - timedelta(days=1), 100, 100, 100)  # October
    await rollup(world, "A2", "A2-Default", DAY, 5, 0, 0)
    await rollup(world, "B1", "B1-Default", DAY + timedelta(days=29), 1, 1, 1)
    await rollup(world, "P1", "P1-Default", DAY + timedelta(days=30), 9, 9, 9)  # December
    # Jobs: A1's VBR job failed, its East agent job warned; everything else succeeded.
    vbr = fleet.jobs[("A1", BackupJobKind.VBR_BACKUP, False)]
    vbr.last_result = SessionResult.FAILED
    await vbr.save()
    east_job = next(j for j in await fleet.computer("A1-East").backup_jobs)  # type: ignore[attr-defined]
    east_job.last_result = SessionResult.WARNING
    await east_job.save()
    # Agents: A1-East in error, B1's Subtenant computer inaccessible.
    await ManagedComputer.filter(id=fleet.computer("A1-East").id).update(
        agent_status=AgentStatus.ERROR
    )
    await ManagedComputer.filter(id=fleet.subtenant_computers["B1:own"].id).update(
        agent_status=AgentStatus.INACCESSIBLE
    )
    # Protection: A1-Default fresh, A1-East 30 h old, A1's Subtenant computer never backed up;
    # the other companies' computers fresh.
    now = datetime.now(UTC)
    await ManagedComputer.all().update(last_restore_point_at=now - timedelta(hours=1))
    await ManagedComputer.filter(id=fleet.computer("A1-East").id).update(
        last_restore_point_at=now - timedelta(hours=30)
    )
    await ManagedComputer.filter(id=fleet.subtenant_computers["A1:own"].id).update(
        last_restore_point_at=None, restore_point_count=0
    )
    return fleet


async def test_provider_sees_everything(world, fleet, gql) -> None:
    body = await gql(SUMMARY, PERIOD, token=world.token(*GA))
    summary = body["data"]["monitoringSummary"]
    assert summary["from"] == "2026-11-01" and summary["to"] == "2026-11-30"
    # November only: 10+20+7+4+5+1 success, 2+0+1+1+0+1 warning, 1+3+0+1+0+1 failed.
    assert sessions(body) == (47, 5, 6)
    assert summary["sessions"]["processedBytes"] == (47 + 5) * 2**32
    # 33 jobs in the fleet: one failed, one warning.
    assert by_key(summary["jobsByLastResult"], "result") == {
        "SUCCESS": 31,
        "FAILED": 1,
        "WARNING": 1,
    }
    assert len(summary["jobsByLastResult"]) == len(SessionResult)
    assert by_key(summary["computersByAgentStatus"], "status") == {
        "HEALTHY": 7,
        "ERROR": 1,
        "INACCESSIBLE": 1,
    }
    assert summary["computers"] == {"protected": 7, "rpoBreached": 1, "unprotected": 1}


async def test_each_scope_counts_its_own_rows(world, fleet, gql) -> None:
    body = await gql(SUMMARY, PERIOD, token=world.token("R1", "Service Provider User"))
    assert sessions(body) == (46, 4, 5)  # A1 and A2
    assert body["data"]["monitoringSummary"]["computers"] == {
        "protected": 3,
        "rpoBreached": 1,
        "unprotected": 1,
    }
    body = await gql(SUMMARY, PERIOD, token=world.token("R2", "Service Provider Administrator"))
    assert sessions(body) == (1, 1, 1)
    assert by_key(body["data"]["monitoringSummary"]["computersByAgentStatus"], "status") == {
        "HEALTHY": 1,
        "INACCESSIBLE": 1,
    }
    body = await gql(SUMMARY, PERIOD, token=world.token("Provider", "Service Provider User:P1"))
    assert sessions(body) == (0, 0, 0)  # P1's only rollup is in December
    body = await gql(SUMMARY, PERIOD, token=world.token("A1", "Company Owner"))
    summary = body["data"]["monitoringSummary"]
    assert sessions(body) == (41, 4, 5)
    assert by_key(summary["jobsByLastResult"], "result") == {
        "SUCCESS": 7,
        "FAILED": 1,
        "WARNING": 1,
    }
    assert summary["computers"] == {"protected": 1, "rpoBreached": 1, "unprotected": 1}
    # A Location User: the East location only.
    body = await gql(SUMMARY, PERIOD, token=world.token("A1", "Location User"))
    summary = body["data"]["monitoringSummary"]
    assert sessions(body) == (7, 1, 0)
    assert by_key(summary["jobsByLastResult"], "result") == {"WARNING": 1}
    assert by_key(summary["computersByAgentStatus"], "status") == {"ERROR": 1}
    assert summary["computers"] == {"protected": 0, "rpoBreached": 1, "unprotected": 0}
    # A Subtenant (Read*): the rollups of its account, its computer, its agent job.
    body = await gql(SUMMARY, PERIOD, token=world.token("A1", "Subtenant"))
    summary = body["data"]["monitoringSummary"]
    assert sessions(body) == (4, 1, 1)
    assert by_key(summary["jobsByLastResult"], "result") == {"SUCCESS": 1}
    assert by_key(summary["computersByAgentStatus"], "status") == {"HEALTHY": 1}
    assert summary["computers"] == {"protected": 0, "rpoBreached": 0, "unprotected": 1}
    for org, role in (
        ("A1", "Company Invoice Auditor"),
        ("Provider", "Service Provider Invoice Auditor"),
    ):
        body = await gql(SUMMARY, PERIOD, token=world.token(org, role))
        assert code(body) == "FORBIDDEN"
        assert body["data"]["monitoringSummary"] is None


async def test_company_filter_and_cross_tenant(world, fleet, gql) -> None:
    a1 = to_global_id("Company", world.orgs["A1"].id)
    b1 = to_global_id("Company", world.orgs["B1"].id)
    body = await gql(SUMMARY, {**PERIOD, "companyId": a1}, token=world.token(*GA))
    assert sessions(body) == (41, 4, 5)
    body = await gql(
        SUMMARY, {**PERIOD, "companyId": b1}, token=world.token("R1", "Service Provider User")
    )
    assert code(body) == "NOT_FOUND"
    body = await gql(SUMMARY, {**PERIOD, "companyId": b1}, token=world.token("A1", "Company Owner"))
    assert code(body) == "NOT_FOUND"


async def test_period_bounds_and_validation(world, fleet, gql) -> None:
    token = world.token(*GA)
    one_day = {"from": "2026-11-06", "to": "2026-11-06"}
    body = await gql(SUMMARY, one_day, token=token)
    assert sessions(body) == (20, 0, 3)
    year = {"from": "2026-01-01", "to": "2026-12-31"}  # 365 days: allowed, counts October too
    body = await gql(SUMMARY, year, token=token)
    assert sessions(body) == (47 + 100 + 9, 5 + 100 + 9, 6 + 100 + 9)
    body = await gql(SUMMARY, {"from": "2026-11-02", "to": "2026-11-01"}, token=token)
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "from"
    body = await gql(SUMMARY, {"from": "2025-01-01", "to": "2026-01-02"}, token=token)
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "to"
    body = await gql(SUMMARY, {"from": "2024-01-01", "to": "2024-12-31"}, token=token)  # 366
    assert sessions(body) == (0, 0, 0)


async def test_department_portal(db, gql, use_settings) -> None:
    use_settings(edition="enterprise")
    world = await build_world()
    await build_fleet(world)
    await rollup(world, "A1", "A1-East", DAY, 3, 2, 1)
    await rollup(world, "A1", "A1-Default", DAY, 1, 1, 1)
    body = await gql(SUMMARY, PERIOD, token=world.token("A1", "Department User"))
    assert sessions(body) == (3, 2, 1)
    body = await gql(SUMMARY, PERIOD, token=world.token("A1", "Department Owner"))
    assert sessions(body) == (4, 3, 2)
    body = await gql(SUMMARY, PERIOD, token=world.token("A1", "Chargeback Auditor"))
    assert code(body) == "FORBIDDEN"


async def test_products_without_a_row_are_not_counted(db, gql, use_settings) -> None:
    """The Department Portal has no Public Clouds or Microsoft 365 rows: their sessions and
    jobs stay out of a department's summary; the provider's staff count them."""
    use_settings(edition="enterprise")
    world = await build_world()
    await build_fleet(world)
    await rollup(world, "A1", "A1-Default", DAY, 1, 1, 1)
    await rollup(world, "A1", "A1-Default", DAY, 50, 0, 0, functionality="PUBLIC_CLOUDS")
    await rollup(world, "A1", "A1-Default", DAY, 0, 0, 70, functionality="MICROSOFT_365")
    body = await gql(SUMMARY, PERIOD, token=world.token("A1", "Department Owner"))
    assert sessions(body) == (1, 1, 1)
    # A1's jobs: an agent job per location (2), the provider-assigned agent job, the
    # Subtenant's, and the VBR backup, copy and replication jobs: 4 + 3 = 7 for the department.
    jobs = sum(j["count"] for j in body["data"]["monitoringSummary"]["jobsByLastResult"])
    assert jobs == 7
    company = {"companyId": to_global_id("Company", world.orgs["A1"].id)}
    body = await gql(SUMMARY, {**PERIOD, **company}, token=world.token(*GA))
    assert sessions(body) == (51, 1, 71)
    jobs = sum(j["count"] for j in body["data"]["monitoringSummary"]["jobsByLastResult"])
    assert jobs == 9  # and the Public Clouds policy and the Microsoft 365 job


async def test_aggregates_only(world, fleet, gql) -> None:
    token = world.token(*GA)
    await gql(SUMMARY, PERIOD, token=token)
    with count_queries() as queries:
        body = await gql(SUMMARY, PERIOD, token=token)
    assert sessions(body) == (47, 5, 6)
    # The session token, then three aggregates: rollup sums, jobs grouped by last result,
    # computers grouped by agent status with protection counts. No statement reads sessions.
    assert queries.count == 4, str(queries)
    assert not queries.matching("backup_job_sessions")
    assert len(queries.matching("GROUP BY")) == 2
    assert len(queries.matching("SUM(")) == 1
