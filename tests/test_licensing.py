"""License usage: the counting rules, the idempotent collection job, sums per reseller, the
matrix (only the Reseller Portal's Licensing row) and row scope."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from app.models import (
    AgentEdition,
    AgentPlatform,
    AuditEntry,
    BackupAgent,
    BackupJob,
    BackupJobKind,
    BackupJobSession,
    Job,
    JobState,
    ManagedComputer,
    Organization,
)
from app.models.licensing import LicensedProduct, LicenseUsage
from app.services import jobs, licensing
from tests.conftest import ON_POSTGRES
from tests.querycount import count_queries
from tests.test_allocations import code, gid

OCT = date(2026, 10, 1)
IN_OCT = datetime(2026, 10, 15, 22, 0, tzinfo=UTC)
IN_SEP = datetime(2026, 9, 30, 23, 59, 59, tzinfo=UTC)
ADMIN = ("Provider", "Service Provider Global Administrator")

USAGE = """query($month: Date!, $companyId: ID) { licenseUsage(month: $month, companyId: $companyId,
  first: 100) { totalCount nodes { companyId companyName product month units } } }"""
BY_RESELLER = """query($month: Date!) { licenseUsageByReseller(month: $month) {
  organizationId organizationName organizationType product month units companies } }"""
COLLECT = """mutation($month: Date) { licenseUsageCollect(month: $month) {
  id kind state params } }"""


class Inventory:
    def __init__(self, world) -> None:
        self.world = world
        self.serial = 0

    def _uid(self, stem: str) -> str:
        self.serial += 1
        return f"{stem}-{self.serial}"

    def _org(self, key: str) -> Organization:
        return self.world.orgs[key]

    def _location(self, key: str) -> int:
        return self.world.locations[f"{key}-Default"].id

    async def computer(
        self, key: str, edition: AgentEdition | None, sessions: list[datetime]
    ) -> ManagedComputer:
        uid = self._uid(f"{key}-pc")
        computer = await ManagedComputer.create(
            company=self._org(key), location_id=self._location(key), uid=uid, hostname=uid
        )
        if edition is not None:
            await BackupAgent.create(
                computer=computer, platform=AgentPlatform.WINDOWS, edition=edition
            )
        job = await self.job(key, BackupJobKind.AGENT, sessions, computer=computer)
        assert job.computer_id == computer.id  # type: ignore[attr-defined]
        return computer

    async def job(
        self,
        key: str,
        kind: BackupJobKind,
        sessions: list[datetime],
        computer: ManagedComputer | None = None,
    ) -> BackupJob:
        uid = self._uid(f"{key}-{kind.value}")
        job = await BackupJob.create(
            company=self._org(key),
            location_id=self._location(key),
            uid=uid,
            name=uid,
            kind=kind,
            functionality="BACKUP_AGENTS",
            computer=computer,
        )
        for i, at in enumerate(sessions):
            await BackupJobSession.create(
                job=job,
                uid=f"{uid}-s{i}",
                company_id=job.company_id,  # type: ignore[attr-defined]
                location_id=job.location_id,  # type: ignore[attr-defined]
                computer_id=computer.id if computer else None,
                functionality=job.functionality,
                started_at=at,
            )
        return job


async def build_usage(world) -> Inventory:
    inv = Inventory(world)
    S, W = AgentEdition.SERVER, AgentEdition.WORKSTATION
    # A1: agents.
    await inv.computer("A1", S, [IN_OCT, IN_OCT + timedelta(days=1)])  # 1 server (2 sessions)
    await inv.computer("A1", S, [IN_SEP])  # September only: not October's
    await inv.computer("A1", S, [datetime(2026, 10, 1, tzinfo=UTC)])  # first instant: counted
    await inv.computer("A1", S, [datetime(2026, 11, 1, tzinfo=UTC)])  # next month: not counted
    await inv.computer("A1", W, [IN_OCT])  # 1 workstation
    await inv.computer("A1", None, [IN_OCT])  # no backup agent: no agent license
    await inv.computer("A1", W, [])  # never backed up
    # A1: server jobs.
    await inv.job("A1", BackupJobKind.VBR_BACKUP, [IN_OCT, IN_OCT, IN_OCT])
    await inv.job("A1", BackupJobKind.REPLICATION, [IN_OCT])
    await inv.job("A1", BackupJobKind.BACKUP_COPY, [IN_OCT])  # copies: not counted
    await inv.job("A1", BackupJobKind.VBR_BACKUP, [IN_SEP])
    await inv.job("A1", BackupJobKind.PUBLIC_CLOUD_POLICY, [IN_OCT])
    await inv.job("A1", BackupJobKind.MICROSOFT_365, [IN_OCT])
    await inv.job("A1", BackupJobKind.MICROSOFT_365, [IN_OCT])
    # Others.
    await inv.computer("A2", S, [IN_OCT])
    await inv.job("B1", BackupJobKind.MICROSOFT_365, [IN_OCT])
    await inv.computer("P1", W, [IN_OCT])
    await inv.computer("P1", W, [IN_OCT])
    return inv


EXPECTED_OCT = {
    ("A1", "AGENT_SERVER"): 2,
    ("A1", "AGENT_WORKSTATION"): 1,
    ("A1", "VBR_WORKLOAD"): 2,
    ("A1", "PUBLIC_CLOUD_WORKLOAD"): 1,
    ("A1", "MICROSOFT_365_USER"): 2,
    ("A2", "AGENT_SERVER"): 1,
    ("B1", "MICROSOFT_365_USER"): 1,
    ("P1", "AGENT_WORKSTATION"): 2,
}


async def stored(world, month: date = OCT) -> dict[tuple[str, str], int]:
    names = {org.id: key for key, org in world.orgs.items()}
    rows = await LicenseUsage.filter(month=month).values_list("company_id", "product", "units")
    return {(names[c], str(p)): u for c, p, u in rows}


async def run_collect(params: dict, organization: Organization | None = None) -> Job:
    from workers.actors.jobs import execute

    job, _ = await jobs.create(None, licensing.COLLECT_KIND, organization, params)
    assert await execute(job.id, "test-worker") == "succeeded"
    return await Job.get(id=job.id)


async def test_counting_rules_are_exact(world, dispatched) -> None:
    await build_usage(world)
    for product in LicensedProduct:
        counts = await licensing.count_units(product, OCT)
        names = {org.id: key for key, org in world.orgs.items()}
        assert {names[c]: n for c, n in counts.items()} == {
            org: n for (org, prod), n in EXPECTED_OCT.items() if prod == product.value
        }, product
    job = await run_collect({"month": "2026-10-20"})
    assert job.state == JobState.SUCCEEDED
    assert await stored(world) == EXPECTED_OCT
    assert job.result["months"] == ["2026-10-01"]
    assert job.result["done"]["2026-10-01/AGENT_SERVER"] == {
        "companies": 2,
        "units": 3,
        "written": 2,
    }
    # September: the one computer and the one job that ran then.
    await run_collect({"month": "2026-09-01"})
    assert await stored(world, date(2026, 9, 1)) == {
        ("A1", "AGENT_SERVER"): 1,
        ("A1", "VBR_WORKLOAD"): 1,
    }


async def test_collect_is_idempotent_and_keeps_the_months_highest_count(world, dispatched) -> None:
    inv = await build_usage(world)
    await run_collect({"month": "2026-10-01"})
    before = (
        await LicenseUsage.filter(month=OCT)
        .order_by("id")
        .values_list("id", "company_id", "product", "units", "updated_at")
    )
    with count_queries() as queries:
        await run_collect({"month": "2026-10-01"})
    after = (
        await LicenseUsage.filter(month=OCT)
        .order_by("id")
        .values_list("id", "company_id", "product", "units", "updated_at")
    )
    assert after == before
    assert queries.matching('INSERT INTO "license_usage"') == []
    assert queries.matching('UPDATE "license_usage"') == []
    # A lower count later in the month (sessions purged) does not lower the month's units.
    await BackupJobSession.filter(company_id=world.orgs["P1"].id).delete()
    await run_collect({"month": "2026-10-01"})
    assert (await stored(world))[("P1", "AGENT_WORKSTATION")] == 2
    # A higher one raises it, in one upsert for the product.
    await inv.computer("A2", AgentEdition.SERVER, [IN_OCT])
    await inv.computer("B1", AgentEdition.SERVER, [IN_OCT])
    with count_queries() as queries:
        job = await run_collect({"month": "2026-10-01"})
    assert len(queries.matching('INSERT INTO "license_usage"')) == 1
    assert job.result["done"]["2026-10-01/AGENT_SERVER"]["written"] == 2
    now = await stored(world)
    assert (now[("A2", "AGENT_SERVER")], now[("B1", "AGENT_SERVER")]) == (2, 1)
    assert now[("A1", "AGENT_SERVER")] == 2


async def test_a_resellers_collection_counts_its_companies_only(world, dispatched) -> None:
    await build_usage(world)
    await run_collect({"month": "2026-10-01"}, world.orgs["R1"])
    assert await stored(world) == {k: v for k, v in EXPECTED_OCT.items() if k[0] in ("A1", "A2")}


def test_the_daily_run_finishes_the_previous_month_on_the_first() -> None:
    first = datetime(2026, 11, 1, 0, 20, tzinfo=UTC)
    assert licensing.months_to_collect(None, first) == [date(2026, 10, 1), date(2026, 11, 1)]
    assert licensing.months_to_collect(None, first + timedelta(days=1)) == [date(2026, 11, 1)]
    assert licensing.months_to_collect("2026-02-28") == [date(2026, 2, 1)]
    assert licensing.month_bounds(date(2026, 12, 1)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


async def test_usage_per_company_and_per_reseller(world, gql, dispatched) -> None:
    await build_usage(world)
    await run_collect({"month": "2026-10-01"})
    body = await gql(USAGE, {"month": "2026-10-31"}, token=world.token(*ADMIN))
    page = body["data"]["licenseUsage"]
    assert page["totalCount"] == len(EXPECTED_OCT)
    got = {(n["companyName"], n["product"]): n["units"] for n in page["nodes"]}
    assert got == EXPECTED_OCT
    assert {n["month"] for n in page["nodes"]} == {"2026-10-01"}
    body = await gql(
        USAGE,
        {"month": "2026-10-01", "companyId": gid("Company", world.orgs["B1"].id)},
        token=world.token(*ADMIN),
    )
    assert [(n["companyName"], n["units"]) for n in body["data"]["licenseUsage"]["nodes"]] == [
        ("B1", 1)
    ]
    body = await gql(BY_RESELLER, {"month": "2026-10-01"}, token=world.token(*ADMIN))
    sums = {
        (r["organizationName"], r["organizationType"], r["product"]): (r["units"], r["companies"])
        for r in body["data"]["licenseUsageByReseller"]
    }
    assert sums == {
        ("Provider", "ServiceProvider", "AGENT_WORKSTATION"): (2, 1),
        ("R1", "Reseller", "AGENT_SERVER"): (3, 2),
        ("R1", "Reseller", "AGENT_WORKSTATION"): (1, 1),
        ("R1", "Reseller", "VBR_WORKLOAD"): (2, 1),
        ("R1", "Reseller", "PUBLIC_CLOUD_WORKLOAD"): (1, 1),
        ("R1", "Reseller", "MICROSOFT_365_USER"): (2, 1),
        ("R2", "Reseller", "MICROSOFT_365_USER"): (1, 1),
    }
    assert [(r["organizationName"], r["product"]) for r in body["data"]["licenseUsageByReseller"]][
        :3
    ] == [
        ("Provider", "AGENT_WORKSTATION"),
        ("R1", "AGENT_SERVER"),
        ("R1", "AGENT_WORKSTATION"),
    ]
    r1 = next(r for r in body["data"]["licenseUsageByReseller"] if r["organizationName"] == "R1")
    assert r1["organizationId"] == gid("Reseller", world.orgs["R1"].id)


async def test_a_reseller_sees_its_companies_only(world, gql, dispatched) -> None:
    await build_usage(world)
    await run_collect({"month": "2026-10-01"})
    token = world.token("R1", "Service Provider Global Administrator")
    body = await gql(USAGE, {"month": "2026-10-01"}, token=token)
    names = {n["companyName"] for n in body["data"]["licenseUsage"]["nodes"]}
    assert names == {"A1", "A2"}
    body = await gql(BY_RESELLER, {"month": "2026-10-01"}, token=token)
    assert {r["organizationName"] for r in body["data"]["licenseUsageByReseller"]} == {"R1"}
    assert sum(r["units"] for r in body["data"]["licenseUsageByReseller"]) == 9
    body = await gql(
        USAGE,
        {"month": "2026-10-01", "companyId": gid("Company", world.orgs["B1"].id)},
        token=token,
    )
    assert code(body) == "NOT_FOUND"


@pytest.mark.parametrize(
    "who",
    [
        ("A1", "Company Owner"),
        ("A1", "Company Administrator"),
        ("A1", "Location User"),
        ("Provider", "Service Provider Operator"),
        ("Provider", "Service Provider Invoice Auditor"),
        ("R1", "Service Provider User"),
    ],
)
async def test_roles_without_the_licensing_row_are_forbidden(world, gql, dispatched, who) -> None:
    token = world.token(*who)
    for document, variables in (
        (USAGE, {"month": "2026-10-01"}),
        (BY_RESELLER, {"month": "2026-10-01"}),
        (COLLECT, {}),
    ):
        body = await gql(document, variables, token=token)
        assert code(body) == "FORBIDDEN", (who, document, body)
    assert await Job.all().count() == 0


async def test_department_portal_is_forbidden(use_settings, db, gql, dispatched) -> None:
    from tests.factories import build_world

    use_settings(edition="enterprise")
    world = await build_world()
    for role in ("Department Owner", "Department Administrator"):
        body = await gql(USAGE, {"month": "2026-10-01"}, token=world.token("A1", role))
        assert code(body) == "FORBIDDEN"
        body = await gql(COLLECT, {}, token=world.token("A1", role))
        assert code(body) == "FORBIDDEN"


async def test_collect_mutation_starts_an_audited_job_for_the_callers_tree(
    world, gql, dispatched
) -> None:
    await build_usage(world)
    token = world.token("R1", "Service Provider Administrator")
    body = await gql(COLLECT, {"month": "2026-10-09"}, token=token)
    job = body["data"]["licenseUsageCollect"]
    assert (job["kind"], job["state"], job["params"]) == (
        "licensing.collect",
        "QUEUED",
        {"month": "2026-10-01"},
    )
    row = await Job.get()
    assert row.organization_id == world.orgs["R1"].id  # type: ignore[attr-defined]
    assert dispatched == [row.id]
    entry = await AuditEntry.get(action="jobCreate")
    assert (entry.outcome, entry.object_id) == ("SUCCESS", str(row.id))
    body = await gql(COLLECT, {"month": "2999-01-01"}, token=token)
    assert code(body) == "BAD_USER_INPUT"
    from workers.actors.jobs import execute

    assert await execute(row.id, "test-worker") == "succeeded"
    assert set(await stored(world)) == {k for k in EXPECTED_OCT if k[0] in ("A1", "A2")}


async def test_usage_list_query_count_is_constant(world, gql, dispatched) -> None:
    await build_usage(world)
    await run_collect({"month": "2026-10-01"})
    token = world.token(*ADMIN)
    counts = []
    for first in (1, 8):
        with count_queries() as queries:
            body = await gql(
                'query($first: Int) { licenseUsage(month: "2026-10-01", first: $first) '
                "{ nodes { companyName units } } }",
                {"first": first},
                token=token,
            )
        assert len(body["data"]["licenseUsage"]["nodes"]) == first
        counts.append(queries.count)
    assert counts[0] == counts[1]


def test_the_daily_schedule_is_on_in_real_settings_and_off_in_tests(monkeypatch) -> None:
    from dataclasses import replace

    from app.settings import load_settings
    from tests.conftest import TEST_SETTINGS
    from workers.schedules import LICENSING, default_schedules

    assert LICENSING not in [s.name for s in default_schedules(TEST_SETTINGS)]
    on = replace(TEST_SETTINGS, schedule_licensing="20 0 * * *")
    daily = next(s for s in default_schedules(on) if s.name == LICENSING)
    assert daily.job_kind == "licensing.collect"
    tick = daily.latest_tick(datetime(2026, 11, 3, 12, 0, tzinfo=UTC))
    assert tick == datetime(2026, 11, 3, 0, 20, tzinfo=UTC)
    monkeypatch.delenv("TENANTRY_SCHEDULE_LICENSING", raising=False)
    assert load_settings().schedule_licensing == "20 0 * * *"


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_concurrent_collections_of_a_month_agree(world) -> None:
    await build_usage(world)
    results = await asyncio.gather(
        *[licensing.collect_product(p, OCT) for p in LicensedProduct for _ in range(4)]
    )
    assert sum(r.written for r in results) == len(EXPECTED_OCT)
    assert await stored(world) == EXPECTED_OCT
