"""VM replicas: register, list, read, delete; scope; the matrix for every principal."""

from __future__ import annotations

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz.capabilities import REPLICAS
from app.authz.matrix import Action
from app.models import AuditEntry
from app.models.cloud import HardwarePlan, HardwarePlanSubscription, ReplicaState, VmReplica
from tests.permission_cases import Subject, outcome
from tests.test_allocations import (
    ADMIN,
    ALL_SUBJECTS,
    code,
    expected_outcome,
    gid,
    home_company,
    make_account,
)

REGISTER = """mutation($input: VmReplicaRegisterInput!) { vmReplicaRegister(input: $input) {
  id name sourceVm kind state restorePoints subscriptionId tenantAccountId } }"""
LIST = """query($filter: VmReplicaFilter) { vmReplicas(first: 10, filter: $filter) {
  nodes { name state } } }"""


async def test_register_list_read_and_delete(world, gql) -> None:
    a1 = await make_account(world, "A1")
    plan = await HardwarePlan.create(name="P", cpu_mhz=1, memory_mb=1)
    sub = await HardwarePlanSubscription.create(tenant_account=a1, plan=plan)
    token = world.token("A1", "Company Owner")
    variables = {
        "input": {
            "tenantAccountId": gid("TenantAccount", a1.id),
            "name": "web01_replica",
            "sourceVm": "web01",
            "kind": "CDP",
            "subscriptionId": gid("HardwarePlanSubscription", sub.id),
            "restorePoints": ["2026-01-02T00:00:00+00:00", "2026-01-01T00:00:00+00:00"],
        }
    }
    body = await gql(REGISTER, variables, token=token)
    replica = body["data"]["vmReplicaRegister"]
    assert replica["state"] == "READY" and replica["kind"] == "CDP"
    assert replica["restorePoints"] == ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]
    assert replica["subscriptionId"] == gid("HardwarePlanSubscription", sub.id)
    body = await gql(REGISTER, variables, token=token)
    assert code(body) == "CONFLICT"
    await VmReplica.create(
        tenant_account=a1, name="db", source_vm="db", state=ReplicaState.FAILOVER
    )
    body = await gql(LIST, {"filter": {"state": "FAILOVER"}}, token=token)
    assert body["data"]["vmReplicas"]["nodes"] == [{"name": "db", "state": "FAILOVER"}]
    body = await gql(LIST, {}, token=world.token("A1", "Location User"))
    assert [n["name"] for n in body["data"]["vmReplicas"]["nodes"]] == ["web01_replica", "db"]
    body = await gql(
        "query($id: ID!) { node(id: $id) { ... on VmReplica { name } } }",
        {"id": replica["id"]},
        token=token,
    )
    assert body["data"]["node"] == {"name": "web01_replica"}
    body = await gql(
        "mutation($id: ID!) { vmReplicaDelete(id: $id) { deletedId } }",
        {"id": replica["id"]},
        token=token,
    )
    assert body["data"]["vmReplicaDelete"]["deletedId"] == replica["id"]
    assert await VmReplica.filter(name="web01_replica").count() == 0
    actions = (
        await AuditEntry.filter(object_type="VmReplica")
        .order_by("id")
        .values_list("action", "outcome")
    )
    assert actions == [
        ("vmReplicaRegister", "SUCCESS"),
        ("vmReplicaRegister", "FAILURE"),
        ("vmReplicaDelete", "SUCCESS"),
    ]


async def test_subscription_of_another_account_is_bad_input(world, gql) -> None:
    a1 = await make_account(world, "A1")
    a2 = await make_account(world, "A2")
    plan = await HardwarePlan.create(name="P", cpu_mhz=1, memory_mb=1)
    foreign = await HardwarePlanSubscription.create(tenant_account=a2, plan=plan)
    body = await gql(
        REGISTER,
        {
            "input": {
                "tenantAccountId": gid("TenantAccount", a1.id),
                "name": "x",
                "sourceVm": "x",
                "subscriptionId": gid("HardwarePlanSubscription", foreign.id),
            }
        },
        token=world.token(*ADMIN),
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "input.subscriptionId"


async def test_cross_tenant_replicas_are_not_found(world, gql) -> None:
    a1 = await make_account(world, "A1")
    replica = await VmReplica.create(tenant_account=a1, name="vm", source_vm="vm")
    rid = gid("VmReplica", replica.id)
    for principal in (("R2", "Service Provider Global Administrator"), ("B1", "Company Owner")):
        token = world.token(*principal)
        for document in (
            "query($id: ID!) { vmReplica(id: $id) { name } }",
            "query($id: ID!) { node(id: $id) { id } }",
            "mutation($id: ID!) { vmReplicaDelete(id: $id) { deletedId } }",
        ):
            body = await gql(document, {"id": rid}, token=token)
            assert code(body) == "NOT_FOUND", (principal, document, body)
        body = await gql(LIST, {}, token=token)
        assert body["data"]["vmReplicas"]["nodes"] == []
        body = await gql(
            REGISTER,
            {
                "input": {
                    "tenantAccountId": gid("TenantAccount", a1.id),
                    "name": "y",
                    "sourceVm": "y",
                }
            },
            token=token,
        )
        assert code(body) == "NOT_FOUND"
    assert await VmReplica.all().count() == 1


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_replica_operations_follow_the_matrix(
    subject: Subject, use_settings, db, gql
) -> None:
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    for company in sorted({home_company(world, subject), "A1"}):
        account = await make_account(world, company)
        org = world.orgs[company]
        replica = await VmReplica.create(tenant_account=account, name="seeded", source_vm="s")
        body = await gql(
            "query($id: ID!) { vmReplica(id: $id) { name } }",
            {"id": gid("VmReplica", replica.id)},
            token=token,
        )
        want = expected_outcome(p, REPLICAS, Action.READ, org)
        assert outcome(body, "vmReplica") == want, (company, body)
        body = await gql(
            REGISTER,
            {
                "input": {
                    "tenantAccountId": gid("TenantAccount", account.id),
                    "name": "new",
                    "sourceVm": "vm",
                }
            },
            token=token,
        )
        want = expected_outcome(p, REPLICAS, Action.CREATE, org)
        assert outcome(body, "vmReplicaRegister") == want, (company, body)
