"""Hardware plan subscriptions with their VLANs, and public IPs: allocation rules (lowest free,
no overlap, all-or-nothing exhaustion, release, VCD refused), scope, the matrix, and
concurrency on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import Capability
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.graphql.ids import to_global_id
from app.models import AuditEntry, Organization, OrgKind
from app.models.cloud import (
    HardwarePlan,
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    PublicIpAllocation,
    PublicIpPool,
    TenantAccount,
    TenantAccountType,
    VlanAllocation,
    VlanRange,
    VmReplica,
)
from app.services import allocations
from app.services.actor import Actor
from tests.conftest import ON_POSTGRES
from tests.permission_cases import Subject, outcome, subjects
from tests.reseller_grants import give_resellers

ADMIN = ("Provider", "Service Provider Global Administrator")

# --- shared helpers (also used by the replica and remote connection tests) -----------------


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


async def make_account(world, company: str = "A1", name: str | None = None, **kw: Any):
    fields: dict[str, Any] = {
        "type": TenantAccountType.STANDALONE,
        "managed_by_provider": True,
        "password_hash": "x",
    }
    fields.update(kw)
    return await TenantAccount.create(
        company=world.orgs[company], name=name or f"{company}-tenant", **fields
    )


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


def in_scope(p: Principal, company: Organization) -> bool:
    """The tree's rule, written out (not the SQL under test): restricted staff see their
    companies, the provider everything, a reseller its companies, a company itself."""
    if p.company_ids is not None:
        return company.id in p.company_ids
    if p.organization_kind is OrgKind.PROVIDER:
        return True
    if p.organization_kind is OrgKind.RESELLER:
        return company.parent_id == p.organization_id  # type: ignore[attr-defined]
    return company.id == p.organization_id


def expected_outcome(
    p: Principal, capability: Capability, action: Action, company: Organization
) -> str | None:
    if not engine.allows(p, capability, action):
        return "FORBIDDEN"
    if not in_scope(p, company):
        return "NOT_FOUND"
    target = Target(
        kind=capability.kind, organization_id=company.id, organization_kind=company.kind
    )
    return None if engine.can(p, capability, action, target) else "FORBIDDEN"


def home_company(world, subject: Subject) -> str:
    """A company inside the subject's tree (so that allowed cases really succeed)."""
    if subject.suffix == ":P1":
        return "P1"
    return {"Provider": "A1", "R1": "A1", "R2": "B1"}.get(subject.org, subject.org)


ALL_SUBJECTS = [s for edition in ("service_provider", "enterprise") for s in subjects(edition)]


# --- fixtures ------------------------------------------------------------------------------


async def make_plan(name: str = "Plan", with_internet: int = 1, without: int = 2) -> HardwarePlan:
    plan = await HardwarePlan.create(
        name=name,
        cpu_mhz=4000,
        memory_mb=8192,
        networks_with_internet=with_internet,
        networks_without_internet=without,
    )
    await HardwarePlanDatastore.create(plan=plan, datastore="ds1", quota_gb=100)
    await HardwarePlanDatastore.create(plan=plan, datastore="ds2", quota_gb=50)
    await give_resellers(plan=plan)  # companies under a reseller need it granted
    return plan


SUBSCRIBE = """mutation($input: HardwarePlanSubscribeInput!) { hardwarePlanSubscribe(input: $input) {
  id planName cpuLimitMhz memoryLimitMb storageLimitGb cpuUsedMhz storageUsedGb
  vlans { host vlanId internet } } }"""
ALLOCATE = """mutation($input: PublicIpAllocateInput!) {
  publicIpAllocate(input: $input) { id address } }"""


# --- VLANs ---------------------------------------------------------------------------------


async def test_subscription_allocates_lowest_free_vlans_without_overlap(world, gql) -> None:
    await VlanRange.create(host="h1", first_id=100, last_id=101, internet=True)
    await VlanRange.create(host="h1", first_id=200, last_id=203, internet=False)
    await VlanRange.create(host="h2", first_id=200, last_id=201, internet=False)
    plan = await make_plan()
    a1 = await make_account(world, "A1")
    b1 = await make_account(world, "B1")
    token = world.token(*ADMIN)
    body = await gql(
        SUBSCRIBE,
        {
            "input": {
                "tenantAccountId": gid("TenantAccount", a1.id),
                "planId": gid("HardwarePlan", plan.id),
            }
        },
        token=token,
    )
    sub = body["data"]["hardwarePlanSubscribe"]
    assert sub["planName"] == "Plan" and sub["cpuLimitMhz"] == 4000
    assert sub["storageLimitGb"] == 150 and sub["cpuUsedMhz"] == 0
    assert sorted((v["host"], v["vlanId"], v["internet"]) for v in sub["vlans"]) == [
        ("h1", 100, True),
        ("h1", 200, False),
        ("h1", 201, False),
    ]
    body = await gql(
        SUBSCRIBE,
        {
            "input": {
                "tenantAccountId": gid("TenantAccount", b1.id),
                "planId": gid("HardwarePlan", plan.id),
            }
        },
        token=token,
    )
    assert sorted(
        (v["host"], v["vlanId"]) for v in body["data"]["hardwarePlanSubscribe"]["vlans"]
    ) == [
        ("h1", 101),
        ("h1", 202),
        ("h1", 203),
    ]
    # The same plan twice for one account: CONFLICT.
    body = await gql(
        SUBSCRIBE,
        {
            "input": {
                "tenantAccountId": gid("TenantAccount", a1.id),
                "planId": gid("HardwarePlan", plan.id),
            }
        },
        token=token,
    )
    assert code(body) == "CONFLICT"
    body = await gql(
        "query($id: ID!) { tenantVlans(tenantAccountId: $id) { host vlanId } }",
        {"id": gid("TenantAccount", b1.id)},
        token=world.token("B1", "Company Owner"),
    )
    assert body["data"]["tenantVlans"] == [
        {"host": "h1", "vlanId": 101},
        {"host": "h1", "vlanId": 202},
        {"host": "h1", "vlanId": 203},
    ]
    assert await AuditEntry.filter(action="hardwarePlanSubscribe", outcome="SUCCESS").count() == 2


async def test_exhausted_vlans_refuse_the_subscription_and_write_nothing(world, gql) -> None:
    await VlanRange.create(host="h1", first_id=10, last_id=10, internet=True)
    await VlanRange.create(host="h1", first_id=20, last_id=20, internet=False)
    plan = await make_plan(with_internet=1, without=2)  # two without internet: one too many
    a1 = await make_account(world, "A1")
    body = await gql(
        SUBSCRIBE,
        {
            "input": {
                "tenantAccountId": gid("TenantAccount", a1.id),
                "planId": gid("HardwarePlan", plan.id),
            }
        },
        token=world.token(*ADMIN),
    )
    assert code(body) == "CONFLICT"
    assert (
        "no free VLAN is left for networks without internet access" in body["errors"][0]["message"]
    )
    assert await HardwarePlanSubscription.all().count() == 0
    assert await VlanAllocation.all().count() == 0
    assert await AuditEntry.filter(action="hardwarePlanSubscribe", outcome="FAILURE").count() == 1


async def test_unsubscribe_releases_vlans_and_is_refused_while_replicas_use_it(world, gql) -> None:
    await VlanRange.create(host="h1", first_id=10, last_id=11, internet=True)
    await VlanRange.create(host="h1", first_id=20, last_id=21, internet=False)
    plan = await make_plan(with_internet=1, without=1)
    a1 = await make_account(world, "A1")
    actor = Actor(await principal_for_bearer(world.token(*ADMIN)))
    sub = await allocations.subscribe(actor, a1.id, plan.id)
    replica = await VmReplica.create(tenant_account=a1, name="vm", source_vm="vm", subscription=sub)
    mutation = "mutation($id: ID!) { hardwarePlanUnsubscribe(id: $id) { deletedId } }"
    variables = {"id": gid("HardwarePlanSubscription", sub.id)}
    body = await gql(mutation, variables, token=world.token(*ADMIN))
    assert code(body) == "CONFLICT"
    assert await VlanAllocation.all().count() == 2
    await replica.delete()
    body = await gql(mutation, variables, token=world.token(*ADMIN))
    assert body["data"]["hardwarePlanUnsubscribe"]["deletedId"] == variables["id"]
    assert await VlanAllocation.all().count() == 0
    # Released VLANs are handed out again, lowest first.
    again = await allocations.subscribe(actor, a1.id, plan.id)
    assert sorted(
        await VlanAllocation.filter(subscription_id=again.id).values_list("vlan_id", flat=True)
    ) == [10, 20]


# --- public IPs ----------------------------------------------------------------------------


async def test_public_ips_lowest_first_all_or_nothing_release(world, gql) -> None:
    pool = await PublicIpPool.create(
        name="p", first_address="198.51.100.1", last_address="198.51.100.4"
    )
    await give_resellers(pool=pool)
    a1 = await make_account(world, "A1")
    token = world.token(*ADMIN)

    def alloc(count: int, account=a1) -> dict[str, Any]:
        return {
            "input": {
                "tenantAccountId": gid("TenantAccount", account.id),
                "poolId": gid("PublicIpPool", pool.id),
                "count": count,
            }
        }

    body = await gql(ALLOCATE, alloc(2), token=token)
    got = body["data"]["publicIpAllocate"]
    assert [r["address"] for r in got] == ["198.51.100.1", "198.51.100.2"]
    body = await gql(ALLOCATE, alloc(3), token=token)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["extensions"]["field"] == "input.count"
    assert await PublicIpAllocation.all().count() == 2  # nothing half-written
    body = await gql(
        "mutation($id: ID!) { publicIpRelease(id: $id) { deletedId } }",
        {"id": got[0]["id"]},
        token=token,
    )
    assert code(body) is None
    body = await gql(ALLOCATE, alloc(2), token=token)
    assert [r["address"] for r in body["data"]["publicIpAllocate"]] == [
        "198.51.100.1",
        "198.51.100.3",
    ]
    body = await gql(
        "query($id: ID!) { tenantPublicIps(tenantAccountId: $id) { address } }",
        {"id": gid("TenantAccount", a1.id)},
        token=world.token("A1", "Company Owner"),
    )
    assert [r["address"] for r in body["data"]["tenantPublicIps"]] == [
        "198.51.100.2",
        "198.51.100.1",
        "198.51.100.3",
    ]
    # Removing the tenant account releases its addresses.
    await a1.delete()
    assert await PublicIpAllocation.all().count() == 0


async def test_public_ips_refused_for_cloud_director_accounts(world, gql) -> None:
    pool = await PublicIpPool.create(name="p", first_address="10.0.0.1", last_address="10.0.0.9")
    await give_resellers(pool=pool)
    vcd = await make_account(world, "A1", type=TenantAccountType.VCD)
    body = await gql(
        ALLOCATE,
        {
            "input": {
                "tenantAccountId": gid("TenantAccount", vcd.id),
                "poolId": gid("PublicIpPool", pool.id),
                "count": 1,
            }
        },
        token=world.token(*ADMIN),
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["message"].startswith(
        "public IP addresses are for native (standalone) tenant accounts only"
    )
    assert await PublicIpAllocation.all().count() == 0


async def test_cross_tenant_objects_are_not_found(world, gql) -> None:
    pool = await PublicIpPool.create(name="p", first_address="10.0.0.1", last_address="10.0.0.9")
    await give_resellers(pool=pool)
    await VlanRange.create(host="h1", first_id=10, last_id=11, internet=True)
    plan = await make_plan(with_internet=1, without=0)
    a1 = await make_account(world, "A1")
    actor = Actor(await principal_for_bearer(world.token(*ADMIN)))
    sub = await allocations.subscribe(actor, a1.id, plan.id)
    [ip] = await allocations.allocate_public_ips(actor, a1.id, pool.id, 1)
    for principal in (("R2", "Service Provider Global Administrator"), ("B1", "Company Owner")):
        token = world.token(*principal)
        checks = [
            (
                "query($id: ID!) { tenantPublicIps(tenantAccountId: $id) { address } }",
                gid("TenantAccount", a1.id),
            ),
            (
                "query($id: ID!) { tenantVlans(tenantAccountId: $id) { vlanId } }",
                gid("TenantAccount", a1.id),
            ),
            (
                "query($id: ID!) { hardwarePlanSubscription(id: $id) { id } }",
                gid("HardwarePlanSubscription", sub.id),
            ),
            ("query($id: ID!) { node(id: $id) { id } }", gid("PublicIpAllocation", ip.id)),
        ]
        if principal[0] == "R2":
            checks += [
                (
                    "mutation($id: ID!) { publicIpRelease(id: $id) { deletedId } }",
                    gid("PublicIpAllocation", ip.id),
                ),
                (
                    "mutation($id: ID!) { hardwarePlanUnsubscribe(id: $id) { deletedId } }",
                    gid("HardwarePlanSubscription", sub.id),
                ),
            ]
        for document, object_id in checks:
            body = await gql(document, {"id": object_id}, token=token)
            assert code(body) == "NOT_FOUND", (principal, document, body)
    assert await PublicIpAllocation.all().count() == 1


# --- the matrix, for every principal of the world -------------------------------------------


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_allocation_operations_follow_the_matrix(
    subject: Subject, use_settings, db, gql
) -> None:
    from app.authz.capabilities import TENANT_ACCOUNTS
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    pool = await PublicIpPool.create(name="p", first_address="10.0.0.1", last_address="10.0.0.99")
    await give_resellers(pool=pool)
    for company in sorted({home_company(world, subject), "A1"}):
        account = await make_account(world, company)
        org = world.orgs[company]
        account_id = gid("TenantAccount", account.id)
        body = await gql(
            "query($id: ID!) { tenantPublicIps(tenantAccountId: $id) { address } }",
            {"id": account_id},
            token=token,
        )
        assert outcome(body, "tenantPublicIps") == expected_outcome(
            p, TENANT_ACCOUNTS, Action.READ, org
        ), (company, body)
        body = await gql(
            ALLOCATE,
            {
                "input": {
                    "tenantAccountId": account_id,
                    "poolId": gid("PublicIpPool", pool.id),
                    "count": 1,
                }
            },
            token=token,
        )
        assert outcome(body, "publicIpAllocate") == expected_outcome(
            p, TENANT_ACCOUNTS, Action.CREATE, org
        ), (company, body)


# --- concurrency (PostgreSQL) --------------------------------------------------------------


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks and concurrent transactions need PostgreSQL")
async def test_concurrent_allocations_never_overlap(world) -> None:
    await VlanRange.create(host="h1", first_id=1, last_id=30, internet=True)
    await VlanRange.create(host="h1", first_id=100, last_id=159, internet=False)
    pool = await PublicIpPool.create(name="p", first_address="10.1.0.1", last_address="10.1.0.100")
    await give_resellers(pool=pool)
    plans = [await make_plan(f"plan{i}", with_internet=1, without=2) for i in range(2)]
    accounts = [await make_account(world, "A1", name=f"t{i}") for i in range(20)]
    actor = Actor(await principal_for_bearer(world.token(*ADMIN)))

    async def subscribe(account, plan) -> str:
        try:
            await allocations.subscribe(actor, account.id, plan.id)
            return "ok"
        except Exception as exc:
            return type(exc).__name__

    async def allocate(account) -> str:
        try:
            await allocations.allocate_public_ips(actor, account.id, pool.id, 3)
            return "ok"
        except Exception as exc:
            return type(exc).__name__

    results = await asyncio.gather(
        *[subscribe(a, plan) for a in accounts for plan in plans],  # 40 × 3 VLANs on 30+60
        *[allocate(a) for a in accounts],  # 20 × 3 addresses
        *[allocate(a) for a in accounts[:15]],  # 15 × 3 more: only 40 left of 100
    )
    subs, ips = results[:40], results[40:]
    assert subs.count("ok") == 30 and set(subs) == {"ok", "Conflict"}
    assert ips.count("ok") == 33 and set(ips) == {"ok", "Conflict"}
    vlans = await VlanAllocation.all().values_list("host", "vlan_id")
    assert len(vlans) == 90 == len(set(vlans))
    assert await HardwarePlanSubscription.all().count() == 30
    addresses = await PublicIpAllocation.all().values_list("address", flat=True)
    assert len(addresses) == 99 == len(set(addresses))
