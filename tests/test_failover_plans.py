"""Cloud failover plans: building them (create, edit, remove, the ordered VMs with every
prerequisite error and its field, all-or-nothing replacement), the provider-only scripts,
readiness, scope, the matrix for every principal, query counts, and concurrency on
PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import FAILOVER_PLANS, FAILOVER_SCRIPTS, FAILOVER_SESSIONS
from app.authz.matrix import Action, RoleScope
from app.authz.principal import Principal, Target
from app.errors import Conflict
from app.models import AuditEntry, Organization, OrgKind
from app.models.cloud import ReplicaKind, ReplicaState, TenantAccount, VmReplica
from app.models.failover import FailoverPlan, FailoverPlanVm, PlanState
from app.services import failover_plan_vms, failover_plans, failover_readiness
from app.services.actor import Actor
from app.services.failover_plan_vms import VmInput
from tests.conftest import ON_POSTGRES
from tests.permission_cases import Subject, outcome
from tests.querycount import count_queries
from tests.test_allocations import (
    ADMIN,
    ALL_SUBJECTS,
    code,
    gid,
    home_company,
    in_scope,
    make_account,
)

OWNER = ("A1", "Company Owner")
POINTS = ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]

PLAN_FIELDS = """id name description type state failurePolicy companyId tenantAccountId ready
  notReadyReasons currentSessionId lastTestRecoverySeconds scripts { preFailover postFailover }
  viewerCanUpdate viewerCanDelete viewerCanRun viewerCanEditScripts
  vms { position delaySeconds replicaId replicaName replicaKind replicaState
        restorePointCount latestRestorePoint }"""
CREATE = f"""mutation($input: FailoverPlanCreateInput!) {{ failoverPlanCreate(input: $input) {{
  {PLAN_FIELDS} }} }}"""
UPDATE = """mutation($input: FailoverPlanUpdateInput!) { failoverPlanUpdate(input: $input) {
  name description failurePolicy } }"""
DELETE = "mutation($id: ID!) { failoverPlanDelete(id: $id) { deletedId } }"
SET_VMS = f"""mutation($input: FailoverPlanSetVmsInput!) {{ failoverPlanSetVms(input: $input) {{
  {PLAN_FIELDS} }} }}"""
SET_SCRIPTS = """mutation($input: FailoverPlanSetScriptsInput!) {
  failoverPlanSetScripts(input: $input) { scripts { preFailover postFailover } } }"""
READ = f"query($id: ID!) {{ failoverPlan(id: $id) {{ {PLAN_FIELDS} }} }}"
LIST = """query($filter: FailoverPlanFilter, $after: String) {
  failoverPlans(first: 50, filter: $filter, after: $after) { nodes { id name state } } }"""


# --- helpers -------------------------------------------------------------------------------


async def make_replica(
    account: TenantAccount,
    name: str,
    kind: ReplicaKind = ReplicaKind.SNAPSHOT,
    points: list[str] | None = None,
    **kw: Any,
) -> VmReplica:
    return await VmReplica.create(
        tenant_account=account,
        name=name,
        source_vm=f"{name}-src",
        kind=kind,
        restore_points=POINTS if points is None else points,
        **kw,
    )


async def make_plan(company: Organization, name: str = "Site A", **kw: Any) -> FailoverPlan:
    return await FailoverPlan.create(company=company, name=name, **kw)


async def add_vms(plan: FailoverPlan, replicas: list[VmReplica], delay: int = 0) -> None:
    for i, replica in enumerate(replicas):
        await FailoverPlanVm.create(plan=plan, replica=replica, position=i, delay_seconds=delay)


def vms_input(plan_id: int, *vms: tuple[int, int]) -> dict[str, Any]:
    return {
        "input": {
            "id": gid("FailoverPlan", plan_id),
            "vms": [{"replicaId": gid("VmReplica", r), "delaySeconds": d} for r, d in vms],
        }
    }


def error(body: dict[str, Any]) -> tuple[str | None, str | None]:
    errors = body.get("errors") or []
    if not errors:
        return None, None
    ext = errors[0]["extensions"]
    return ext["code"], ext.get("field")


async def plan_vm_ids(plan: FailoverPlan) -> list[tuple[int, int, int]]:
    rows = await FailoverPlanVm.filter(plan_id=plan.id).order_by("position")
    return [(vm.replica_id, vm.position, vm.delay_seconds) for vm in rows]  # type: ignore[attr-defined]


# --- building a plan -----------------------------------------------------------------------


async def test_plan_lifecycle_ordering_and_delays_round_trip(world, gql) -> None:
    account = await make_account(world, "A1")
    r = [await make_replica(account, f"vm{i}") for i in range(3)]
    token = world.token(*OWNER)
    create = {
        "input": {
            "companyId": gid("Company", world.orgs["A1"].id),
            "name": "  Site A  ",
            "type": "LOCAL",
            "failurePolicy": "CONTINUE",
            "description": "the main site",
            "tenantAccountId": gid("TenantAccount", account.id),
        }
    }
    body = await gql(CREATE, create, token=token)
    plan = body["data"]["failoverPlanCreate"]
    assert (plan["name"], plan["type"], plan["state"], plan["failurePolicy"]) == (
        "Site A",
        "LOCAL",
        "READY",
        "CONTINUE",
    )
    assert plan["tenantAccountId"] == gid("TenantAccount", account.id)
    assert plan["vms"] == [] and plan["ready"] is False
    assert plan["notReadyReasons"] == ["the plan has no VMs"]
    # Company users have Full: they may run their plans, not touch the scripts.
    assert (plan["viewerCanUpdate"], plan["viewerCanRun"], plan["viewerCanEditScripts"]) == (
        True,
        True,
        False,
    )
    assert plan["scripts"] is None
    assert error(await gql(CREATE, create, token=token)) == ("CONFLICT", "input.name")
    pk = (await FailoverPlan.get(name="Site A")).id

    # The order given is the order stored and returned; the last delay is kept as given.
    body = await gql(
        SET_VMS, vms_input(pk, (r[2].id, 30), (r[0].id, 0), (r[1].id, 90)), token=token
    )
    vms = body["data"]["failoverPlanSetVms"]["vms"]
    assert [(v["replicaName"], v["position"], v["delaySeconds"]) for v in vms] == [
        ("vm2", 0, 30),
        ("vm0", 1, 0),
        ("vm1", 2, 90),
    ]
    assert vms[0]["replicaKind"] == "SNAPSHOT" and vms[0]["replicaState"] == "READY"
    assert vms[0]["restorePointCount"] == 2
    assert vms[0]["latestRestorePoint"] == "2026-01-02T00:00:00+00:00"
    assert body["data"]["failoverPlanSetVms"]["ready"] is True
    assert body["data"]["failoverPlanSetVms"]["notReadyReasons"] == []
    # Replacing the list: new order, one VM fewer, the dropped replica free again.
    await gql(SET_VMS, vms_input(pk, (r[1].id, 5), (r[2].id, 0)), token=token)
    assert await plan_vm_ids(await FailoverPlan.get(id=pk)) == [(r[1].id, 0, 5), (r[2].id, 1, 0)]
    body = await gql(READ, {"id": gid("FailoverPlan", pk)}, token=token)
    assert [v["replicaName"] for v in body["data"]["failoverPlan"]["vms"]] == ["vm1", "vm2"]

    body = await gql(
        UPDATE,
        {"input": {"id": gid("FailoverPlan", pk), "name": "Site B", "failurePolicy": "STOP"}},
        token=token,
    )
    assert body["data"]["failoverPlanUpdate"] == {
        "name": "Site B",
        "description": "the main site",
        "failurePolicy": "STOP",
    }
    body = await gql(LIST, {}, token=world.token("A1", "Location User"))
    assert body["data"]["failoverPlans"]["nodes"] == [
        {"id": gid("FailoverPlan", pk), "name": "Site B", "state": "READY"}
    ]
    body = await gql(DELETE, {"id": gid("FailoverPlan", pk)}, token=token)
    assert body["data"]["failoverPlanDelete"]["deletedId"] == gid("FailoverPlan", pk)
    assert await FailoverPlan.all().count() == 0 and await FailoverPlanVm.all().count() == 0
    assert await VmReplica.all().count() == 3  # the replicas stay
    audit = (
        await AuditEntry.filter(object_type="FailoverPlan")
        .order_by("id")
        .values_list("action", "outcome", "organization_id")
    )
    a1 = world.orgs["A1"].id
    assert audit == [
        ("failoverPlanCreate", "SUCCESS", a1),
        ("failoverPlanCreate", "FAILURE", a1),
        ("failoverPlanSetVms", "SUCCESS", a1),
        ("failoverPlanSetVms", "SUCCESS", a1),
        ("failoverPlanUpdate", "SUCCESS", a1),
        ("failoverPlanDelete", "SUCCESS", a1),
    ]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"name": " "}, "input.name"),
        ({"name": "x" * 201}, "input.name"),
        ({"description": "x" * 1001}, "input.description"),
        ({"tenantAccountId": "bad"}, "input.tenantAccountId"),
    ],
)
async def test_create_validation(world, gql, variables: dict, field: str) -> None:
    body = await gql(
        CREATE,
        {"input": {"companyId": gid("Company", world.orgs["A1"].id), "name": "p", **variables}},
        token=world.token(*OWNER),
    )
    assert error(body) == ("BAD_USER_INPUT", field)
    assert await FailoverPlan.all().count() == 0


async def test_tenant_account_of_the_plan_must_be_the_companys(world, gql) -> None:
    a2_account = await make_account(world, "A2")
    b1_account = await make_account(world, "B1")
    a1 = gid("Company", world.orgs["A1"].id)
    # In scope (the provider's) but another company's: bad input; outside scope: not found.
    for token, account, want in (
        (world.token(*ADMIN), a2_account, "BAD_USER_INPUT"),
        (world.token(*OWNER), b1_account, "NOT_FOUND"),
    ):
        body = await gql(
            CREATE,
            {
                "input": {
                    "companyId": a1,
                    "name": "p",
                    "tenantAccountId": gid("TenantAccount", account.id),
                }
            },
            token=token,
        )
        assert error(body) == (want, "input.tenantAccountId")
    # A company outside scope is NOT_FOUND too.
    body = await gql(
        CREATE,
        {"input": {"companyId": gid("Company", world.orgs["B1"].id), "name": "p"}},
        token=world.token(*OWNER),
    )
    assert error(body) == ("NOT_FOUND", "input.companyId")
    assert await FailoverPlan.all().count() == 0


async def test_every_prerequisite_error_names_its_field(world, gql) -> None:
    a1 = await make_account(world, "A1")
    a1_other = await make_account(world, "A1", name="A1-second")
    a2 = await make_account(world, "A2")
    b1 = await make_account(world, "B1")
    ok = [await make_replica(a1, f"ok{i}") for i in range(3)]
    cdp = await make_replica(a1, "cdp", ReplicaKind.CDP)
    empty = await make_replica(a1, "never", points=[])
    second_account = await make_replica(a1_other, "elsewhere")
    of_a2 = await make_replica(a2, "a2vm")
    of_b1 = await make_replica(b1, "b1vm")
    plan = await make_plan(world.orgs["A1"])
    bound = await make_plan(world.orgs["A1"], "Bound", tenant_account=a1)
    other = await make_plan(world.orgs["A1"], "Other site")
    held = await make_replica(a1, "held")
    await add_vms(other, [held])
    await add_vms(plan, [ok[0], ok[1]], delay=7)
    before = await plan_vm_ids(plan)
    owner, admin = world.token(*OWNER), world.token(*ADMIN)
    o0 = (ok[0].id, 0)

    cases: list[tuple[str, dict[str, Any], str, str]] = [
        (owner, vms_input(plan.id, o0, (of_b1.id, 0)), "NOT_FOUND", "input.vms.1.replicaId"),
        (owner, vms_input(plan.id, o0, (99999, 0)), "NOT_FOUND", "input.vms.1.replicaId"),
        (admin, vms_input(plan.id, o0, (of_a2.id, 0)), "BAD_USER_INPUT", "input.vms.1.replicaId"),
        (owner, vms_input(plan.id, o0, (empty.id, 0)), "BAD_USER_INPUT", "input.vms.1.replicaId"),
        (
            owner,
            vms_input(plan.id, o0, (ok[1].id, 0), (cdp.id, 0)),
            "BAD_USER_INPUT",
            "input.vms.2.replicaId",
        ),
        (
            owner,
            vms_input(plan.id, (cdp.id, 0), o0),
            "BAD_USER_INPUT",
            "input.vms.1.replicaId",
        ),
        (owner, vms_input(plan.id, o0, (held.id, 0)), "CONFLICT", "input.vms.1.replicaId"),
        (owner, vms_input(plan.id, o0, o0), "BAD_USER_INPUT", "input.vms.1.replicaId"),
        (owner, vms_input(plan.id, (ok[0].id, -1)), "BAD_USER_INPUT", "input.vms.0.delaySeconds"),
        (
            owner,
            vms_input(plan.id, o0, (ok[1].id, 3601)),
            "BAD_USER_INPUT",
            "input.vms.1.delaySeconds",
        ),
        (
            owner,
            vms_input(bound.id, o0, (second_account.id, 0)),
            "BAD_USER_INPUT",
            "input.vms.1.replicaId",
        ),
        (
            owner,
            {"input": {"id": gid("FailoverPlan", plan.id), "vms": [{"replicaId": "nope"}]}},
            "BAD_USER_INPUT",
            "input.vms.0.replicaId",
        ),
        (
            owner,
            vms_input(plan.id, *[(i + 1, 0) for i in range(failover_plan_vms.MAX_VMS + 1)]),
            "BAD_USER_INPUT",
            "input.vms",
        ),
    ]
    for token, variables, want_code, want_field in cases:
        body = await gql(SET_VMS, variables, token=token)
        assert error(body) == (want_code, want_field), (variables["input"]["vms"][:3], body)
        # All or nothing: the list before the refused call is intact.
        assert await plan_vm_ids(plan) == before
    body = await gql(SET_VMS, vms_input(plan.id, o0, (held.id, 0)), token=owner)
    assert "Other site" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["plan"] == "Other site"
    # The boundaries themselves are accepted: delays 0 and 3600, CDP alone.
    body = await gql(SET_VMS, vms_input(plan.id, (ok[2].id, 3600), (ok[1].id, 0)), token=owner)
    assert code(body) is None
    assert await plan_vm_ids(plan) == [(ok[2].id, 0, 3600), (ok[1].id, 1, 0)]
    body = await gql(SET_VMS, vms_input(bound.id, (cdp.id, 0)), token=owner)
    assert [v["replicaKind"] for v in body["data"]["failoverPlanSetVms"]["vms"]] == ["CDP"]
    # An empty list empties the plan.
    body = await gql(SET_VMS, vms_input(plan.id), token=owner)
    assert body["data"]["failoverPlanSetVms"]["notReadyReasons"] == ["the plan has no VMs"]


async def test_a_failing_insert_is_rolled_back_whole(world, db) -> None:
    """The replacement deletes and inserts in one transaction: a collision on the last row
    (a race the checks cannot see) leaves the previous list."""
    account = await make_account(world, "A1")
    r = [await make_replica(account, f"vm{i}") for i in range(3)]
    plan = await make_plan(world.orgs["A1"])
    await add_vms(plan, [r[0]])
    actor = Actor(await principal_for_bearer(world.token(*OWNER)))
    original = failover_plan_vms._check_other_plans
    other = await make_plan(world.orgs["A1"], "Other")
    await add_vms(other, [r[2]])
    calls = []

    async def blind(plan_arg, vms):  # the first check misses the other plan's row
        calls.append(1)
        if len(calls) > 1:
            await original(plan_arg, vms)

    failover_plan_vms._check_other_plans = blind  # type: ignore[assignment]
    try:
        with pytest.raises(Conflict) as caught:
            await failover_plan_vms.set_vms(actor, plan.id, [VmInput(r[1].id), VmInput(r[2].id)])
    finally:
        failover_plan_vms._check_other_plans = original  # type: ignore[assignment]
    assert caught.value.field == "input.vms.1.replicaId"
    assert await plan_vm_ids(plan) == [(r[0].id, 0, 0)]
    assert await FailoverPlanVm.filter(replica_id=r[1].id).count() == 0


@pytest.mark.parametrize(
    "state", [s for s in PlanState if s is not PlanState.READY], ids=lambda s: s.value
)
async def test_edits_only_while_ready(world, gql, state: PlanState) -> None:
    account = await make_account(world, "A1")
    r = await make_replica(account, "vm")
    plan = await make_plan(world.orgs["A1"], state=state)
    await add_vms(plan, [r])
    pid = gid("FailoverPlan", plan.id)
    for document, variables, token in (
        (UPDATE, {"input": {"id": pid, "name": "new"}}, world.token(*OWNER)),
        (SET_VMS, vms_input(plan.id), world.token(*OWNER)),
        (SET_SCRIPTS, {"input": {"id": pid, "preFailoverScript": "a"}}, world.token(*ADMIN)),
    ):
        body = await gql(document, variables, token=token)
        assert code(body) == "CONFLICT", (document, body)
        assert state.value in body["errors"][0]["message"]
        assert body["errors"][0]["extensions"]["state"] == state.value
    body = await gql(DELETE, {"id": pid}, token=world.token(*OWNER))
    removable = state in failover_plans.REMOVABLE
    assert code(body) == (None if removable else "CONFLICT"), body
    after = await FailoverPlan.filter(id=plan.id).first()
    assert (after is None) == removable
    if after is not None:
        assert (after.name, after.pre_failover_script) == ("Site A", "")
        assert await plan_vm_ids(plan) == [(r.id, 0, 0)]


# --- scripts -------------------------------------------------------------------------------


async def test_scripts_are_the_providers(world, gql) -> None:
    plan = await make_plan(world.orgs["A1"])
    pid = gid("FailoverPlan", plan.id)
    variables = {
        "input": {
            "id": pid,
            "preFailoverScript": " C:\\scripts\\pre.cmd --site A ",
            "postFailoverScript": "/opt/post.sh",
        }
    }
    for key in ("A1:Company Owner", "A1:Company Administrator", "A1:Location Administrator"):
        p = await principal_for_bearer(world.tokens[key])
        assert not engine.allows(p, FAILOVER_SCRIPTS, Action.UPDATE)
        body = await gql(SET_SCRIPTS, variables, token=world.tokens[key])
        assert code(body) == "FORBIDDEN", (key, body)
        body = await gql(READ, {"id": pid}, token=world.tokens[key])
        assert body["data"]["failoverPlan"]["scripts"] is None
    for org, role in (ADMIN, ("R1", "Service Provider Administrator")):
        p = await principal_for_bearer(world.token(org, role))
        assert engine.allows(p, FAILOVER_SCRIPTS, Action.UPDATE)
        body = await gql(SET_SCRIPTS, variables, token=world.token(org, role))
        assert body["data"]["failoverPlanSetScripts"]["scripts"] == {
            "preFailover": "C:\\scripts\\pre.cmd --site A",
            "postFailover": "/opt/post.sh",
        }, body
    for bad, field in (
        ({"preFailoverScript": "a\nb"}, "input.preFailoverScript"),
        ({"postFailoverScript": "x" * 1001}, "input.postFailoverScript"),
        ({"postFailoverScript": "a\rb"}, "input.postFailoverScript"),
    ):
        body = await gql(SET_SCRIPTS, {"input": {"id": pid, **bad}}, token=world.token(*ADMIN))
        assert error(body) == ("BAD_USER_INPUT", field)
    row = await FailoverPlan.get(id=plan.id)
    assert row.pre_failover_script == "C:\\scripts\\pre.cmd --site A"
    body = await gql(SET_SCRIPTS, {"input": {"id": pid}}, token=world.token(*ADMIN))
    assert body["data"]["failoverPlanSetScripts"]["scripts"] == {
        "preFailover": "",
        "postFailover": "",
    }


# --- readiness -----------------------------------------------------------------------------


async def test_readiness_reasons(world, gql) -> None:
    account = await make_account(world, "A1")
    a = await make_replica(account, "alpha")
    b = await make_replica(account, "beta")
    plan = await make_plan(world.orgs["A1"], tenant_account=account)
    await add_vms(plan, [a, b])
    assert await failover_readiness.readiness(plan) == []
    await VmReplica.filter(id=a.id).update(restore_points=[])
    await VmReplica.filter(id=b.id).update(state=ReplicaState.FAILOVER)
    assert await failover_readiness.readiness(plan) == [
        "the replica alpha has no restore point",
        "the replica beta is FAILOVER, not READY",
    ]
    await VmReplica.filter(id__in=[a.id, b.id]).update(restore_points=POINTS, state="READY")
    await TenantAccount.filter(id=account.id).update(enabled=False)
    reasons = await failover_readiness.readiness(plan)
    assert reasons == [
        "the tenant account A1-tenant is disabled, its lease expired, or its company or "
        "reseller is disabled"
    ]
    await TenantAccount.filter(id=account.id).update(enabled=True)
    await Organization.filter(id=world.orgs["A1"].id).update(enabled=False)
    reasons = await failover_readiness.readiness(plan)
    assert reasons[0] == "the company A1 is disabled" and len(reasons) == 2
    await Organization.filter(id=world.orgs["A1"].id).update(enabled=True)
    await Organization.filter(id=world.orgs["R1"].id).update(enabled=False)
    assert (await failover_readiness.readiness(plan))[0] == "the company A1's reseller is disabled"
    await Organization.filter(id=world.orgs["R1"].id).update(enabled=True)
    body = await gql(READ, {"id": gid("FailoverPlan", plan.id)}, token=world.token(*OWNER))
    assert body["data"]["failoverPlan"]["ready"] is True


# --- scope ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who", [("R2", "Service Provider Global Administrator"), ("B1", "Company Owner")]
)
async def test_other_tenants_plans_and_replicas_are_not_found(world, gql, who) -> None:
    account = await make_account(world, "A1")
    replica = await make_replica(account, "vm")
    plan = await make_plan(world.orgs["A1"])
    await add_vms(plan, [replica])
    own = await make_plan(world.orgs["B1"], "B1 plan")
    pid = gid("FailoverPlan", plan.id)
    token = world.token(*who)
    for document, variables, field in (
        (READ, {"id": pid}, "failoverPlan"),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": pid}, "node"),
        (UPDATE, {"input": {"id": pid, "name": "x"}}, "failoverPlanUpdate"),
        (DELETE, {"id": pid}, "failoverPlanDelete"),
        (SET_VMS, vms_input(plan.id), "failoverPlanSetVms"),
    ):
        body = await gql(document, variables, token=token)
        assert outcome(body, field) == "NOT_FOUND", (document, body)
    p = await principal_for_bearer(token)
    body = await gql(SET_SCRIPTS, {"input": {"id": pid}}, token=token)
    refused_first = not engine.allows(p, FAILOVER_SCRIPTS, Action.UPDATE)
    assert code(body) == ("FORBIDDEN" if refused_first else "NOT_FOUND")
    body = await gql(LIST, {}, token=token)
    assert body["data"]["failoverPlans"]["nodes"] == [
        {"id": gid("FailoverPlan", own.id), "name": "B1 plan", "state": "READY"}
    ]
    body = await gql(
        LIST, {"filter": {"companyId": gid("Company", world.orgs["A1"].id)}}, token=token
    )
    assert body["data"]["failoverPlans"]["nodes"] == []
    # Another tenant's replica in one's own plan: not found, and nothing written.
    body = await gql(SET_VMS, vms_input(own.id, (replica.id, 0)), token=token)
    assert error(body) == ("NOT_FOUND", "input.vms.0.replicaId")
    assert await FailoverPlanVm.filter(plan_id=own.id).count() == 0
    row = await FailoverPlan.get(id=plan.id)
    assert (row.name, await plan_vm_ids(row)) == ("Site A", [(replica.id, 0, 0)])


async def test_list_filters_by_company_and_state(world, gql) -> None:
    a1 = await make_plan(world.orgs["A1"], "a1")
    failed = await make_plan(world.orgs["A1"], "a1-failed", state=PlanState.FAILED)
    await make_plan(world.orgs["A2"], "a2")
    await make_plan(world.orgs["B1"], "b1")
    token = world.token("R1", "Service Provider Global Administrator")
    body = await gql(LIST, {}, token=token)
    assert [n["name"] for n in body["data"]["failoverPlans"]["nodes"]] == ["a1", "a1-failed", "a2"]
    company = gid("Company", world.orgs["A1"].id)
    body = await gql(LIST, {"filter": {"companyId": company, "state": "FAILED"}}, token=token)
    assert body["data"]["failoverPlans"]["nodes"] == [
        {"id": gid("FailoverPlan", failed.id), "name": "a1-failed", "state": "FAILED"}
    ]
    body = await gql(LIST, {"after": None, "filter": {"companyId": company}}, token=token)
    assert [n["id"] for n in body["data"]["failoverPlans"]["nodes"]] == [
        gid("FailoverPlan", a1.id),
        gid("FailoverPlan", failed.id),
    ]


# --- the matrix, for every principal --------------------------------------------------------


def company_target(company: Organization, capability: Any) -> Target:
    return Target(
        kind=capability.kind, organization_id=company.id, organization_kind=OrgKind.COMPANY
    )


def expected(p: Principal, capability: Any, action: Action, company: Organization) -> str | None:
    """The engine's answer, then the tree's: plans are company-wide and none are in an
    own-computers scope."""
    if not engine.allows(p, capability, action):
        return "FORBIDDEN"
    if not in_scope(p, company) or p.scope_kind is RoleScope.OWN_COMPUTERS:
        return "NOT_FOUND"
    target = company_target(company, capability)
    return None if engine.can(p, capability, action, target) else "FORBIDDEN"


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_plan_operations_follow_the_matrix(subject: Subject, use_settings, db, gql) -> None:
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    visible: list[str] = []
    for company_key in sorted({home_company(world, subject), "A1"}):
        org = world.orgs[company_key]
        account = await make_account(world, company_key)
        replica = await make_replica(account, "vm")
        plan = await make_plan(org, f"{company_key} plan")
        pid = gid("FailoverPlan", plan.id)

        body = await gql(READ, {"id": pid}, token=token)
        want = expected(p, FAILOVER_PLANS, Action.READ, org)
        assert outcome(body, "failoverPlan") == want, (company_key, body)
        if want is None:
            visible.append(pid)
            got = body["data"]["failoverPlan"]
            viewer = {
                "viewerCanUpdate": (FAILOVER_PLANS, Action.UPDATE),
                "viewerCanDelete": (FAILOVER_PLANS, Action.DELETE),
                "viewerCanRun": (FAILOVER_SESSIONS, Action.CREATE),
                "viewerCanEditScripts": (FAILOVER_SCRIPTS, Action.UPDATE),
            }
            for name, (cap, action) in viewer.items():
                assert got[name] == engine.can(p, cap, action, company_target(org, cap)), name
            readable = engine.can(
                p, FAILOVER_SCRIPTS, Action.READ, company_target(org, FAILOVER_SCRIPTS)
            )
            assert (got["scripts"] is not None) == readable

        body = await gql(
            SET_SCRIPTS, {"input": {"id": pid, "preFailoverScript": "pre.cmd"}}, token=token
        )
        want = expected(p, FAILOVER_SCRIPTS, Action.UPDATE, org)
        assert outcome(body, "failoverPlanSetScripts") == want, (company_key, body)
        body = await gql(SET_VMS, vms_input(plan.id, (replica.id, 5)), token=token)
        want = expected(p, FAILOVER_PLANS, Action.UPDATE, org)
        assert outcome(body, "failoverPlanSetVms") == want, (company_key, body)
        assert await FailoverPlanVm.filter(plan_id=plan.id).count() == (1 if want is None else 0)
        body = await gql(UPDATE, {"input": {"id": pid, "description": "d"}}, token=token)
        assert outcome(body, "failoverPlanUpdate") == want, (company_key, body)
        body = await gql(
            CREATE,
            {"input": {"companyId": gid("Company", org.id), "name": "new"}},
            token=token,
        )
        want = expected(p, FAILOVER_PLANS, Action.CREATE, org)
        assert outcome(body, "failoverPlanCreate") == want, (company_key, body)
        if want is None:
            visible.append(body["data"]["failoverPlanCreate"]["id"])
        body = await gql(DELETE, {"id": pid}, token=token)
        want = expected(p, FAILOVER_PLANS, Action.DELETE, org)
        assert outcome(body, "failoverPlanDelete") == want, (company_key, body)
        if want is None:
            visible.remove(pid)
        assert await FailoverPlan.filter(id=plan.id).exists() == (want is not None)
    body = await gql(LIST, {}, token=token)
    if not engine.allows(p, FAILOVER_PLANS, Action.READ):
        assert outcome(body, "failoverPlans") == "FORBIDDEN"
    else:
        assert sorted(n["id"] for n in body["data"]["failoverPlans"]["nodes"]) == sorted(visible)


def test_the_matrix_table_is_not_trivial() -> None:
    """The table above exercises both answers of each capability across the principals."""
    from app.authz.engine import grants_for
    from tests.permission_cases import make_principal

    answers: dict[str, set[bool]] = {}
    for s in ALL_SUBJECTS:
        p = make_principal(s.portal, s.role)
        assert grants_for(p.role) is not None
        for cap, action in (
            (FAILOVER_PLANS, Action.READ),
            (FAILOVER_PLANS, Action.UPDATE),
            (FAILOVER_SCRIPTS, Action.UPDATE),
        ):
            answers.setdefault(f"{cap.kind}:{action.value}", set()).add(
                engine.allows(p, cap, action)
            )
    assert all(v == {True, False} for v in answers.values()), answers


# --- query counts ---------------------------------------------------------------------------


PAGE = f"query {{ failoverPlans(first: 50) {{ nodes {{ {PLAN_FIELDS} }} }} }}"


async def test_a_page_of_plans_costs_the_same_whatever_its_size(world, gql) -> None:
    token = world.token(*ADMIN)
    accounts = {
        "A1": await make_account(world, "A1"),
        "A2": await make_account(world, "A2", enabled=False),
    }

    async def build(n_plans: int, n_vms: int, start: int) -> None:
        for i in range(start, start + n_plans):
            company = "A1" if i % 2 else "A2"
            plan = await make_plan(world.orgs[company], f"plan{i}")
            replicas = [await make_replica(accounts[company], f"p{i}vm{j}") for j in range(n_vms)]
            await add_vms(plan, replicas, delay=3)

    await build(2, 2, 0)
    with count_queries() as small:
        body = await gql(PAGE, token=token)
    assert len(body["data"]["failoverPlans"]["nodes"]) == 2
    await build(8, 10, 2)
    with count_queries() as large:
        body = await gql(PAGE, token=token)
    nodes = body["data"]["failoverPlans"]["nodes"]
    assert len(nodes) == 10 and sum(len(n["vms"]) for n in nodes) == 84
    a1 = gid("Company", world.orgs["A1"].id)
    # The disabled account's plans are not ready, each saying why once.
    assert [n["ready"] for n in nodes] == [n["companyId"] == a1 for n in nodes]
    assert {len(n["notReadyReasons"]) for n in nodes if n["companyId"] != a1} == {1}
    assert large.count == small.count, f"{small}\n{large}"
    assert large.count <= 8, str(large)


# --- concurrency (PostgreSQL) ---------------------------------------------------------------


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_the_same_replica_into_two_plans_at_once(world) -> None:
    account = await make_account(world, "A1")
    shared = await make_replica(account, "shared")
    actor = Actor(await principal_for_bearer(world.token(*OWNER)))
    for round_ in range(5):
        plans = [await make_plan(world.orgs["A1"], f"r{round_}p{i}") for i in range(2)]
        await FailoverPlanVm.filter(replica_id=shared.id).delete()
        own = [await make_replica(account, f"r{round_}own{i}") for i in range(2)]

        async def put(plan: FailoverPlan, mine: VmReplica) -> str:
            try:
                await failover_plan_vms.set_vms(
                    actor, plan.id, [VmInput(mine.id), VmInput(shared.id, 1)]
                )
                return "ok"
            except Conflict as exc:
                assert exc.field == "input.vms.1.replicaId"
                return "CONFLICT"

        results = await asyncio.gather(put(plans[0], own[0]), put(plans[1], own[1]))
        assert sorted(results) == ["CONFLICT", "ok"], results
        winner = plans[results.index("ok")]
        loser = plans[results.index("CONFLICT")]
        assert await FailoverPlanVm.filter(replica_id=shared.id).values_list(
            "plan_id", flat=True
        ) == [winner.id]
        # The loser's list stayed as it was (empty): its own replica was not inserted either.
        assert await FailoverPlanVm.filter(plan_id=loser.id).count() == 0


async def test_a_thousand_vms_are_set_in_a_constant_number_of_statements(world) -> None:
    account = await make_account(world, "A1")
    await VmReplica.bulk_create(
        [
            VmReplica(
                tenant_account=account, name=f"vm{i:04}", source_vm="s", restore_points=POINTS
            )
            for i in range(1000)
        ]
    )
    ids = await VmReplica.all().order_by("-id").values_list("id", flat=True)
    plan = await make_plan(world.orgs["A1"])
    actor = Actor(await principal_for_bearer(world.token(*OWNER)))
    with count_queries() as queries:
        await failover_plan_vms.set_vms(
            actor, plan.id, [VmInput(r, i % 7) for i, r in enumerate(ids)]
        )
    # Two reads of the plan, the replicas, the other plans, the delete, two insert batches,
    # the audit entry.
    assert queries.count <= 9, str(queries)
    stored = await plan_vm_ids(plan)
    assert stored == [(r, i, i % 7) for i, r in enumerate(ids)]
    assert await failover_readiness.readiness(plan) == []
