"""Backup resources (quotas) and subtenants: the arithmetic, each refusal with its code and
message, and (on PostgreSQL) that concurrent requests never together exceed a quota."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import Conflict, TenantryError
from app.models import AuditEntry, BackupResource, Subtenant, TenantAccountType, User
from app.services import quotas
from app.services.actor import Actor
from app.services.users import NewUser
from tests.conftest import ON_POSTGRES
from tests.factories import World
from tests.test_tenant_accounts import (
    SP_ADMIN,
    TA_PASSWORD,
    code,
    gid,
    make_account,
    make_repo,
    make_subtenant,
)

SET = """mutation($input: BackupResourceSetInput!) {
  backupResourceSet(input: $input) { id quotaGb usedGb freeGb subtenantQuotaGb
    repository { name } tenantAccount { name } } }"""
SUB_CREATE = """mutation($input: SubtenantCreateInput!) {
  subtenantCreate(input: $input) { id email name quotaGb effectiveQuotaGb enabled
    backupResource { quotaGb subtenantQuotaGb } } }"""
SUB_UPDATE = """mutation($input: SubtenantUpdateInput!) {
  subtenantUpdate(input: $input) { quotaGb enabled } }"""

needs_postgres = pytest.mark.skipif(
    not ON_POSTGRES, reason="needs TENANTRY_TEST_DATABASE_URL (row locks are PostgreSQL's)"
)


async def _set(gql, token: str, account_id: int, repo_id: int, quota: int, **extra) -> dict:
    variables = {
        "input": {
            "tenantAccountId": gid("TenantAccount", account_id),
            "repositoryId": gid("CloudRepository", repo_id),
            "quotaGb": quota,
            **extra,
        }
    }
    return await gql(SET, variables, token=token)


def _sub_input(account_id: int, repo_id: int, name: str, quota: int | None) -> dict:
    return {
        "input": {
            "tenantAccountId": gid("TenantAccount", account_id),
            "repositoryId": gid("CloudRepository", repo_id),
            "email": f"{name}@example.test",
            "name": name,
            "password": TA_PASSWORD,
            "quotaGb": quota,
        }
    }


async def test_quota_arithmetic(world: World, gql) -> None:
    token = world.token(*SP_ADMIN)
    repo = await make_repo("repo-eu", capacity_gb=1000)
    account = await make_account(world.orgs["A1"], "a1-account")
    body = await _set(gql, token, account.id, repo.id, 100)
    assert body.get("data", {}).get("backupResourceSet", {}) | {"id": None} == {
        "id": None,
        "quotaGb": 100,
        "usedGb": 0,
        "freeGb": 100,
        "subtenantQuotaGb": 0,
        "repository": {"name": "repo-eu"},
        "tenantAccount": {"name": "a1-account"},
    }, body
    resource = await BackupResource.get(tenant_account_id=account.id, repository_id=repo.id)

    # Below the used space.
    await BackupResource.filter(id=resource.id).update(used_gb=60)
    body = await _set(gql, token, account.id, repo.id, 50)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["message"] == (
        "the quota (50 GB) would be below the space already used (60 GB)"
    )
    assert body["errors"][0]["extensions"]["usedGb"] == 60

    # Below the subtenants' quotas (an unlimited subtenant counts 0).
    await make_subtenant(resource, world.orgs["A1"], "s1", 40)
    await make_subtenant(resource, world.orgs["A1"], "s2", 30)
    await make_subtenant(resource, world.orgs["A1"], "s3", None)
    body = await _set(gql, token, account.id, repo.id, 65)
    assert code(body) == "CONFLICT"
    assert "below the sum of the subtenants' quotas (70 GB)" in body["errors"][0]["message"]
    body = await _set(gql, token, account.id, repo.id, 70)
    assert body["data"]["backupResourceSet"]["subtenantQuotaGb"] == 70
    assert (await BackupResource.get(id=resource.id)).quota_gb == 70

    # The repository's capacity, for a company directly under the provider: the resellers'
    # quotas (2 × 250) + 950 > 1000 × 1.0 without the override.
    other = await make_account(world.orgs["P1"], "p1-account")
    body = await _set(gql, token, other.id, repo.id, 950)
    assert code(body) == "CONFLICT"
    assert "oversubscription" in body["errors"][0]["message"]
    assert not await BackupResource.filter(tenant_account_id=other.id).exists()
    body = await _set(gql, token, other.id, repo.id, 950, allowOversubscription=True)
    assert body["data"]["backupResourceSet"]["quotaGb"] == 950
    entry = await AuditEntry.filter(action="backupResourceSet", outcome="SUCCESS").order_by("-id")
    assert entry[0].details["allowOversubscription"] is True
    assert entry[0].details["quotaGb"] == 950
    assert entry[0].organization_id == world.orgs["P1"].id
    failures = await AuditEntry.filter(action="backupResourceSet", outcome="FAILURE").count()
    assert failures == 3

    body = await _set(gql, token, account.id, repo.id, 0)
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "input.quotaGb"


async def test_resource_removal(world: World, gql) -> None:
    token = world.token(*SP_ADMIN)
    repo = await make_repo()
    account = await make_account(world.orgs["A1"], "a1-account")
    resource = await BackupResource.create(
        tenant_account=account, repository=repo, quota_gb=10, used_gb=1
    )
    remove = "mutation($id: ID!) { backupResourceRemove(id: $id) { deletedId } }"
    variables = {"id": gid("BackupResource", resource.id)}
    body = await gql(remove, variables, token=token)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["message"] == "the backup resource still holds 1 GB of backups"
    await BackupResource.filter(id=resource.id).update(used_gb=0)
    sub = await make_subtenant(resource, world.orgs["A1"], "s1", 5)
    body = await gql(remove, variables, token=token)
    assert code(body) == "CONFLICT"
    assert "has 1 subtenant(s)" in body["errors"][0]["message"]
    await User.filter(id=sub.user_id).delete()  # type: ignore[attr-defined]
    body = await gql(remove, variables, token=token)
    assert body.get("data") == {"backupResourceRemove": {"deletedId": variables["id"]}}


async def test_subtenant_rules(world: World, gql) -> None:
    admin = world.token("A1", "Company Administrator")
    repo = await make_repo()
    account = await make_account(world.orgs["A1"], "a1-account")
    await BackupResource.create(tenant_account=account, repository=repo, quota_gb=100)

    body = await gql(SUB_CREATE, _sub_input(account.id, repo.id, "alice", 60), token=admin)
    assert "errors" not in body, body
    created = body["data"]["subtenantCreate"]
    assert created | {"id": None} == {
        "id": None,
        "email": "alice@example.test",
        "name": "alice",
        "quotaGb": 60,
        "effectiveQuotaGb": 60,
        "enabled": True,
        "backupResource": {"quotaGb": 100, "subtenantQuotaGb": 60},
    }
    user = await User.get(email="alice@example.test")
    assert user.role == quotas.subtenant_role_name()
    assert user.organization_id == world.orgs["A1"].id  # type: ignore[attr-defined]

    # Each within the tenant's quota...
    body = await gql(SUB_CREATE, _sub_input(account.id, repo.id, "bob", 101), token=admin)
    assert code(body) == "CONFLICT"
    assert "exceeds the tenant's quota on this repository (100 GB)" in body["errors"][0]["message"]
    # ...and the sum too.
    body = await gql(SUB_CREATE, _sub_input(account.id, repo.id, "bob", 41), token=admin)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["extensions"]["availableGb"] == 40
    assert not await User.filter(email="bob@example.test").exists()  # rolled back
    body = await gql(SUB_CREATE, _sub_input(account.id, repo.id, "bob", 40), token=admin)
    assert "errors" not in body, body
    # Unlimited: up to the tenant's quota, counted 0 in the sum.
    body = await gql(SUB_CREATE, _sub_input(account.id, repo.id, "carol", None), token=admin)
    assert body["data"]["subtenantCreate"]["quotaGb"] is None
    assert body["data"]["subtenantCreate"]["effectiveQuotaGb"] == 100
    carol_id = body["data"]["subtenantCreate"]["id"]

    # Duplicated e-mail: CONFLICT on the field.
    body = await gql(SUB_CREATE, _sub_input(account.id, repo.id, "carol", None), token=admin)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["extensions"]["field"] == "input.email"

    # Updating: not below used, not over the sum.
    carol = await Subtenant.get(user__email="carol@example.test")
    await Subtenant.filter(id=carol.id).update(used_gb=7)
    body = await gql(SUB_UPDATE, {"input": {"id": carol_id, "quotaGb": 5}}, token=admin)
    assert code(body) == "CONFLICT"
    assert "below the subtenant's used space (7 GB)" in body["errors"][0]["message"]
    body = await gql(SUB_UPDATE, {"input": {"id": carol_id, "quotaGb": 8}}, token=admin)
    assert code(body) == "CONFLICT"  # 60 + 40 + 8 > 100
    alice = gid("Subtenant", (await Subtenant.get(user__email="alice@example.test")).id)
    body = await gql(SUB_UPDATE, {"input": {"id": alice, "quotaGb": 50}}, token=admin)
    assert body.get("data") == {"subtenantUpdate": {"quotaGb": 50, "enabled": True}}, body
    body = await gql(
        SUB_UPDATE, {"input": {"id": carol_id, "quotaGb": 10, "enabled": False}}, token=admin
    )
    assert body.get("data") == {"subtenantUpdate": {"quotaGb": 10, "enabled": False}}, body
    body = await gql(SUB_UPDATE, {"input": {"id": carol_id, "quotaGb": None}}, token=admin)
    assert body.get("data") == {"subtenantUpdate": {"quotaGb": None, "enabled": False}}, body

    # Removing: refused while it holds backups, then the user goes with it.
    delete = "mutation($id: ID!) { subtenantDelete(id: $id) { deletedId } }"
    body = await gql(delete, {"id": carol_id}, token=admin)
    assert code(body) == "CONFLICT"
    await Subtenant.filter(id=carol.id).update(used_gb=0)
    body = await gql(delete, {"id": carol_id}, token=admin)
    assert body.get("data") == {"subtenantDelete": {"deletedId": carol_id}}, body
    assert not await User.filter(email="carol@example.test").exists()

    listing = "query($id: ID!) { tenantAccount(id: $id) { subtenants { name quotaGb } } }"
    body = await gql(listing, {"id": gid("TenantAccount", account.id)}, token=admin)
    assert body["data"]["tenantAccount"]["subtenants"] == [
        {"name": "alice", "quotaGb": 50},
        {"name": "bob", "quotaGb": 40},
    ]


async def test_subtenants_only_for_standalone_accounts(world: World, gql) -> None:
    repo = await make_repo()
    vcd = await make_account(world.orgs["A1"], "a1-vcd", TenantAccountType.VCD)
    await BackupResource.create(tenant_account=vcd, repository=repo, quota_gb=100)
    body = await gql(
        SUB_CREATE,
        _sub_input(vcd.id, repo.id, "dave", 10),
        token=world.token("A1", "Company Owner"),
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "input.tenantAccountId"
    assert "only for standalone" in body["errors"][0]["message"]
    # No resource on that repository: NOT_FOUND on the field.
    standalone = await make_account(world.orgs["A1"], "a1-native")
    body = await gql(
        SUB_CREATE,
        _sub_input(standalone.id, repo.id, "dave", 10),
        token=world.token("A1", "Company Owner"),
    )
    assert code(body) == "NOT_FOUND"
    assert body["errors"][0]["extensions"]["field"] == "input.repositoryId"


async def test_space_reservation_stays_within_quotas(world: World) -> None:
    repo = await make_repo()
    account = await make_account(world.orgs["A1"], "a1-account")
    resource = await BackupResource.create(tenant_account=account, repository=repo, quota_gb=10)
    sub = await make_subtenant(resource, world.orgs["A1"], "s1", 4)
    assert await quotas.reserve_space(resource.id, 3, sub.id) == 3
    with pytest.raises(Conflict, match="subtenant's quota"):
        await quotas.reserve_space(resource.id, 2, sub.id)
    assert await quotas.reserve_space(resource.id, 7) == 10
    with pytest.raises(Conflict, match="do not fit"):
        await quotas.reserve_space(resource.id, 1)
    await account.__class__.filter(id=account.id).update(enabled=False)
    await BackupResource.filter(id=resource.id).update(quota_gb=20)
    with pytest.raises(Conflict, match="not active"):
        await quotas.reserve_space(resource.id, 1)


# --- concurrency (PostgreSQL) ----------------------------------------------------------------


async def _outcomes(calls) -> tuple[int, list[str]]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, TenantryError)
    ]
    assert not unexpected, unexpected
    ok = sum(1 for r in results if not isinstance(r, BaseException))
    codes = [r.code for r in results if isinstance(r, TenantryError)]
    return ok, codes


@needs_postgres
async def test_concurrent_reservations_never_exceed_the_quota(world: World) -> None:
    repo = await make_repo()
    account = await make_account(world.orgs["A1"], "a1-account")
    resource = await BackupResource.create(tenant_account=account, repository=repo, quota_gb=10)
    ok, codes = await _outcomes([quotas.reserve_space(resource.id, 3) for _ in range(12)])
    assert ok == 3 and codes == ["CONFLICT"] * 9
    assert (await BackupResource.get(id=resource.id)).used_gb == 9


@needs_postgres
async def test_concurrent_subtenant_creation_never_exceeds_the_tenant_quota(
    world: World,
) -> None:
    from app.auth.authenticate import principal_for_bearer

    repo = await make_repo()
    account = await make_account(world.orgs["A1"], "a1-account")
    resource = await BackupResource.create(tenant_account=account, repository=repo, quota_gb=100)
    actor = Actor(await principal_for_bearer(world.token("A1", "Company Administrator")))

    def create(i: int):
        new = NewUser(email=f"sub{i}@example.test", name=f"sub {i}", password=TA_PASSWORD)
        return quotas.create_subtenant(actor, account.id, repo.id, new, 15)

    ok, codes = await _outcomes([create(i) for i in range(16)])
    assert ok == 6 and codes == ["CONFLICT"] * 10
    assert await quotas.subtenant_quota_sum(resource.id) == 90
    assert await Subtenant.filter(resource_id=resource.id).count() == 6
    # Users exist only for the subtenants that were created (the rest rolled back).
    assert await User.filter(email__startswith="sub", email__endswith="@example.test").count() == 6


@needs_postgres
async def test_concurrent_quota_cut_and_subtenants_keep_the_sum_within(world: World) -> None:
    """Lowering the tenant's quota while subtenants are being created: whatever the order,
    the subtenants' sum ends within the final quota."""
    from app.auth.authenticate import principal_for_bearer

    repo = await make_repo(capacity_gb=10_000)
    account = await make_account(world.orgs["A1"], "a1-account")
    resource = await BackupResource.create(tenant_account=account, repository=repo, quota_gb=100)
    staff = Actor(await principal_for_bearer(world.token(*SP_ADMIN)))
    company = Actor(await principal_for_bearer(world.token("A1", "Company Administrator")))

    calls = [quotas.set_resource(staff, account.id, repo.id, 40) for _ in range(3)]
    for i in range(10):
        new = NewUser(email=f"cut{i}@example.test", name=f"cut {i}", password=TA_PASSWORD)
        calls.append(quotas.create_subtenant(company, account.id, repo.id, new, 10))
    await _outcomes(calls)
    final = await BackupResource.get(id=resource.id)
    total = await quotas.subtenant_quota_sum(resource.id)
    assert total <= final.quota_gb
    assert final.quota_gb in {40, 100}


@needs_postgres
async def test_concurrent_resource_creation_makes_one_row(world: World) -> None:
    from app.auth.authenticate import principal_for_bearer

    repo = await make_repo(capacity_gb=100)
    staff = Actor(await principal_for_bearer(world.token(*SP_ADMIN)))
    # Companies directly under the provider: the repository's capacity is the limit. The two
    # resellers hold 25 GB each of the 100 GB, so 50 GB are left.
    accounts = [await make_account(world.orgs["P1"], f"acc-{i}") for i in range(5)]
    # Five accounts ask for 15 GB each at once: three fit.
    ok, codes = await _outcomes([quotas.set_resource(staff, a.id, repo.id, 15) for a in accounts])
    assert ok == 3 and codes == ["CONFLICT"] * 2
    # The same account twice at once: one row, updated.
    ok, _ = await _outcomes(
        [quotas.set_resource(staff, accounts[0].id, repo.id, 10) for _ in range(4)]
    )
    assert ok == 4
    assert await BackupResource.filter(tenant_account_id=accounts[0].id).count() == 1
