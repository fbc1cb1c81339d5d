"""What the provider hands to resellers, and the caps on the resellers' companies: quotas on
repositories, hardware plans, public IP pools. Each refusal with its code and message; reading
in scope; the matrix for every principal; no oversubscription under concurrency (PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import CLOUD_INFRASTRUCTURE, RESELLERS
from app.authz.matrix import Action
from app.authz.principal import Target
from app.errors import Conflict
from app.models import (
    BackupResource,
    CloudRepository,
    HardwarePlan,
    OrgKind,
    PublicIpPool,
    ResellerRepositoryQuota,
)
from app.services import quotas
from app.services.actor import Actor
from tests.conftest import ON_POSTGRES
from tests.permission_cases import Subject, gid, outcome
from tests.test_allocations import ALL_SUBJECTS, make_account

ADMIN = ("Provider", "Service Provider Global Administrator")
R1_ADMIN = ("R1", "Service Provider Global Administrator")
R2_ADMIN = ("R2", "Service Provider Global Administrator")
A1_OWNER = ("A1", "Company Owner")

SET_RESOURCE = """mutation($input: BackupResourceSetInput!) {
  backupResourceSet(input: $input) { quotaGb } }"""
SET_REPO_QUOTA = """mutation($input: ResellerRepositoryQuotaSetInput!) {
  resellerRepositoryQuotaSet(input: $input) { repositoryName quotaGb usedGb freeGb } }"""
REMOVE_REPO_QUOTA = """mutation($input: ResellerRepositoryQuotaRemoveInput!) {
  resellerRepositoryQuotaRemove(input: $input) { deletedId } }"""
SUBSCRIBE = """mutation($input: HardwarePlanSubscribeInput!) {
  hardwarePlanSubscribe(input: $input) { planName } }"""
GRANT = """mutation($input: ResellerHardwarePlanInput!) {
  resellerHardwarePlanGrant(input: $input) { planName subscriptions } }"""
REVOKE = """mutation($input: ResellerHardwarePlanInput!) {
  resellerHardwarePlanRevoke(input: $input) { deletedId } }"""
ALLOCATE = """mutation($input: PublicIpAllocateInput!) {
  publicIpAllocate(input: $input) { address } }"""
SET_POOL_QUOTA = """mutation($input: ResellerIpPoolQuotaSetInput!) {
  resellerIpPoolQuotaSet(input: $input) { poolName maxAddresses allocated } }"""
REMOVE_POOL_QUOTA = """mutation($input: ResellerIpPoolQuotaRemoveInput!) {
  resellerIpPoolQuotaRemove(input: $input) { deletedId } }"""
READ = """query($id: ID!) { resellerResources(resellerId: $id) {
  repositories { repositoryName quotaGb usedGb freeGb }
  hardwarePlans { planName subscriptions }
  ipPools { poolName maxAddresses allocated } } }"""


def error(body: dict[str, Any]) -> tuple[str, str]:
    err = body["errors"][0]
    return err["extensions"]["code"], err["message"]


def rid(world, key: str) -> str:
    return gid("Reseller", world.orgs[key].id)


async def set_resource(gql, token: str, account, repo, quota: int) -> dict[str, Any]:
    variables = {
        "input": {
            "tenantAccountId": gid("TenantAccount", account.id),
            "repositoryId": gid("CloudRepository", repo.id),
            "quotaGb": quota,
        }
    }
    return await gql(SET_RESOURCE, variables, token=token)


async def set_repo_quota(gql, token: str, world, reseller: str, repo, quota: int):
    variables = {
        "input": {
            "resellerId": rid(world, reseller),
            "repositoryId": gid("CloudRepository", repo.id),
            "quotaGb": quota,
        }
    }
    return await gql(SET_REPO_QUOTA, variables, token=token)


# --- repositories ----------------------------------------------------------------------------


async def test_repository_quota_caps_the_resellers_companies(world, gql) -> None:
    token = world.token(*ADMIN)
    repo = await CloudRepository.create(name="repo", capacity_gb=1000)
    a1 = await make_account(world, "A1")
    a2 = await make_account(world, "A2")
    p1 = await make_account(world, "P1")

    # Nothing allocated to R1 yet: its companies get nothing; P1 (under the provider) is free.
    assert error(await set_resource(gql, token, a1, repo, 50)) == (
        "CONFLICT",
        "the provider has not allocated this cloud repository to the company's reseller",
    )
    assert (await set_resource(gql, token, p1, repo, 500))["data"]["backupResourceSet"] == {
        "quotaGb": 500
    }

    body = await set_repo_quota(gql, token, world, "R1", repo, 100)
    assert body["data"]["resellerRepositoryQuotaSet"] == {
        "repositoryName": "repo",
        "quotaGb": 100,
        "usedGb": 0,
        "freeGb": 100,
    }
    assert "errors" not in await set_resource(gql, token, a1, repo, 60)
    # Reseller staff are capped the same way.
    r1 = world.token(*R1_ADMIN)
    assert error(await set_resource(gql, r1, a2, repo, 50)) == (
        "CONFLICT",
        "the reseller's companies would hold 110 GB on this repository, more than the 100 GB"
        " the provider allocated to the reseller; 40 GB are left for this tenant account",
    )
    assert (await set_resource(gql, r1, a2, repo, 40))["data"]["backupResourceSet"] == {
        "quotaGb": 40
    }
    assert "errors" not in await set_resource(gql, r1, a2, repo, 30)  # lowering is fine

    # The reseller's quota never goes below what its companies hold, nor is removed under them.
    assert error(await set_repo_quota(gql, token, world, "R1", repo, 80)) == (
        "CONFLICT",
        "the reseller's companies already hold 90 GB on this repository; the quota (80 GB)"
        " cannot be lower",
    )
    remove = {
        "input": {"resellerId": rid(world, "R1"), "repositoryId": gid("CloudRepository", repo.id)}
    }
    assert error(await gql(REMOVE_REPO_QUOTA, remove, token=token)) == (
        "CONFLICT",
        "the reseller's companies hold 90 GB of quotas on this repository; remove them first",
    )

    # Capacity: R1's 100 + P1's direct 500 + R2's request, against 1000 × ratio 1.
    assert error(await set_repo_quota(gql, token, world, "R2", repo, 401)) == (
        "CONFLICT",
        "the quotas on repository 'repo' would total 1001 GB, over its 1000 GB capacity × 1"
        " oversubscription ratio; set allowOversubscription to go over it",
    )
    assert "errors" not in await set_repo_quota(gql, token, world, "R2", repo, 400)
    # Only the provider's unrestricted staff hand out repositories.
    assert error(await set_repo_quota(gql, r1, world, "R1", repo, 1000))[0] == "FORBIDDEN"
    assert (
        await ResellerRepositoryQuota.get(reseller_id=world.orgs["R1"].id).values_list(
            "quota_gb", flat=True
        )
        == 100
    )


# --- hardware plans --------------------------------------------------------------------------


async def test_hardware_plans_must_be_granted_to_the_reseller(world, gql) -> None:
    token = world.token(*ADMIN)
    plan = await HardwarePlan.create(name="Small", cpu_mhz=1000, memory_mb=1024)
    a1 = await make_account(world, "A1")
    b1 = await make_account(world, "B1")
    p1 = await make_account(world, "P1")

    def subscribe(account) -> dict[str, Any]:
        return {
            "input": {
                "tenantAccountId": gid("TenantAccount", account.id),
                "planId": gid("HardwarePlan", plan.id),
            }
        }

    grant = {"input": {"resellerId": rid(world, "R1"), "planId": gid("HardwarePlan", plan.id)}}
    refused = (
        "CONFLICT",
        "the provider has not granted this hardware plan to the company's reseller",
    )
    assert error(await gql(SUBSCRIBE, subscribe(a1), token=token)) == refused
    assert "errors" not in await gql(SUBSCRIBE, subscribe(p1), token=token)

    body = await gql(GRANT, grant, token=token)
    assert body["data"]["resellerHardwarePlanGrant"] == {"planName": "Small", "subscriptions": 0}
    assert error(await gql(GRANT, grant, token=token)) == (
        "CONFLICT",
        "the plan is already granted to this reseller",
    )
    body = await gql(SUBSCRIBE, subscribe(a1), token=world.token(*R1_ADMIN))
    assert body["data"]["hardwarePlanSubscribe"] == {"planName": "Small"}
    # R2 was not granted it.
    assert error(await gql(SUBSCRIBE, subscribe(b1), token=world.token(*R2_ADMIN))) == refused
    assert error(await gql(REVOKE, grant, token=token)) == (
        "CONFLICT",
        "1 tenant account(s) of the reseller's companies subscribe to this plan;"
        " unsubscribe them first",
    )


# --- public IPs ------------------------------------------------------------------------------


async def test_public_ip_pool_quota_caps_the_resellers_companies(world, gql) -> None:
    token = world.token(*ADMIN)
    pool = await PublicIpPool.create(name="pub", first_address="10.0.0.1", last_address="10.0.0.20")
    a1 = await make_account(world, "A1")
    a2 = await make_account(world, "A2")
    p1 = await make_account(world, "P1")

    def allocate(account, count: int) -> dict[str, Any]:
        return {
            "input": {
                "tenantAccountId": gid("TenantAccount", account.id),
                "poolId": gid("PublicIpPool", pool.id),
                "count": count,
            }
        }

    def set_max(n: int) -> dict[str, Any]:
        return {
            "input": {
                "resellerId": rid(world, "R1"),
                "poolId": gid("PublicIpPool", pool.id),
                "maxAddresses": n,
            }
        }

    assert error(await gql(ALLOCATE, allocate(a1, 1), token=token)) == (
        "CONFLICT",
        "the provider has not allocated addresses of this public IP pool to the company's reseller",
    )
    body = await gql(SET_POOL_QUOTA, set_max(3), token=token)
    assert body["data"]["resellerIpPoolQuotaSet"] == {
        "poolName": "pub",
        "maxAddresses": 3,
        "allocated": 0,
    }
    assert len((await gql(ALLOCATE, allocate(a1, 2), token=token))["data"]["publicIpAllocate"]) == 2
    r1 = world.token(*R1_ADMIN)
    assert error(await gql(ALLOCATE, allocate(a2, 2), token=r1)) == (
        "CONFLICT",
        "the reseller's companies hold 2 of the 3 addresses of this pool the provider allocated"
        " to the reseller; 2 requested, 1 left",
    )
    assert len((await gql(ALLOCATE, allocate(a2, 1), token=r1))["data"]["publicIpAllocate"]) == 1
    assert error(await gql(SET_POOL_QUOTA, set_max(2), token=token)) == (
        "CONFLICT",
        "the reseller's companies already hold 3 addresses of this pool; the maximum (2) cannot"
        " be lower",
    )
    remove = {"input": {"resellerId": rid(world, "R1"), "poolId": gid("PublicIpPool", pool.id)}}
    assert error(await gql(REMOVE_POOL_QUOTA, remove, token=token)) == (
        "CONFLICT",
        "the reseller's companies hold 3 addresses of this pool; release them first",
    )
    # Companies under the provider are not capped.
    assert len((await gql(ALLOCATE, allocate(p1, 5), token=token))["data"]["publicIpAllocate"]) == 5


# --- reading ---------------------------------------------------------------------------------


async def test_resellers_read_what_they_were_given(world, gql) -> None:
    token = world.token(*ADMIN)
    repo = await CloudRepository.create(name="repo", capacity_gb=1000)
    plan = await HardwarePlan.create(name="Small", cpu_mhz=1000, memory_mb=1024)
    pool = await PublicIpPool.create(name="pub", first_address="10.0.0.1", last_address="10.0.0.9")
    assert "errors" not in await set_repo_quota(gql, token, world, "R1", repo, 100)
    assert "errors" not in await set_repo_quota(gql, token, world, "R2", repo, 200)
    grant = {"input": {"resellerId": rid(world, "R1"), "planId": gid("HardwarePlan", plan.id)}}
    assert "errors" not in await gql(GRANT, grant, token=token)
    pool_input = {
        "input": {
            "resellerId": rid(world, "R1"),
            "poolId": gid("PublicIpPool", pool.id),
            "maxAddresses": 4,
        }
    }
    assert "errors" not in await gql(SET_POOL_QUOTA, pool_input, token=token)
    a1 = await make_account(world, "A1")
    assert "errors" not in await set_resource(gql, token, a1, repo, 30)
    sub = {
        "input": {
            "tenantAccountId": gid("TenantAccount", a1.id),
            "planId": gid("HardwarePlan", plan.id),
        }
    }
    assert "errors" not in await gql(SUBSCRIBE, sub, token=token)
    ips = {
        "input": {
            "tenantAccountId": gid("TenantAccount", a1.id),
            "poolId": gid("PublicIpPool", pool.id),
            "count": 2,
        }
    }
    assert "errors" not in await gql(ALLOCATE, ips, token=token)

    r1_view = {
        "repositories": [{"repositoryName": "repo", "quotaGb": 100, "usedGb": 30, "freeGb": 70}],
        "hardwarePlans": [{"planName": "Small", "subscriptions": 1}],
        "ipPools": [{"poolName": "pub", "maxAddresses": 4, "allocated": 2}],
    }
    for who in (R1_ADMIN, ADMIN):
        body = await gql(READ, {"id": rid(world, "R1")}, token=world.token(*who))
        assert body == {"data": {"resellerResources": r1_view}}, who
    body = await gql(READ, {"id": rid(world, "R2")}, token=token)
    assert body["data"]["resellerResources"]["repositories"] == [
        {"repositoryName": "repo", "quotaGb": 200, "usedGb": 0, "freeGb": 200}
    ]
    body = await gql(READ, {"id": rid(world, "R2")}, token=world.token(*R1_ADMIN))
    assert error(body) == ("NOT_FOUND", "reseller not found")
    body = await gql(READ, {"id": rid(world, "R1")}, token=world.token(*A1_OWNER))
    assert error(body)[0] == "FORBIDDEN"


# --- the matrix, for every principal of the world --------------------------------------------


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_reseller_resources_follow_the_matrix(
    subject: Subject, use_settings, db, gql
) -> None:
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    pool = await PublicIpPool.create(name="pub", first_address="10.0.0.1", last_address="10.0.0.9")
    r1 = world.orgs["R1"]

    if not engine.allows(p, RESELLERS, Action.READ):
        expected: str | None = "FORBIDDEN"
    elif p.company_ids is not None or (
        p.organization_kind is not OrgKind.PROVIDER and p.organization_id != r1.id
    ):
        expected = "NOT_FOUND"
    else:
        target = Target(kind=RESELLERS.kind, organization_id=r1.id, organization_kind=r1.kind)
        expected = None if engine.can(p, RESELLERS, Action.READ, target) else "FORBIDDEN"
    body = await gql(READ, {"id": rid(world, "R1")}, token=token)
    assert outcome(body, "resellerResources") == expected, body

    body = await gql(
        SET_POOL_QUOTA,
        {
            "input": {
                "resellerId": rid(world, "R1"),
                "poolId": gid("PublicIpPool", pool.id),
                "maxAddresses": 2,
            }
        },
        token=token,
    )
    allowed = engine.allows(p, CLOUD_INFRASTRUCTURE, Action.UPDATE)
    assert outcome(body, "resellerIpPoolQuotaSet") == (None if allowed else "FORBIDDEN"), body


# --- concurrency (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks need PostgreSQL")
async def test_concurrent_quotas_of_one_resellers_companies_never_exceed_its_quota(
    world,
) -> None:
    from tortoise.transactions import in_transaction

    from app.db import connection_name

    repo = await CloudRepository.create(name="repo", capacity_gb=10_000)
    await ResellerRepositoryQuota.create(reseller=world.orgs["R1"], repository=repo, quota_gb=100)
    accounts = [
        await make_account(world, company, name=f"{company}-t{i}")
        for i in range(10)
        for company in ("A1", "A2")
    ]
    actor = Actor(await principal_for_bearer(world.token(*ADMIN)))

    async def one(account) -> bool:
        try:
            async with in_transaction(connection_name()):
                await quotas.set_resource(actor, account.id, repo.id, 30)
        except Conflict:
            return False
        return True

    results = await asyncio.gather(*(one(a) for a in accounts))
    held = await BackupResource.filter(repository_id=repo.id).values_list("quota_gb", flat=True)
    assert sum(held) <= 100
    assert results.count(True) == 3 and sum(held) == 90
