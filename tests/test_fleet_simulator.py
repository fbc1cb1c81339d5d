"""The fleet simulator: deterministic records, the bulk loader's denormalised columns and rollups
against an independent recomputation from the records, and the set-based rebuild (a repair
tool) idempotent and limited to the companies asked for."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from tortoise.functions import Count

from app.authz.capabilities import JOB_FUNCTIONALITY
from app.models import (
    BackupJob,
    BackupJobSession,
    BackupResource,
    CloudRepository,
    ManagedComputer,
    RestorePoint,
    SessionRollup,
    Subtenant,
    TenantAccount,
    TenantAccountType,
    User,
)
from app.services.rollups import rebuild_protection, rebuild_rollups
from app.simulator.fleet import CompanySpec, FleetBatch, FleetSpec, as_json, generate
from app.simulator.loader import load_fleet
from tests.factories import World, password_hash

END = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)


def small_spec(companies: tuple[CompanySpec, ...], seed: int = 7, days: int = 30) -> FleetSpec:
    return FleetSpec(companies=companies, end=END, seed=seed, history_days=days)


def demo_like() -> FleetSpec:
    return small_spec(
        (
            CompanySpec(
                10, "Acme Corp", (100, 101), 40, "acme", "repo", subtenants=("s@acme.test",)
            ),
            CompanySpec(11, "Globex", (102,), 8),
        )
    )


def test_same_seed_gives_the_same_records_and_another_seed_others():
    first = [(b.company_id, b.location_id, b.records) for b in generate(demo_like())]
    again = [(b.company_id, b.location_id, b.records) for b in generate(demo_like())]
    assert first == again
    other = [b.records for b in generate(small_spec(demo_like().companies, seed=8))]
    assert [r for _, _, r in first] != other
    # A company's records do not depend on the others of the fleet.
    alone = [b.records for b in generate(small_spec(demo_like().companies[1:]))]
    assert alone == [r for c, _, r in first if c == 11]


def test_the_fleet_looks_like_a_real_one():
    spec = FleetSpec(
        companies=(CompanySpec(1, "Stark Industries", (1, 2, 3), 400, "stark", "repo"),),
        end=END,
        history_days=60,
    )
    counts: Counter[str] = Counter()
    results: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for batch in generate(spec):
        assert batch.count("computers") <= spec.batch_computers
        for name, records in batch.records.items():
            counts[name] += len(records)
        results.update(s["result"] for s in batch.records["sessions"])
        kinds.update(j["kind"] for j in batch.records["jobs"])
        statuses.update(a["status"] for a in batch.records["agents"])
        for s in batch.records["sessions"]:
            assert s["startedAt"] < s["endedAt"] < END
    assert counts["computers"] == counts["agents"] == 400
    assert counts["servers"] >= 1 and kinds["VBR_BACKUP"] >= 1 and kinds["AGENT"] == 400
    total = sum(results.values())
    assert total > 400 * 55
    assert 0.86 < results["SUCCESS"] / total < 0.93
    assert 0.05 < results["WARNING"] / total < 0.09
    assert 0.02 < results["FAILED"] / total < 0.06
    assert statuses["INACCESSIBLE"] >= 2 and statuses["HEALTHY"] > 300
    assert counts["restorePoints"] <= 400 * spec.retention_points
    assert counts["veeamOne"] in (0, 2 * 3 * spec.veeam_one_days)
    hostnames = [c["hostname"] for b in generate(spec) for c in b.records["computers"]]
    assert len(set(hostnames)) == 400
    assert any(h.startswith("STARK-WS-") for h in hostnames)


def test_as_json_gives_what_reporters_send_in_the_order_references_need():
    batch = next(b for b in generate(demo_like()) if b.count("computers"))
    payloads = as_json(batch, limit=100)
    assert all(len(p) == 2 and p["reportedAt"] == END.isoformat() for p in payloads)
    order = [next(k for k in p if k != "reportedAt") for p in payloads]
    assert order.index("jobs") < order.index("sessions") < order.index("restorePoints")
    assert order.index("computers") < order.index("jobs")
    sessions = [s for p in payloads for s in p.get("sessions", [])]
    assert all(len(p.get("sessions", [])) <= 100 for p in payloads)
    assert len(sessions) == batch.count("sessions") > 100
    first = batch.records["sessions"][0]
    assert datetime.fromisoformat(sessions[0]["startedAt"]) == first["startedAt"]
    assert sessions[0]["job"] == first["job"]


async def _fleet_world(world: World) -> tuple[FleetSpec, dict[str, int]]:
    """Two companies of the world get a fleet; A1 backs up partly to a cloud repository
    under a Subtenant's account."""
    a1, b1 = world.orgs["A1"], world.orgs["B1"]
    repo = await CloudRepository.create(name="repo", capacity_gb=10_000)
    account = await TenantAccount.create(
        company=a1, name="a1-tenant", type=TenantAccountType.STANDALONE, password_hash="x"
    )
    resource = await BackupResource.create(tenant_account=account, repository=repo, quota_gb=500)
    sub_user = await User.create(
        email="sub@example.test",
        name="sub",
        role="Subtenant",
        organization=a1,
        password_hash=password_hash(),
    )
    subtenant = await Subtenant.create(user=sub_user, resource=resource)
    spec = small_spec(
        (
            CompanySpec(
                a1.id,
                "A1 Corp",
                (world.locations["A1-Default"].id, world.locations["A1-East"].id),
                30,
                tenant_account="a1-tenant",
                repository="repo",
                subtenants=(sub_user.email,),
            ),
            CompanySpec(b1.id, "B1", (world.locations["B1-Default"].id,), 6),
        )
    )
    return spec, {
        "A1": a1.id,
        "B1": b1.id,
        "subtenant": subtenant.id,
        "resource": resource.id,
        sub_user.email: subtenant.id,
    }


def expected_from_records(batches: list[FleetBatch], ids: dict[str, int]) -> dict[str, Any]:
    """Rollups and protected-data columns computed from the records alone, by hand."""

    def subtenant(job: dict[str, Any]) -> int | None:
        email = job["target"].get("subtenant")
        return ids[email] if email else None

    rollups: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    computers: dict[tuple[int, str], tuple[datetime | None, int, int | None]] = {}
    last_result: dict[tuple[int, str], tuple[str, datetime | None]] = {}
    for b in batches:
        jobs = {j["uid"]: j for j in b.records["jobs"]}
        rps: dict[str, list[datetime]] = defaultdict(list)
        for rp in b.records["restorePoints"]:
            rps[rp["computer"]].append(rp["createdAt"])
        agent_job = {j["computer"]: j for j in jobs.values() if j.get("computer")}
        for c in b.records["computers"]:
            points = rps[c["uid"]]
            sub = subtenant(agent_job[c["uid"]])
            computers[b.company_id, c["uid"]] = (max(points, default=None), len(points), sub)
        for j in jobs.values():
            last_result[b.company_id, j["uid"]] = ("NONE", None)
        for s in sorted(b.records["sessions"], key=lambda s: s["startedAt"]):
            job = jobs[s["job"]]
            if s["result"] == "NONE":
                continue
            last_result[b.company_id, job["uid"]] = (s["result"], s["startedAt"])
            key = (
                b.company_id,
                b.location_id,
                subtenant(job) or 0,
                JOB_FUNCTIONALITY[job["kind"]].value,
                s["startedAt"].astimezone(UTC).date(),
            )
            row = rollups[key]
            row[("SUCCESS", "WARNING", "FAILED").index(s["result"])] += 1
            row[3] += s["processedBytes"]
    return {"rollups": dict(rollups), "computers": computers, "jobs": last_result}


async def rollup_table() -> dict[tuple, list[int]]:
    rows = await SessionRollup.all().values_list(
        "company_id", "location_id", "subtenant_id", "functionality", "day",
        "success", "warning", "failed", "processed_bytes",
    )  # fmt: skip
    return {tuple(r[:5]): list(r[5:]) for r in rows}


async def protection_table() -> tuple[dict, dict]:
    computers = {
        (c, u): (at, n, sub)
        for c, u, at, n, sub in await ManagedComputer.all().values_list(
            "company_id", "uid", "last_restore_point_at", "restore_point_count", "subtenant_id"
        )
    }
    jobs = {
        (c, u): (str(r), at)
        for c, u, r, at in await BackupJob.all().values_list(
            "company_id", "uid", "last_result", "last_run_at"
        )
    }
    return computers, jobs


async def test_loader_fills_every_denormalised_column_as_the_records_say(world):
    spec, ids = await _fleet_world(world)
    batches = list(generate(spec))
    stats = await load_fleet(batches)
    expected = expected_from_records(batches, ids)

    total = Counter()
    for b in batches:
        for name, recs in b.records.items():
            total[name] += len(recs)
    assert stats.rows["managed_computers"] == total["computers"] == 36
    assert await BackupJobSession.all().count() == stats.sessions == total["sessions"] > 36 * 30
    assert await RestorePoint.all().count() == total["restorePoints"]
    assert stats.company_ids == {ids["A1"], ids["B1"]}

    # Sessions carry their job's company, location, computer, subtenant and functionality.
    jobs = {j.id: j for j in await BackupJob.all()}
    mismatched = 0
    functionalities = Counter()
    for s in await BackupJobSession.all():
        job = jobs[s.job_id]
        assert job.functionality == JOB_FUNCTIONALITY[str(job.kind)].value
        functionalities[s.functionality] += 1
        mismatched += (
            s.company_id,
            s.location_id,
            s.computer_id,
            s.subtenant_id,
            s.functionality,
        ) != (
            job.company_id,
            job.location_id,
            job.computer_id,
            job.target_subtenant_id,
            job.functionality,
        )
    assert mismatched == 0
    assert functionalities["BACKUP_AGENTS"] > 0 and functionalities["BACKUP_AND_REPLICATION"] > 0
    assert await BackupJobSession.filter(subtenant_id=ids["subtenant"]).count() > 0

    assert await rollup_table() == expected["rollups"]
    assert stats.rollups == len(expected["rollups"])
    computers, job_results = await protection_table()
    assert computers == expected["computers"]
    assert job_results == expected["jobs"]
    # Some computers are past their RPO (no restore point for two days), some inaccessible.
    stale = END - timedelta(days=2)
    assert await ManagedComputer.filter(last_restore_point_at__lt=stale).count() >= 1
    assert await ManagedComputer.filter(subtenant_id=ids["subtenant"]).count() >= 1


async def test_rebuild_is_idempotent_and_limited_to_the_companies_asked(world):
    spec, ids = await _fleet_world(world)
    await load_fleet(generate(spec))
    rollups = await rollup_table()
    protection = await protection_table()

    assert await rebuild_rollups() == len(rollups)
    assert await rebuild_rollups() == len(rollups)
    assert await rollup_table() == rollups
    assert await rebuild_protection() == (36, await BackupJob.all().count())
    assert await protection_table() == protection

    # Damage both companies; repairing A1 only restores A1's rows and leaves B1's damage.
    await SessionRollup.filter(company_id=ids["A1"]).update(success=0)
    await SessionRollup.filter(company_id=ids["B1"]).delete()
    await ManagedComputer.all().update(restore_point_count=0, last_restore_point_at=None)
    await BackupJob.all().update(last_result="NONE", last_run_at=None)
    await rebuild_rollups([ids["A1"]])
    await rebuild_protection([ids["A1"]])
    after = await rollup_table()
    assert after == {k: v for k, v in rollups.items() if k[0] == ids["A1"]}
    computers, jobs = await protection_table()
    assert computers == {
        k: (v if k[0] == ids["A1"] else (None, 0, v[2])) for k, v in protection[0].items()
    }
    assert jobs == {
        k: (v if k[0] == ids["A1"] else ("NONE", None)) for k, v in protection[1].items()
    }
    await rebuild_rollups([ids["B1"]])
    assert await rollup_table() == rollups
    assert await rebuild_rollups([]) == 0
    assert await rollup_table() == rollups


async def test_rebuild_counts_by_the_utc_day_a_session_started(world):
    """A session started at 23:30 UTC and ended after midnight counts on its first day;
    a running one is not counted."""
    spec, ids = await _fleet_world(world)
    await load_fleet(generate(spec))
    session = await BackupJobSession.filter(company_id=ids["B1"]).order_by("id").first()
    assert session is not None
    started = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    await BackupJobSession.filter(id=session.id).update(
        started_at=started, ended_at=started + timedelta(hours=2), result="FAILED"
    )
    running = await BackupJobSession.filter(company_id=ids["B1"]).order_by("id").offset(1).first()
    assert running is not None
    await BackupJobSession.filter(id=running.id).update(
        started_at=datetime(2026, 2, 1, 1, 0, tzinfo=UTC), result="NONE", ended_at=None
    )
    await rebuild_rollups([ids["B1"]])
    jan31 = await SessionRollup.filter(company_id=ids["B1"], day=date(2026, 1, 31)).values_list(
        "success", "warning", "failed", "processed_bytes"
    )
    assert jan31 == [(0, 0, 1, session.processed_bytes)]
    assert not await SessionRollup.filter(company_id=ids["B1"], day=date(2026, 2, 1)).exists()


@pytest.mark.parametrize("empty", [True])
async def test_loading_nothing_writes_nothing(db, empty):
    stats = await load_fleet(iter(()))
    assert stats.sessions == 0 and stats.rollups == 0
    assert await SessionRollup.all().count() == 0


def test_rebuild_rollups_command_repairs_a_database(tmp_path, use_settings):
    import asyncio

    from click.testing import CliRunner
    from tortoise.context import TortoiseContext

    from app.cli import main
    from app.db import tortoise_config
    from app.models import Location, Organization, OrgKind

    settings = use_settings(database_url=f"sqlite://{tmp_path}/fleet.sqlite3")

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    async def with_orm(work):
        async with TortoiseContext() as ctx:
            await ctx.init(config=tortoise_config(settings))
            return await work()

    async def seed() -> tuple[int, dict]:
        company = await Organization.create(kind=OrgKind.COMPANY, name="Acme")
        location = await Location.create(company=company, name="HQ", is_default=True)
        spec = small_spec((CompanySpec(company.id, "Acme", (location.id,), 5),), days=10)
        await load_fleet(generate(spec))
        rollups = await rollup_table()
        await SessionRollup.all().delete()
        await ManagedComputer.all().update(restore_point_count=0)
        return company.id, rollups

    run("migrate")
    company_id, rollups = asyncio.run(with_orm(seed))
    output = run("rebuild-rollups", "--company", str(company_id))
    assert output == f"rebuilt {len(rollups)} rollup rows; refreshed 5 computers and 5 jobs\n"
    assert asyncio.run(with_orm(rollup_table)) == rollups
    counts = asyncio.run(
        with_orm(lambda: ManagedComputer.all().values_list("restore_point_count", flat=True))
    )
    assert all(n > 0 for n in counts)


async def snapshot() -> dict[str, Any]:
    """Every row the fleet writes, keyed by natural keys, without ids or write times."""
    from app.models import BackupAgent, BackupServer, VeeamOneRecord

    computer_uid = dict(await ManagedComputer.all().values_list("id", "uid"))
    out: dict[str, Any] = {"rollups": await rollup_table()}
    out["computers"] = {
        (r.pop("company_id"), r.pop("uid")): r
        for r in await ManagedComputer.all().values(
            "company_id", "uid", "location_id", "hostname", "os_family", "os_name",
            "ip_addresses", "agent_status", "last_heartbeat_at", "subtenant_id",
            "last_restore_point_at", "restore_point_count", "reported_at",
        )
    }  # fmt: skip
    out["agents"] = {
        r.pop("computer__uid"): r
        for r in await BackupAgent.all().values(
            "computer__uid", "platform", "edition", "version", "policy", "status", "reported_at"
        )
    }
    out["servers"] = {
        (r.pop("company_id"), r.pop("uid")): r
        for r in await BackupServer.all().values(
            "company_id", "uid", "location_id", "kind", "name", "version", "status",
            "last_heartbeat_at", "reported_at",
        )
    }  # fmt: skip
    out["jobs"] = {
        (r.pop("company_id"), r.pop("uid")): r
        for r in await BackupJob.all().values(
            "company_id", "uid", "location_id", "name", "kind", "functionality", "computer__uid",
            "server__uid", "target_kind", "target_resource_id", "target_subtenant_id",
            "target_name", "assigned_by_provider", "schedule", "enabled", "run_state",
            "pending_command", "last_result", "last_run_at", "reported_at",
        )
    }  # fmt: skip
    sessions = {}
    for r in await BackupJobSession.all().values(
        "job__uid", "uid", "company_id", "location_id", "computer_id", "subtenant_id",
        "functionality", "result", "started_at", "ended_at", "processed_bytes",
        "transferred_bytes", "warnings", "messages",
    ):  # fmt: skip
        r["computer"] = computer_uid.get(r.pop("computer_id"))
        sessions[r.pop("job__uid"), r.pop("uid")] = r
    out["sessions"] = sessions
    out["restore_points"] = {
        (r.pop("computer__uid"), r.pop("uid")): r
        for r in await RestorePoint.all().values(
            "computer__uid", "uid", "job__uid", "company_id", "created_at", "size_bytes",
            "target_kind",
        )
    }  # fmt: skip
    out["veeam_one"] = {
        (r.pop("server__uid"), r.pop("uid")): r
        for r in await VeeamOneRecord.all().values(
            "server__uid", "uid", "company_id", "location_id", "object_name", "metric", "value",
            "severity", "message", "recorded_at",
        )
    }  # fmt: skip
    return out


async def test_ingestion_and_the_loader_write_the_same_rows(world):
    """The same generated fleet, reported through ingestion (in batches of at most 1,000
    records per list) and written by the bulk loader, gives the same rows and rollups."""
    ingestion = pytest.importorskip("app.services.ingestion")
    from app.models import AgentKey, BackupServer

    spec, _ = await _fleet_world(world)
    spec = small_spec(spec.companies, days=15)
    batches = list(generate(spec))
    keys: dict[tuple[int, int], AgentKey] = {}
    for batch in batches:
        where = (batch.company_id, batch.location_id)
        if where not in keys:
            keys[where] = await AgentKey.create(
                company_id=batch.company_id,
                location_id=batch.location_id,
                name="fleet",
                prefix=f"k{len(keys)}",
                key_hash="0" * 64,
            )
        for payload in as_json(batch, limit=1_000):
            result = await ingestion.ingest(keys[where], payload)
            assert result.rejected == [], result.rejected[:3]
    ingested = await snapshot()
    assert len(ingested["sessions"]) == sum(b.count("sessions") for b in batches) > 500
    assert ingested["rollups"] and ingested["veeam_one"] is not None

    await ManagedComputer.all().delete()
    await BackupServer.all().delete()
    await SessionRollup.all().delete()
    assert await BackupJobSession.all().count() == 0
    await load_fleet(generate(spec))
    loaded = await snapshot()
    for table, rows in ingested.items():
        assert loaded[table] == rows, table


async def test_the_demo_seeds_a_realistic_fleet_once(db, gql, settings):
    from app.demo import seed_demo
    from app.models import AgentKey, Organization
    from app.simulator.demo_fleet import DEMO_DAYS, DEMO_FLEET, demo_agent_key, seed_demo_fleet

    assert await seed_demo() is True
    total = sum(DEMO_FLEET.values())
    assert 300 <= total == await ManagedComputer.all().count()
    sessions = await BackupJobSession.all().count()
    assert sessions > total * (DEMO_DAYS - 5)
    by_company = dict(
        await Organization.filter(managed_computers__id__isnull=False)
        .group_by("name")
        .annotate(n=Count("managed_computers__id"))
        .values_list("name", "n")
    )
    assert by_company == DEMO_FLEET
    # Both locations of every company hold computers; rollups span the whole history.
    locations = await ManagedComputer.all().values_list("location_id", flat=True)
    assert len(set(locations)) == 12
    days = await SessionRollup.all().values_list("day", flat=True)
    assert len(set(days)) >= DEMO_DAYS
    # Every company's Subtenant has computers of its own backing up to the cloud.
    subtenants = await Subtenant.all().count()
    assert subtenants == 6
    owners = await ManagedComputer.filter(subtenant_id__isnull=False).values_list(
        "subtenant_id", flat=True
    )
    assert len(set(owners)) == subtenants
    assert await AgentKey.filter(prefix=demo_agent_key("Acme Corp")[0]).exists()

    # Seeding again adds nothing.
    assert await seed_demo() is False
    assert await seed_demo_fleet() is None
    assert await BackupJobSession.all().count() == sessions
    assert await ManagedComputer.all().count() == total

    login = await gql(
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
        {"e": "owner@acme.demo", "p": settings.demo_password},
    )
    token = login["data"]["login"]["token"]
    today = datetime.now(UTC).date()
    body = await gql(
        """query($from: Date!, $to: Date!) {
          protectedComputers(first: 5) { totalCount nodes { hostname companyName rpoStatus } }
          breached: protectedComputers(first: 50, filter: {rpoStatus: BREACHED}) { totalCount }
          monitoringSummary(from: $from, to: $to) { sessions { success warning failed } }
        }""",
        {"from": str(today - timedelta(days=30)), "to": str(today)},
        token=token,
    )
    assert "errors" not in body, body
    data = body["data"]
    assert data["protectedComputers"]["totalCount"] == DEMO_FLEET["Acme Corp"]
    assert {n["companyName"] for n in data["protectedComputers"]["nodes"]} == {"Acme Corp"}
    assert data["breached"]["totalCount"] >= 1
    counts = data["monitoringSummary"]["sessions"]
    assert counts["success"] > 10 * counts["failed"] > 0 and counts["warning"] > 0
