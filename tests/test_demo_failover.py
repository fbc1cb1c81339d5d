"""The demo's cloud failover: a READY plan of 3–6 replicas per demo company, one company's plan
really tested (session SUCCEEDED with a recovery time, steps and a log), nothing added by a
second seeding, and a demo company owner reading it all through GraphQL."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from app.demo import COMPANIES, seed_demo
from app.graphql.ids import to_global_id
from app.models import Job, JobState, Organization, OrgKind, ResellerHardwarePlan
from app.models.cloud import HardwarePlanSubscription, ReplicaKind, ReplicaState, VmReplica
from app.models.failover import (
    FailoverLogEntry,
    FailoverPlan,
    FailoverPlanVm,
    FailoverSession,
    FailoverSessionState,
    FailoverStep,
    PlanState,
    SessionKind,
    SimulatedVm,
    StepState,
)
from app.services.failover_readiness import readiness_many
from app.services.plan_usage import PlanUsage, usage_of
from app.simulator.demo_failover import (
    DATASTORE_GB,
    DEMO_SITES,
    HARDWARE_PLAN,
    PLAN_CPU_MHZ,
    PLAN_NAME,
    TESTED_COMPANY,
    restore_points,
    seed_demo_failover,
    vm_size,
)
from tests.querycount import count_queries

COUNTED = (VmReplica, FailoverPlan, FailoverPlanVm, FailoverSession, FailoverStep, FailoverLogEntry)


async def counts() -> dict[str, int]:
    return {model.__name__: await model.all().count() for model in (*COUNTED, Job)}


def test_restore_points_every_four_hours_over_two_days_oldest_first():
    points = restore_points(datetime(2026, 3, 10, 13, 27, tzinfo=UTC))
    assert len(points) == 12
    assert points[0] == "2026-03-08T16:00:00+00:00"
    assert points[-1] == "2026-03-10T12:00:00+00:00"
    times = [datetime.fromisoformat(p) for p in points]
    assert all(b - a == timedelta(hours=4) for a, b in itertools.pairwise(times))


async def test_every_demo_company_has_a_ready_plan_and_one_finished_test(db):
    await seed_demo()
    plans = await FailoverPlan.all().select_related("company", "tenant_account")
    assert sorted(p.company.name for p in plans) == sorted(name for name, _, _ in COMPANIES)
    assert {p.name for p in plans} == {PLAN_NAME}
    assert all(p.state is PlanState.READY for p in plans)
    assert await readiness_many(plans) == {p.id: [] for p in plans}
    now = datetime.now(UTC)
    for plan in plans:
        assert plan.tenant_account is not None
        assert plan.tenant_account.company_id == plan.company.id  # type: ignore[attr-defined]
        vms = await FailoverPlanVm.filter(plan_id=plan.id).select_related("replica")
        vms.sort(key=lambda v: v.position)
        site = DEMO_SITES[plan.company.name]
        assert 3 <= len(vms) <= 6
        assert [(v.replica.name, v.delay_seconds) for v in vms] == list(site)
        assert all(0 <= v.delay_seconds <= 30 for v in vms)
        for vm in vms:
            replica = vm.replica
            assert replica.tenant_account_id == plan.tenant_account.id  # type: ignore[attr-defined]
            assert replica.kind is ReplicaKind.SNAPSHOT
            assert replica.state is ReplicaState.READY  # the test released them
            times = [datetime.fromisoformat(p) for p in replica.restore_points]
            assert len(times) == 12 and times == sorted(times)
            assert timedelta(0) <= now - times[-1] < timedelta(hours=4)
            assert now - times[0] < timedelta(days=2)

    sessions = await FailoverSession.all().select_related("plan__company")
    assert len(sessions) == 1
    session = sessions[0]
    assert session.plan.company.name == TESTED_COMPANY
    assert session.kind is SessionKind.TEST
    assert session.state is FailoverSessionState.SUCCEEDED
    vms = len(DEMO_SITES[TESTED_COMPANY])
    assert (session.vms_total, session.vms_up, session.vms_failed) == (vms, vms, 0)
    assert session.recovery_seconds is not None and 0 < session.recovery_seconds < 30
    assert session.finished_at is not None
    assert session.plan.last_test_recovery_seconds == session.recovery_seconds
    assert session.plan.current_session_id == session.id
    steps = await FailoverStep.filter(session_id=session.id).order_by("seq")
    assert len(steps) == 4 * vms  # select, power on, healthy, power off per VM (no delays)
    assert {s.state for s in steps} == {StepState.DONE}
    log = await FailoverLogEntry.filter(session_id=session.id).values_list("message", flat=True)
    assert len(log) == len(steps) + 2  # requested, one per step, the end
    assert log[0].startswith("test requested by ")
    assert log[-1].startswith(f"test succeeded: {vms} of {vms} VM(s) through")
    job = await Job.get(id=session.job_id)  # type: ignore[attr-defined]
    assert job.state is JobState.SUCCEEDED and job.kind == "failover.run"
    # The test booted the VMs in isolation and powered them off again, each once.
    simulated = await SimulatedVm.all()
    assert len(simulated) == vms
    assert all(not vm.powered_on and vm.power_on_count == 1 for vm in simulated)


async def test_seeding_twice_adds_nothing(db):
    await seed_demo()
    before = await counts()
    assert before["FailoverPlan"] == 6 and before["FailoverSession"] == 1
    assert await seed_demo_failover() == 0
    assert await seed_demo() is False
    assert await counts() == before


async def test_a_company_without_its_plan_gets_one_again_without_new_replicas(db):
    await seed_demo()
    globex = await Organization.get(kind=OrgKind.COMPANY.value, name="Globex")
    await FailoverPlan.filter(company_id=globex.id).delete()
    before = await counts()
    # A bounded number of statements, not a wall-clock bound (which failed on a loaded machine):
    # the missing plan is built from the company's replicas without a statement per VM.
    with count_queries() as statements:
        assert await seed_demo_failover() == 1
    assert statements.count <= 25, statements
    after = await counts()
    assert after["FailoverPlan"] == before["FailoverPlan"] + 1
    assert after["VmReplica"] == before["VmReplica"]  # the replicas were there already
    assert after["FailoverSession"] == before["FailoverSession"]  # only the tested one runs


LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
PLANS = """{ failoverPlans { totalCount edges { node {
    name state ready notReadyReasons lastTestRecoverySeconds
    vms { position replicaName delaySeconds restorePointCount } } } } }"""
SESSIONS = """{ failoverSessions { totalCount edges { node {
    kind state vmsUp vmsTotal recoverySeconds
    steps { seq kind state vmName }
    log(first: 100) { totalCount edges { node { level message } } } } } } }"""


async def _token(gql, email: str, password: str) -> str:
    body = await gql(LOGIN, {"e": email, "p": password})
    assert "errors" not in body, body
    return body["data"]["login"]["token"]


async def test_demo_owners_read_their_plan_and_the_test_through_graphql(db, gql, settings):
    await seed_demo()
    token = await _token(gql, "owner@acme.demo", settings.demo_password)
    body = await gql(PLANS, token=token)
    assert "errors" not in body, body
    plans = body["data"]["failoverPlans"]
    assert plans["totalCount"] == 1
    plan = plans["edges"][0]["node"]
    assert (plan["name"], plan["state"], plan["ready"], plan["notReadyReasons"]) == (
        PLAN_NAME,
        "READY",
        True,
        [],
    )
    assert plan["lastTestRecoverySeconds"] > 0
    assert [(v["replicaName"], v["restorePointCount"]) for v in plan["vms"]] == [
        (name, 12) for name, _ in DEMO_SITES[TESTED_COMPANY]
    ]

    body = await gql(SESSIONS, token=token)
    assert "errors" not in body, body
    sessions = body["data"]["failoverSessions"]
    assert sessions["totalCount"] == 1
    session = sessions["edges"][0]["node"]
    vms = len(DEMO_SITES[TESTED_COMPANY])
    assert (session["kind"], session["state"], session["vmsUp"], session["vmsTotal"]) == (
        "TEST",
        "SUCCEEDED",
        vms,
        vms,
    )
    assert session["recoverySeconds"] == plan["lastTestRecoverySeconds"]
    assert [s["seq"] for s in session["steps"]] == list(range(1, 4 * vms + 1))
    assert {s["state"] for s in session["steps"]} == {"DONE"}
    assert session["steps"][0]["vmName"] == DEMO_SITES[TESTED_COMPANY][0][0]
    log = session["log"]
    assert log["totalCount"] == len(log["edges"]) == 4 * vms + 2
    assert log["edges"][-1]["node"]["message"].startswith("test succeeded")

    # Another company's owner sees its own plan, with delays, and no session.
    token = await _token(gql, "owner@globex.demo", settings.demo_password)
    body = await gql(PLANS, token=token)
    assert [
        (v["replicaName"], v["delaySeconds"])
        for v in body["data"]["failoverPlans"]["edges"][0]["node"]["vms"]
    ] == list(DEMO_SITES["Globex"])
    body = await gql(SESSIONS, token=token)
    assert body["data"]["failoverSessions"] == {"totalCount": 0, "edges": []}


async def test_demo_subscriptions_show_what_their_replicas_use(db, gql, settings):
    await seed_demo()
    subs = await HardwarePlanSubscription.all().select_related("tenant_account__company", "plan")
    by_company = {s.tenant_account.company.name: s for s in subs}
    assert sorted(by_company) == sorted(DEMO_SITES)
    usage = await usage_of([s.id for s in subs])
    for company, site in DEMO_SITES.items():
        sub = by_company[company]
        assert sub.plan.name == HARDWARE_PLAN
        replicas = await VmReplica.filter(tenant_account_id=sub.tenant_account.id)
        assert {r.subscription_id for r in replicas} == {sub.id}  # type: ignore[attr-defined]
        disks = sum(vm_size(name)["storage_gb"] for name, _ in site)
        assert disks > 0
        # Every replica is READY (the test released them): disks only, no CPU or memory.
        assert usage[sub.id] == PlanUsage(storage_gb=disks, replicas=len(site))
    # Initech's file server puts its subscription above the storage alarm's 80 %.
    initech = usage[by_company["Initech"].id].storage_gb
    assert 80 <= 100 * initech / DATASTORE_GB < 95
    assert all(u.storage_gb <= DATASTORE_GB for u in usage.values())

    # Its owner reads the figures; the reseller's grant let the company subscribe.
    token = await _token(gql, "owner@initech.demo", settings.demo_password)
    body = await gql(
        "query($id: ID!) { hardwarePlanSubscriptions(tenantAccountId: $id) {"
        " planName storageUsedGb storageLimitGb cpuUsedMhz cpuLimitMhz } }",
        {"id": to_global_id("TenantAccount", by_company["Initech"].tenant_account.id)},
        token=token,
    )
    assert body["data"]["hardwarePlanSubscriptions"] == [
        {
            "planName": HARDWARE_PLAN,
            "storageUsedGb": initech,
            "storageLimitGb": DATASTORE_GB,
            "cpuUsedMhz": 0,
            "cpuLimitMhz": PLAN_CPU_MHZ,
        }
    ]
    assert await ResellerHardwarePlan.filter(plan__name=HARDWARE_PLAN).count() == 2
