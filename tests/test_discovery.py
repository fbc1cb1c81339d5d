"""Discovery rules: validation (CIDR and a-b IPv4 ranges, at most 65,536 addresses, an AD
query, a cron schedule, a location of the company), runs as `discovery.run` jobs end to end on
the in-process broker (computers registered once, re-runs and resumed runs duplicate nothing,
a computer an agent reported is not registered again, one run per rule at a time), scheduled
runs, driver failures, and the matrix for every principal. The real-worker test runs a
discovery and a backup report in a `tenantry worker`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter

from app.auth.authenticate import principal_for_bearer
from app.authz.capabilities import DISCOVERY_RULES
from app.authz.engine import allows
from app.authz.matrix import Action
from app.graphql.ids import to_global_id
from app.integrations import override_agents
from app.integrations.backup_agents import AgentUnavailable, FoundHost
from app.integrations.simulated_agents import SimulatedAgents
from app.models import AuditEntry, DiscoveryRule, Job, JobState, ManagedComputer
from app.services import discovery
from tests.conftest import ON_POSTGRES, PG_URL, REDIS_URL, TEST_SETTINGS
from workers.broker import setup
from workers.runtime import run_queued_inline

OWNER = "Company Owner"
GA = "Service Provider Global Administrator"
RULE = "id name kind ranges adQuery schedule enabled lastRunAt lastResult lastRunJobId viewerCanUpdate viewerCanDelete"
CREATE = (
    "mutation($input: DiscoveryRuleCreateInput!) { discoveryRuleCreate(input: $input) { "
    + RULE
    + " } }"
)
UPDATE = (
    "mutation($input: DiscoveryRuleUpdateInput!) { discoveryRuleUpdate(input: $input) { "
    + RULE
    + " } }"
)
DELETE = "mutation($id: ID!) { discoveryRuleDelete(id: $id) { deletedId } }"
RUN = "mutation($id: ID!) { discoveryRuleRun(id: $id) { created job { id state kind } rule { id lastRunJobId } } }"
ONE = "query($id: ID!) { discoveryRule(id: $id) { " + RULE + " } }"
LIST = "query($filter: DiscoveryRuleFilter) { discoveryRules(filter: $filter) { totalCount nodes { id name } } }"
RANGES = ["10.0.0.0/24", "10.0.1.10 - 10.0.1.50"]


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


def field(body: dict[str, Any]) -> str | None:
    return body["errors"][0]["extensions"].get("field")


@pytest.fixture
def broker():
    from app.services import jobs

    previous = jobs._dispatcher
    b = setup(TEST_SETTINGS, stub=True)
    yield b
    jobs.set_dispatcher(previous)
    override_agents(None)


def scan_input(world, **changes: Any) -> dict[str, Any]:
    return {
        "locationId": gid("Location", world.locations["A1-East"].id),
        "name": "Office LAN",
        "kind": "NETWORK_SCAN",
        "ranges": RANGES,
        "credentialsRef": "vault:lan-admin",
        "schedule": "0 2 * * *",
        **changes,
    }


async def create_rule(world, gql, token: str | None = None, **changes: Any) -> dict[str, Any]:
    body = await gql(
        CREATE, {"input": scan_input(world, **changes)}, token=token or world.token("A1", OWNER)
    )
    assert "errors" not in body, body
    return body["data"]["discoveryRuleCreate"]


async def test_create_validates_ranges_query_schedule_and_location(world, gql):
    token = world.token("A1", OWNER)
    rule = await create_rule(world, gql)
    assert rule["ranges"] == ["10.0.0.0/24", "10.0.1.10-10.0.1.50"]
    assert (rule["viewerCanUpdate"], rule["viewerCanDelete"]) == (True, True)
    cases = [
        ({"ranges": ["10.0.0.300/24"]}, "BAD_USER_INPUT", "input.ranges.0"),
        ({"ranges": ["10.0.0.1", "10.0.0.9-10.0.0.2"]}, "BAD_USER_INPUT", "input.ranges.1"),
        ({"ranges": ["fe80::/64"]}, "BAD_USER_INPUT", "input.ranges.0"),
        ({"ranges": ["10.0.0.0/16", "10.1.0.0/32"]}, "BAD_USER_INPUT", "input.ranges"),
        ({"ranges": []}, "BAD_USER_INPUT", "input.ranges"),
        ({"adQuery": "(objectClass=computer)"}, "BAD_USER_INPUT", "input.adQuery"),
        ({"kind": "ACTIVE_DIRECTORY", "ranges": None}, "BAD_USER_INPUT", "input.adQuery"),
        ({"kind": "ACTIVE_DIRECTORY", "adQuery": "(cn=*)"}, "BAD_USER_INPUT", "input.ranges"),
        ({"schedule": "hourly"}, "BAD_USER_INPUT", "input.schedule"),
        ({"name": " "}, "BAD_USER_INPUT", "input.name"),
        ({"name": "Office LAN"}, "CONFLICT", "input.name"),
        (
            {"locationId": gid("Location", world.locations["A2-Default"].id)},
            "NOT_FOUND",
            "input.locationId",
        ),
    ]
    for changes, expected, where in cases:
        values = {"name": "Other", **changes}
        body = await gql(CREATE, {"input": scan_input(world, **values)}, token=token)
        assert (code(body), field(body)) == (expected, where), (changes, body)
    # Exactly 65,536 addresses is allowed; an AD rule takes its query.
    big = await create_rule(world, gql, name="Whole /16", ranges=["172.16.0.0/16"])
    assert big["ranges"] == ["172.16.0.0/16"]
    ad = await create_rule(
        world,
        gql,
        name="Domain",
        kind="ACTIVE_DIRECTORY",
        ranges=None,
        adQuery="(objectClass=computer)",
    )
    assert (ad["kind"], ad["ranges"], ad["adQuery"]) == (
        "ACTIVE_DIRECTORY",
        [],
        "(objectClass=computer)",
    )

    # Updates: a location of another company is refused; the kind's fields are checked again.
    body = await gql(
        UPDATE,
        {
            "input": {
                "id": rule["id"],
                "locationId": gid("Location", world.locations["A2-Default"].id),
            }
        },
        token=world.token("R1", GA),
    )
    assert (code(body), field(body)) == ("BAD_USER_INPUT", "input.locationId")
    body = await gql(UPDATE, {"input": {"id": rule["id"], "ranges": ["10.9.0.0/8"]}}, token=token)
    assert (code(body), field(body)) == ("BAD_USER_INPUT", "input.ranges")
    body = await gql(UPDATE, {"input": {"id": rule["id"], "name": "Domain"}}, token=token)
    assert code(body) == "CONFLICT"
    body = await gql(
        UPDATE,
        {
            "input": {
                "id": rule["id"],
                "ranges": ["192.168.1.0/28"],
                "schedule": "",
                "enabled": False,
            }
        },
        token=token,
    )
    assert body["data"]["discoveryRuleUpdate"]["ranges"] == ["192.168.1.0/28"]
    assert (
        body["data"]["discoveryRuleUpdate"]["schedule"],
        body["data"]["discoveryRuleUpdate"]["enabled"],
    ) == ("", False)
    outcomes = await AuditEntry.filter(action="discoveryRuleCreate").values_list(
        "outcome", flat=True
    )
    assert sorted(set(outcomes)) == ["FAILURE", "SUCCESS"] and outcomes.count("SUCCESS") == 3


async def simulated(rule_id: int, ranges: Sequence[str]) -> list[FoundHost]:
    return await SimulatedAgents().scan_network(ranges, "", rule_id=rule_id)


async def test_a_run_registers_found_computers_once(world, gql, broker):
    token = world.token("A1", OWNER)
    rule = await create_rule(world, gql)
    pk = (await DiscoveryRule.get(name="Office LAN")).id
    hosts = await simulated(pk, ["10.0.0.0/24", "10.0.1.10-10.0.1.50"])
    assert 0 < len(hosts) < 100

    body = await gql(RUN, {"id": rule["id"]}, token=token)
    run = body["data"]["discoveryRuleRun"]
    assert run["created"] is True and run["job"]["state"] == "QUEUED"
    assert run["rule"]["lastRunJobId"] == run["job"]["id"]
    # A second request while the run is queued returns the same job.
    again = (await gql(RUN, {"id": rule["id"]}, token=token))["data"]["discoveryRuleRun"]
    assert (again["created"], again["job"]["id"]) == (False, run["job"]["id"])
    assert await run_queued_inline(broker) == 1

    computers = await ManagedComputer.filter(discovered_by_id=pk).order_by("uid")
    assert sorted(c.uid for c in computers) == sorted(f"discovered:{h.address}" for h in hosts)
    assert {c.location_id for c in computers} == {world.locations["A1-East"].id}  # type: ignore[attr-defined]
    assert {c.agent_status.value for c in computers} == {"UNKNOWN"}
    assert computers[0].ip_addresses == [computers[0].uid.removeprefix("discovered:")]
    view = (await gql(ONE, {"id": rule["id"]}, token=token))["data"]["discoveryRule"]
    assert view["lastResult"] == {"found": len(hosts), "new": len(hosts), "known": 0, "errors": []}
    assert view["lastRunAt"] is not None

    # Run again: a new job, nothing duplicated, everything known.
    second = (await gql(RUN, {"id": rule["id"]}, token=token))["data"]["discoveryRuleRun"]
    assert second["created"] is True and second["job"]["id"] != run["job"]["id"]
    await run_queued_inline(broker)
    assert await ManagedComputer.filter(discovered_by_id=pk).count() == len(hosts)
    job = await Job.get(id=(await DiscoveryRule.get(id=pk)).last_run_job_id)  # type: ignore[attr-defined]
    assert (job.state, job.result) == (
        JobState.SUCCEEDED,
        {"found": len(hosts), "new": 0, "known": len(hosts), "errors": []},
    )
    runs = (
        await AuditEntry.filter(action="discoveryRuleRun", outcome="SUCCESS")
        .order_by("id")
        .values_list("details", flat=True)
    )
    assert [d["deduplicated"] for d in runs] == [False, True, False]  # type: ignore[index]


async def test_a_run_does_not_register_a_computer_an_agent_reported(world, gql, broker):
    """The agent reported one of the hosts first (by another hostname case): the run counts it
    as known and links it to the rule, and registers the others."""
    from app.models import AgentKey
    from app.services import ingestion

    token = world.token("A1", OWNER)
    rule = await create_rule(world, gql)
    pk = (await DiscoveryRule.get(name="Office LAN")).id
    hosts = await simulated(pk, RANGES)
    key = await AgentKey.create(
        company=world.orgs["A1"],
        location=world.locations["A1-East"],
        name="agent",
        prefix="discotest",
        key_hash="0" * 64,
    )
    computer = {"uid": "agent-1", "hostname": hosts[0].hostname.upper(), "ipAddresses": []}
    await ingestion.ingest(key, {"reportedAt": "2026-03-01T12:00:00Z", "computers": [computer]})
    await gql(RUN, {"id": rule["id"]}, token=token)
    await run_queued_inline(broker)
    view = (await gql(ONE, {"id": rule["id"]}, token=token))["data"]["discoveryRule"]
    assert view["lastResult"] == {
        "found": len(hosts),
        "new": len(hosts) - 1,
        "known": 1,
        "errors": [],
    }
    assert await ManagedComputer.filter(company_id=world.orgs["A1"].id).count() == len(hosts)
    assert not await ManagedComputer.exists(uid=f"discovered:{hosts[0].address}")
    assert (await ManagedComputer.get(uid="agent-1")).discovered_by_id == pk


class Flaky(SimulatedAgents):
    """The agent drops the connection on the second range, once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def scan_network(self, ranges, credentials_ref, *, rule_id):  # type: ignore[no-untyped-def]
        self.calls.append(ranges[0])
        if len(self.calls) == 2:
            raise AgentUnavailable("connection reset")
        return await super().scan_network(ranges, credentials_ref, rule_id=rule_id)


async def test_a_run_resumes_after_the_last_range_done(world, gql, broker):
    flaky = Flaky()
    override_agents(flaky)
    rule = await create_rule(world, gql, ranges=["10.0.0.0/24", "10.0.2.0/25"])
    pk = (await DiscoveryRule.get(name="Office LAN")).id
    await gql(RUN, {"id": rule["id"]}, token=world.token("A1", OWNER))
    assert await run_queued_inline(broker) == 2  # the transient failure, then the retry
    # The first range was scanned once: the retry started after the checkpoint.
    assert flaky.calls == ["10.0.0.0/24", "10.0.2.0/25", "10.0.2.0/25"]
    job = await Job.get(id=(await DiscoveryRule.get(id=pk)).last_run_job_id)  # type: ignore[attr-defined]
    hosts = await simulated(pk, ["10.0.0.0/24", "10.0.2.0/25"])
    assert (job.state, job.attempts, job.checkpoint["parts_done"]) == (JobState.SUCCEEDED, 2, 2)
    assert (
        job.result["found"]
        == len(hosts)
        == await ManagedComputer.filter(discovered_by_id=pk).count()
    )


async def test_directory_rules_driver_refusals_and_removal(world, gql, broker):
    token = world.token("A1", OWNER)
    ad = await create_rule(
        world,
        gql,
        name="Domain",
        kind="ACTIVE_DIRECTORY",
        ranges=None,
        adQuery="(objectClass=computer)",
    )
    await gql(RUN, {"id": ad["id"]}, token=token)
    await run_queued_inline(broker)
    pk = (await DiscoveryRule.get(name="Domain")).id
    uids = await ManagedComputer.filter(discovered_by_id=pk).values_list("uid", flat=True)
    assert 3 <= len(uids) <= 10
    assert all(str(u).startswith(f"discovered:CN=WS{pk}-") for u in uids)

    refused = await create_rule(world, gql, name="Bad creds", credentialsRef="invalid:old")
    await gql(RUN, {"id": refused["id"]}, token=token)
    await run_queued_inline(broker)
    view = (await gql(ONE, {"id": refused["id"]}, token=token))["data"]["discoveryRule"]
    assert view["lastResult"]["errors"] == ["the credentials 'invalid:old' were refused"]
    job = await Job.get(id=(await DiscoveryRule.get(name="Bad creds")).last_run_job_id)  # type: ignore[attr-defined]
    assert (job.state, job.error) == (JobState.FAILED, "the credentials 'invalid:old' were refused")

    # A disabled rule does not run; a rule with a run in flight is not removed.
    await gql(UPDATE, {"input": {"id": refused["id"], "enabled": False}}, token=token)
    body = await gql(RUN, {"id": refused["id"]}, token=token)
    assert (code(body), body["errors"][0]["message"]) == (
        "CONFLICT",
        "the rule is disabled: enable it before running it",
    )
    await gql(RUN, {"id": ad["id"]}, token=token)
    body = await gql(DELETE, {"id": ad["id"]}, token=token)
    assert code(body) == "CONFLICT"
    await run_queued_inline(broker)
    body = await gql(DELETE, {"id": ad["id"]}, token=token)
    assert body["data"]["discoveryRuleDelete"]["deletedId"] == ad["id"]
    # The computers it found stay.
    assert await ManagedComputer.filter(discovered_by_id=pk).count() == len(uids)


async def test_scheduled_rules_run_when_due(world, gql, broker):
    await create_rule(world, gql, name="Nightly", schedule="0 2 * * *")
    await create_rule(world, gql, name="On demand", schedule="")
    await create_rule(world, gql, name="Off", schedule="0 2 * * *", enabled=False)
    nightly = await DiscoveryRule.get(name="Nightly")
    created = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    await DiscoveryRule.all().update(created_at=created)
    # Before its first tick: nothing; after it: one run, and no second while it is queued.
    assert await discovery.run_due(datetime(2026, 11, 2, 1, 59, tzinfo=UTC)) == []
    started = await discovery.run_due(datetime(2026, 11, 2, 2, 0, 30, tzinfo=UTC))
    assert len(started) == 1
    assert (await Job.get(id=started[0])).params == {"rule_id": nightly.id}
    assert await discovery.run_due(datetime(2026, 11, 2, 2, 1, tzinfo=UTC)) == []
    await run_queued_inline(broker)
    # Finished: not due again until the next tick after its run.
    ran_at = (await DiscoveryRule.get(id=nightly.id)).last_run_at
    assert ran_at is not None
    # The run finished at the real clock's time, so the next tick is computed from it (a fixed
    # "one hour later" crossed 02:00 when the suite ran between 01:00 and 02:00).
    next_tick = croniter("0 2 * * *", ran_at).get_next(datetime)
    assert await discovery.run_due(next_tick - timedelta(seconds=1)) == []
    assert len(await discovery.run_due(next_tick + timedelta(seconds=1))) == 1

    from dataclasses import replace

    from workers.schedules import DISCOVERY, default_schedules

    names = [
        s.name for s in default_schedules(replace(TEST_SETTINGS, schedule_discovery="* * * * *"))
    ]
    assert DISCOVERY in names


async def test_the_matrix_decides_for_every_principal(world, gql, broker):
    rule = await create_rule(world, gql)
    pk = (await DiscoveryRule.get(name="Office LAN")).id
    seen: dict[str, str | None] = {}
    for key, token in world.tokens.items():
        p = await principal_for_bearer(token)
        body = await gql(ONE, {"id": rule["id"]}, token=token)
        if not allows(p, DISCOVERY_RULES, Action.READ):
            expected = "FORBIDDEN"
        elif not await DiscoveryRule.filter(discovery.rule_q(p), id=pk).exists():
            expected = "NOT_FOUND"
        else:
            expected = None
        assert code(body) == expected, (key, body)
        seen[key] = expected
        if expected is None:
            can = allows(p, DISCOVERY_RULES, Action.UPDATE)
            assert body["data"]["discoveryRule"]["viewerCanUpdate"] is can
            run = await gql(RUN, {"id": rule["id"]}, token=token)
            assert code(run) == (None if can else "FORBIDDEN"), key
    assert seen["A1:Location User"] == "FORBIDDEN"  # N/A
    assert seen["Provider:Service Provider User"] == "FORBIDDEN"  # N/A
    assert seen["A1:Location Administrator"] is None  # the rule is in A1-East
    assert seen["A2:Company Owner"] == "NOT_FOUND"
    assert seen["R2:" + GA] == "NOT_FOUND"
    assert seen["R1:" + GA] is None
    listed = await gql(LIST, {}, token=world.token("A2", OWNER))
    assert listed["data"]["discoveryRules"]["totalCount"] == 0
    body = await gql(DELETE, {"id": rule["id"]}, token=world.token("A2", OWNER))
    assert code(body) == "NOT_FOUND"


# --- a real worker process (PostgreSQL and Redis) ----------------------------------------------

REQUIRED = os.environ.get("TENANTRY_REQUIRE_SERVICES") == "1"


async def test_real_worker_runs_a_discovery_and_a_backup_report(
    world, gql, tmp_path: Path, monkeypatch
):
    if not (ON_POSTGRES and REDIS_URL):
        if REQUIRED:
            pytest.fail("TENANTRY_REQUIRE_SERVICES=1 but PostgreSQL or Redis is not configured")
        pytest.skip("needs TENANTRY_TEST_DATABASE_URL (PostgreSQL) and TENANTRY_TEST_REDIS_URL")
    from dataclasses import replace

    import redis

    from app.services import jobs
    from tests.workerproc import WorkerProcess, redis_url_with_db, wait_for
    from tests.workload_fleet import build_fleet

    url = redis_url_with_db(REDIS_URL, 8)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    namespace = f"tenantry-test-{uuid.uuid4().hex[:8]}"
    settings = replace(TEST_SETTINGS, redis_url=url, redis_namespace=namespace)
    for name in ("HEARTBEAT_INTERVAL", "STALE_AFTER", "UNCLAIMED_AFTER"):
        monkeypatch.setattr(jobs, name, getattr(jobs, name))
    previous = jobs._dispatcher
    setup(settings, stub=False)
    worker = WorkerProcess(PG_URL, url, namespace, tmp_path / "worker.log")
    try:
        await build_fleet(world)
        token = world.token("A1", OWNER)
        rule = await create_rule(world, gql)
        run = (await gql(RUN, {"id": rule["id"]}, token=token))["data"]["discoveryRuleRun"]
        today = date.today()
        report = await gql(
            "mutation($input: BackupReportGenerateInput!) { backupReportGenerate(input: $input) { report { id } job { id } } }",
            {
                "input": {
                    "companyId": gid("Company", world.orgs["A1"].id),
                    "periodStart": (today - timedelta(days=30)).isoformat(),
                    "periodEnd": today.isoformat(),
                }
            },
            token=token,
        )
        assert "errors" not in report, report
        from app.graphql.ids import from_global_id

        ids = [
            from_global_id(run["job"]["id"])[1],
            from_global_id(report["data"]["backupReportGenerate"]["job"]["id"])[1],
        ]

        async def finished():
            states = await Job.filter(id__in=ids).values_list("state", flat=True)
            return all(s in (JobState.SUCCEEDED, JobState.FAILED) for s in states)

        await wait_for(finished, 30, "the worker to finish both jobs")
        rows = {j.kind: j for j in await Job.filter(id__in=ids)}
        assert rows["discovery.run"].state == JobState.SUCCEEDED, rows["discovery.run"].error
        assert rows["backup_report.generate"].state == JobState.SUCCEEDED, rows[
            "backup_report.generate"
        ].error
        pk = (await DiscoveryRule.get(name="Office LAN")).id
        hosts = await simulated(pk, RANGES)
        assert await ManagedComputer.filter(discovered_by_id=pk).count() == len(hosts)
        from app.models import BackupReport

        stored = await BackupReport.get(job_id=ids[1])
        assert stored.generated_at is not None and stored.content["computers"]["total"] >= 2
    finally:
        worker.stop()
        print(worker.output())
        jobs.set_dispatcher(previous)
