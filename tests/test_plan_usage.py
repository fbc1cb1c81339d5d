"""Hardware plan usage derived from the replicas: sizes set at registration and by resize
(bounds, the storage quota), usage after a failover powers some VMs on, during a test and after
an undo, the read for every principal, and a page of subscriptions at a constant cost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz.capabilities import REPLICAS, TENANT_ACCOUNTS
from app.authz.matrix import Action
from app.models import AuditEntry
from app.models.cloud import (
    HardwarePlan,
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    ReplicaKind,
    ReplicaState,
    TenantAccount,
    VmReplica,
)
from app.models.failover import FailoverSession, FailoverSessionState, FailurePolicy, SessionKind
from app.services import failover_runs, replicas
from app.services.plan_usage import NONE, PlanUsage, usage_of
from tests.conftest import ON_POSTGRES
from tests.permission_cases import Subject, outcome
from tests.querycount import count_queries
from tests.test_allocations import (
    ADMIN,
    ALL_SUBJECTS,
    code,
    expected_outcome,
    gid,
    home_company,
    make_account,
)
from tests.test_failover_plans import add_vms, make_plan
from tests.test_failover_runs import actor_of, driver, replica_states, run  # noqa: F401

REGISTER = """mutation($input: VmReplicaRegisterInput!) { vmReplicaRegister(input: $input) {
  id cpuMhz memoryMb storageGb } }"""
RESIZE = """mutation($input: VmReplicaResizeInput!) { vmReplicaResize(input: $input) {
  id cpuMhz memoryMb storageGb } }"""
USAGE = """query($id: ID!) { hardwarePlanSubscription(id: $id) {
  cpuLimitMhz cpuUsedMhz memoryLimitMb memoryUsedMb storageLimitGb storageUsedGb
  replicaCount replicasPoweredOn } }"""
POINTS = ["2026-01-01T00:00:00+00:00"]
# (name, cpu MHz, memory MB, disks GB); the simulator refuses to power on "*-fail".
VMS = (("dc01", 2000, 4096, 40), ("sql01", 4000, 8192, 60), ("app01-fail", 1000, 2048, 20))


async def subscription(account: TenantAccount, name: str = "DR") -> HardwarePlanSubscription:
    plan = await HardwarePlan.create(name=name, cpu_mhz=8000, memory_mb=16384)
    await HardwarePlanDatastore.create(plan=plan, datastore="ds1", quota_gb=100)
    await HardwarePlanDatastore.create(plan=plan, datastore="ds2", quota_gb=50)
    return await HardwarePlanSubscription.create(tenant_account=account, plan=plan)


def register_input(account: TenantAccount, sub: HardwarePlanSubscription, vm: tuple) -> dict:
    name, cpu, mem, gb = vm
    return {
        "input": {
            "tenantAccountId": gid("TenantAccount", account.id),
            "subscriptionId": gid("HardwarePlanSubscription", sub.id),
            "name": name,
            "sourceVm": name,
            "restorePoints": POINTS,
            "cpuMhz": cpu,
            "memoryMb": mem,
            "storageGb": gb,
        }
    }


async def usage(gql, token: str, sub: HardwarePlanSubscription) -> dict[str, Any]:
    body = await gql(USAGE, {"id": gid("HardwarePlanSubscription", sub.id)}, token=token)
    assert "errors" not in body, body
    return body["data"]["hardwarePlanSubscription"]  # type: ignore[no-any-return]


def figures(cpu: int, mem: int, gb: int, count: int, on: int) -> dict[str, int]:
    return {
        "cpuLimitMhz": 8000,
        "cpuUsedMhz": cpu,
        "memoryLimitMb": 16384,
        "memoryUsedMb": mem,
        "storageLimitGb": 150,
        "storageUsedGb": gb,
        "replicaCount": count,
        "replicasPoweredOn": on,
    }


async def test_usage_after_registration_failover_and_undo(world, driver, gql) -> None:  # noqa: F811
    account = await make_account(world, "A1")
    sub = await subscription(account)
    token = world.token("A1", "Company Owner")
    assert await usage(gql, token, sub) == figures(0, 0, 0, 0, 0)
    ids = []
    for vm in VMS:
        body = await gql(REGISTER, register_input(account, sub, vm), token=token)
        assert "errors" not in body, body
        assert [body["data"]["vmReplicaRegister"][k] for k in ("cpuMhz", "memoryMb")] == [*vm[1:3]]
        ids.append(body["data"]["vmReplicaRegister"]["id"])
    # Disks count at once; nothing is powered on yet.
    assert await usage(gql, token, sub) == figures(0, 0, 120, 3, 0)

    rows = list(await VmReplica.filter(tenant_account_id=account.id).order_by("id"))
    plan = await make_plan(
        world.orgs["A1"], "DR site", tenant_account=account, failure_policy=FailurePolicy.CONTINUE
    )
    await add_vms(plan, rows)
    actor = await actor_of(world, ADMIN)
    await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    await run(driver)
    assert await replica_states(rows) == ["FAILOVER", "FAILOVER", "READY"]
    # The two VMs that booted use CPU and memory; the one refused does not.
    assert await usage(gql, token, sub) == figures(6000, 12288, 120, 3, 2)

    undo = await failover_runs.start(actor, plan.id, SessionKind.UNDO)
    await run(driver)
    assert (await FailoverSession.get(id=undo.id)).state is FailoverSessionState.SUCCEEDED
    assert await usage(gql, token, sub) == figures(0, 0, 120, 3, 0)

    # Removing a replica frees its disks.
    body = await gql(
        "mutation($id: ID!) { vmReplicaDelete(id: $id) { deletedId } }", {"id": ids[1]}, token=token
    )
    assert "errors" not in body, body
    assert await usage(gql, token, sub) == figures(0, 0, 60, 2, 0)


async def test_a_running_test_counts_the_vms_it_booted(world, driver) -> None:  # noqa: F811
    account = await make_account(world, "A1")
    sub = await subscription(account)
    rows = [
        await VmReplica.create(
            tenant_account=account,
            subscription=sub,
            name=name,
            source_vm=name,
            restore_points=POINTS,
            cpu_mhz=cpu,
            memory_mb=mem,
            storage_gb=gb,
        )
        for name, cpu, mem, gb in VMS[:2]
    ]
    plan = await make_plan(world.orgs["A1"], "DR test", tenant_account=account)
    await add_vms(plan, rows)
    seen: list[PlanUsage] = []

    async def look() -> None:
        seen.append((await usage_of([sub.id])).get(sub.id, NONE))

    # While the test boots sql01, dc01 is up in isolation; when it powers dc01 off at the
    # end, both are up.
    driver.hooks[("power_on", "sql01")] = look
    driver.hooks[("power_off", "dc01")] = look
    await failover_runs.start(await actor_of(world, ADMIN), plan.id, SessionKind.TEST)
    await run(driver)
    assert seen == [
        PlanUsage(cpu_mhz=2000, memory_mb=4096, storage_gb=100, replicas=2, powered_on=1),
        PlanUsage(cpu_mhz=6000, memory_mb=12288, storage_gb=100, replicas=2, powered_on=2),
    ]
    # A test leaves the replicas READY and powered off: only the disks are left.
    assert await replica_states(rows) == ["READY", "READY"]
    assert (await usage_of([sub.id]))[sub.id] == PlanUsage(storage_gb=100, replicas=2)


async def test_sizes_are_bounded_and_disks_must_fit_the_plan(world, gql) -> None:
    account = await make_account(world, "A1")
    sub = await subscription(account)
    token = world.token(*ADMIN)
    vm = ("big", 1000, 1024, 151)
    body = await gql(REGISTER, register_input(account, sub, vm), token=token)
    assert code(body) == "CONFLICT"
    ext = body["errors"][0]["extensions"]
    assert (ext["field"], ext["storageLeftGb"]) == ("input.storageGb", 150)
    assert "151 GB do not fit" in body["errors"][0]["message"]
    for field, value, message in (
        ("cpuMhz", -1, "cannot be negative"),
        ("memoryMb", 24 * 1024 * 1024 + 1, "at most 25165824"),
        ("storageGb", -5, "cannot be negative"),
    ):
        variables = register_input(account, sub, ("bad", 0, 0, 0))
        variables["input"][field] = value
        body = await gql(REGISTER, variables, token=token)
        assert code(body) == "BAD_USER_INPUT", body
        assert body["errors"][0]["extensions"]["field"] == f"input.{field}"
        assert body["errors"][0]["message"] == message
    body = await gql(REGISTER, register_input(account, sub, ("a", 1000, 1024, 100)), token=token)
    first = body["data"]["vmReplicaRegister"]["id"]
    body = await gql(REGISTER, register_input(account, sub, ("b", 1000, 1024, 51)), token=token)
    assert code(body) == "CONFLICT" and body["errors"][0]["extensions"]["storageLeftGb"] == 50
    # Resizing: the replica's own disks are not counted twice; only what is given changes.
    body = await gql(RESIZE, {"input": {"id": first, "storageGb": 150}}, token=token)
    assert body["data"]["vmReplicaResize"] == {
        "id": first,
        "cpuMhz": 1000,
        "memoryMb": 1024,
        "storageGb": 150,
    }
    body = await gql(RESIZE, {"input": {"id": first, "storageGb": 151}}, token=token)
    assert code(body) == "CONFLICT"
    body = await gql(RESIZE, {"input": {"id": first, "cpuMhz": -1}}, token=token)
    assert code(body) == "BAD_USER_INPUT"
    body = await gql(RESIZE, {"input": {"id": first, "cpuMhz": 9000, "memoryMb": 0}}, token=token)
    assert body["data"]["vmReplicaResize"]["cpuMhz"] == 9000
    row = await VmReplica.get(name="a")
    assert (row.cpu_mhz, row.memory_mb, row.storage_gb) == (9000, 0, 150)
    # CPU beyond the plan is not refused: powered on, it shares the plan's limit (alarms warn).
    assert (await usage_of([sub.id]))[sub.id].storage_gb == 150
    outcomes = (
        await AuditEntry.filter(object_type="VmReplica")
        .order_by("id")
        .values_list("action", "outcome")
    )
    assert outcomes == [
        ("vmReplicaRegister", "FAILURE"),
        ("vmReplicaRegister", "SUCCESS"),
        ("vmReplicaRegister", "FAILURE"),
        ("vmReplicaResize", "SUCCESS"),
        ("vmReplicaResize", "FAILURE"),
        ("vmReplicaResize", "SUCCESS"),
    ]
    # Without a subscription, sizes are kept but count against no plan.
    admin = await actor_of(world, ADMIN)
    loose = await replicas.register(admin, account.id, "loose", "loose", row.kind, None, [])
    await replicas.resize(admin, loose.id, replicas.Sizes(storage_gb=10_000))
    assert (await VmReplica.get(id=loose.id)).storage_gb == 10_000


async def test_a_page_of_subscriptions_costs_the_same_whatever_its_size(world, gql) -> None:
    account = await make_account(world, "A1")
    token = world.token(*ADMIN)
    query = """query($id: ID!) { hardwarePlanSubscriptions(tenantAccountId: $id) {
      cpuUsedMhz memoryUsedMb storageUsedGb replicaCount replicasPoweredOn storageLimitGb } }"""
    counts = []
    total = 0
    for n in (1, 5):
        for i in range(n):
            sub = await subscription(account, f"plan {n}-{i}")
            for j in range(3):
                await VmReplica.create(
                    tenant_account=account,
                    subscription=sub,
                    name=f"vm {n}-{i}-{j}",
                    source_vm="x",
                    state=ReplicaState.FAILOVER if j == 0 else ReplicaState.READY,
                    cpu_mhz=100,
                    memory_mb=200,
                    storage_gb=10,
                )
        total += n
        with count_queries() as queries:
            body = await gql(query, {"id": gid("TenantAccount", account.id)}, token=token)
        assert "errors" not in body, body
        got = body["data"]["hardwarePlanSubscriptions"]
        assert len(got) == total
        assert all(
            (s["cpuUsedMhz"], s["memoryUsedMb"], s["storageUsedGb"], s["replicasPoweredOn"])
            == (100, 200, 30, 1)
            for s in got
        )
        counts.append(queries.count)
        # The usage of the whole page: one statement over the replicas.
        assert len(queries.matching("vm_replicas")) == 1, queries
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_usage_and_resize_follow_the_matrix(subject: Subject, use_settings, db, gql) -> None:
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    for company in sorted({home_company(world, subject), "A1"}):
        account = await make_account(world, company)
        sub = await subscription(account, f"plan {company}")
        org = world.orgs[company]
        replica = await VmReplica.create(
            tenant_account=account,
            subscription=sub,
            name="vm",
            source_vm="vm",
            state=ReplicaState.FAILOVER,
            cpu_mhz=500,
            memory_mb=1024,
            storage_gb=25,
        )
        body = await gql(USAGE, {"id": gid("HardwarePlanSubscription", sub.id)}, token=token)
        want = expected_outcome(p, TENANT_ACCOUNTS, Action.READ, org)
        assert outcome(body, "hardwarePlanSubscription") == want, (company, body)
        if want is None:
            got = body["data"]["hardwarePlanSubscription"]
            assert (got["cpuUsedMhz"], got["memoryUsedMb"], got["storageUsedGb"]) == (500, 1024, 25)
        body = await gql(
            RESIZE, {"input": {"id": gid("VmReplica", replica.id), "storageGb": 30}}, token=token
        )
        want = expected_outcome(p, REPLICAS, Action.UPDATE, org)
        assert outcome(body, "vmReplicaResize") == want, (company, body)
        assert (await VmReplica.get(id=replica.id)).storage_gb == (30 if want is None else 25)


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks and concurrent transactions need PostgreSQL")
async def test_concurrent_registrations_never_exceed_the_plans_storage(world) -> None:
    account = await make_account(world, "A1")
    sub = await subscription(account)  # 150 GB
    actor = await actor_of(world, ADMIN)

    async def register(i: int) -> str:
        try:
            await replicas.register(
                actor,
                account.id,
                f"vm{i}",
                f"vm{i}",
                ReplicaKind.SNAPSHOT,
                sub.id,
                [],
                replicas.Sizes(storage_gb=20),
            )
            return "ok"
        except Exception as exc:
            return type(exc).__name__

    results = await asyncio.gather(*[register(i) for i in range(10)])
    assert results.count("ok") == 7 and set(results) == {"ok", "Conflict"}, results
    assert (await usage_of([sub.id]))[sub.id].storage_gb == 140
