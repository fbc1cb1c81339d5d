"""The provider's Cloud Connect infrastructure through GraphQL: repositories and capacity,
gateway pools and gateways, hardware plans, VLAN ranges, public IP pools; validation errors
with their fields, overlaps, removal refusals, audit entries, and permissions computed from
the engine for every principal of the world."""

from __future__ import annotations

import asyncio

import pytest
from tortoise.transactions import in_transaction

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.db import connection_name
from app.errors import Conflict, NotFound
from app.graphql.ids import to_global_id
from app.models import (
    AuditEntry,
    BackupResource,
    CloudGateway,
    CloudRepository,
    GatewayPool,
    HardwarePlan,
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    PublicIpAllocation,
    PublicIpPool,
    RemoteConnectionKind,
    RemoteSession,
    TenantAccount,
    TenantAccountType,
    VlanAllocation,
    VlanRange,
)
from app.services.cloud_infra import check_capacity
from tests.conftest import ON_POSTGRES

GA = "Service Provider Global Administrator"
ADMIN = "Service Provider Administrator"


def gid(kind: str, pk: int) -> str:
    return to_global_id(kind, pk)


def error(body: dict) -> tuple[str, str | None, str]:
    assert body.get("errors"), body
    ext = body["errors"][0]["extensions"]
    return ext["code"], ext.get("field"), body["errors"][0]["message"]


@pytest.fixture
def admin_gql(world, gql):
    async def run(query: str, variables: dict | None = None) -> dict:
        return await gql(query, variables, token=world.token("Provider", GA))

    return run


async def make_account(world, company: str = "P1", name: str = "tenant") -> TenantAccount:
    # P1 sits directly under the provider: its quotas count against the repository itself
    # (a reseller's companies live inside the reseller's own quota).
    return await TenantAccount.create(
        company=world.orgs[company], name=name, type=TenantAccountType.STANDALONE, password_hash="x"
    )


# --- cloud repositories -------------------------------------------------------------------

REPO_CREATE = """mutation($input: CloudRepositoryCreateInput!) {
  cloudRepositoryCreate(input: $input) { id name capacityGb usedGb freeGb allocatedGb tenantCount }
}"""
REPO_UPDATE = """mutation($input: CloudRepositoryUpdateInput!) {
  cloudRepositoryUpdate(input: $input) { name capacityGb allocatedGb }
}"""


async def test_repository_create_validate_and_list_with_aggregates(world, admin_gql) -> None:
    body = await admin_gql(REPO_CREATE, {"input": {"name": " Repo 1 ", "capacityGb": 1000}})
    assert body["data"]["cloudRepositoryCreate"] == {
        "id": body["data"]["cloudRepositoryCreate"]["id"],
        "name": "Repo 1",
        "capacityGb": 1000,
        "usedGb": 0,
        "freeGb": 1000,
        "allocatedGb": 0,
        "tenantCount": 0,
    }
    assert error(await admin_gql(REPO_CREATE, {"input": {"name": "Repo 1", "capacityGb": 5}}))[
        :2
    ] == ("CONFLICT", "name")
    assert error(await admin_gql(REPO_CREATE, {"input": {"name": "Repo 2", "capacityGb": 0}}))[
        :2
    ] == ("BAD_USER_INPUT", "capacityGb")
    assert error(await admin_gql(REPO_CREATE, {"input": {"name": "  ", "capacityGb": 5}}))[:2] == (
        "BAD_USER_INPUT",
        "name",
    )

    repo = await CloudRepository.get(name="Repo 1")
    repo.used_gb = 150
    await repo.save()
    other = await CloudRepository.create(name="Repo 3", capacity_gb=10)
    a, b = await make_account(world, "P1", "ta"), await make_account(world, "P1", "tb")
    await BackupResource.create(tenant_account=a, repository=repo, quota_gb=300)
    await BackupResource.create(tenant_account=b, repository=repo, quota_gb=200)
    await BackupResource.create(tenant_account=a, repository=other, quota_gb=7)
    body = await admin_gql(
        "{ cloudRepositories(first: 10) { totalCount nodes { name usedGb freeGb allocatedGb tenantCount } } }"
    )
    assert body["data"]["cloudRepositories"] == {
        "totalCount": 2,
        "nodes": [
            {"name": "Repo 1", "usedGb": 150, "freeGb": 850, "allocatedGb": 500, "tenantCount": 2},
            {"name": "Repo 3", "usedGb": 0, "freeGb": 10, "allocatedGb": 7, "tenantCount": 1},
        ],
    }
    single = await admin_gql(
        "query($id: ID!) { cloudRepository(id: $id) { name } }",
        {"id": gid("CloudRepository", other.id)},
    )
    assert single["data"] == {"cloudRepository": {"name": "Repo 3"}}
    missing = await admin_gql(
        "query($id: ID!) { cloudRepository(id: $id) { name } }",
        {"id": gid("CloudRepository", 999)},
    )
    assert error(missing)[0] == "NOT_FOUND"


async def test_repository_capacity_changes_and_oversubscription_override(world, admin_gql) -> None:
    repo = await CloudRepository.create(name="r", capacity_gb=1000, used_gb=100)
    await BackupResource.create(
        tenant_account=await make_account(world), repository=repo, quota_gb=600
    )
    rid = gid("CloudRepository", repo.id)
    # Below the used space: never.
    code, field, message = error(
        await admin_gql(
            REPO_UPDATE, {"input": {"id": rid, "capacityGb": 99, "allowOversubscription": True}}
        )
    )
    assert (code, field) == ("BAD_USER_INPUT", "capacityGb") and "100 GB" in message
    # Below the quotas (ratio 1.0): only with the override.
    code, field, message = error(
        await admin_gql(REPO_UPDATE, {"input": {"id": rid, "capacityGb": 500}})
    )
    assert (code, field) == ("CONFLICT", "capacityGb") and "allowOversubscription" in message
    assert (await CloudRepository.get(id=repo.id)).capacity_gb == 1000
    body = await admin_gql(
        REPO_UPDATE, {"input": {"id": rid, "capacityGb": 500, "allowOversubscription": True}}
    )
    assert body["data"]["cloudRepositoryUpdate"] == {
        "name": "r",
        "capacityGb": 500,
        "allocatedGb": 600,
    }
    entry = await AuditEntry.filter(action="cloudRepositoryUpdate", outcome="SUCCESS").get()
    assert entry.details["allowOversubscription"] is True
    assert entry.details["oversubscribed"] is True
    assert entry.details["oldCapacityGb"] == 1000 and entry.details["capacityGb"] == 500
    refused = await AuditEntry.filter(action="cloudRepositoryUpdate", outcome="FAILURE").count()
    assert refused == 2
    # Within the quotas: no override needed; a rename alone too.
    body = await admin_gql(REPO_UPDATE, {"input": {"id": rid, "capacityGb": 600, "name": "r2"}})
    assert body["data"]["cloudRepositoryUpdate"]["capacityGb"] == 600


async def test_oversubscription_ratio_comes_from_settings(world, admin_gql, use_settings) -> None:
    use_settings(cloud_oversubscription_ratio=1.5)
    repo = await CloudRepository.create(name="r", capacity_gb=1000)
    await BackupResource.create(
        tenant_account=await make_account(world), repository=repo, quota_gb=1400
    )
    body = await admin_gql(
        REPO_UPDATE, {"input": {"id": gid("CloudRepository", repo.id), "capacityGb": 950}}
    )
    assert body["data"]["cloudRepositoryUpdate"]["capacityGb"] == 950, body
    await check_capacity(repo.id, 25, allow_override=False)  # 1425 ≤ 1425
    with pytest.raises(Conflict):
        await check_capacity(repo.id, 26, allow_override=False)


async def test_repository_delete_refused_while_quotas_exist(world, admin_gql) -> None:
    repo = await CloudRepository.create(name="r", capacity_gb=10)
    quota = await BackupResource.create(
        tenant_account=await make_account(world), repository=repo, quota_gb=5
    )
    delete = "mutation($id: ID!) { cloudRepositoryDelete(id: $id) { deletedId } }"
    code, _, message = error(await admin_gql(delete, {"id": gid("CloudRepository", repo.id)}))
    assert code == "CONFLICT" and "1 tenant quota" in message
    await quota.delete()
    body = await admin_gql(delete, {"id": gid("CloudRepository", repo.id)})
    assert body["data"] == {"cloudRepositoryDelete": {"deletedId": gid("CloudRepository", repo.id)}}
    assert not await CloudRepository.exists()


async def test_check_capacity_arithmetic(world) -> None:
    repo = await CloudRepository.create(name="r", capacity_gb=100)
    account = await make_account(world)
    await BackupResource.create(tenant_account=account, repository=repo, quota_gb=60)
    await check_capacity(repo.id, 40, allow_override=False)  # exactly full
    with pytest.raises(Conflict) as exc:
        await check_capacity(repo.id, 41, allow_override=False)
    assert exc.value.field == "quotaGb"
    assert exc.value.extra == {"capacityGb": 100, "allocatedGb": 60}
    await check_capacity(repo.id, 500, allow_override=True)
    await check_capacity(repo.id, 0, allow_override=False)
    with pytest.raises(NotFound):
        await check_capacity(repo.id + 1, 1, allow_override=False)


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks and concurrent transactions need PostgreSQL")
async def test_concurrent_reservations_never_exceed_capacity(world) -> None:
    """Each reservation checks and inserts in its own transaction; the repository row lock
    serialises them, so exactly capacity / size succeed."""
    repo = await CloudRepository.create(name="r", capacity_gb=100)
    accounts = [await make_account(world, "P1", f"t{i}") for i in range(30)]

    async def reserve(account: TenantAccount) -> str:
        try:
            async with in_transaction(connection_name()):
                await check_capacity(repo.id, 10, allow_override=False)
                await BackupResource.create(tenant_account=account, repository=repo, quota_gb=10)
            return "ok"
        except Conflict:
            return "Conflict"

    results = await asyncio.gather(*[reserve(a) for a in accounts])
    assert results.count("ok") == 10 and results.count("Conflict") == 20
    assert await BackupResource.filter(repository_id=repo.id).count() == 10


# --- gateway pools and gateways -----------------------------------------------------------

GW_CREATE = """mutation($input: CloudGatewayCreateInput!) {
  cloudGatewayCreate(input: $input) { id name address port enabled redirectorCapacity pool { name } }
}"""
GW_UPDATE = """mutation($input: CloudGatewayUpdateInput!) {
  cloudGatewayUpdate(input: $input) { name address port enabled redirectorCapacity pool { name } }
}"""


async def test_gateway_and_pool_crud_and_validation(world, admin_gql) -> None:
    body = await admin_gql(
        'mutation { gatewayPoolCreate(input: {name: "EU"}) { id name gateways { name } } }'
    )
    pool = body["data"]["gatewayPoolCreate"]
    assert pool["name"] == "EU" and pool["gateways"] == []
    dup = await admin_gql('mutation { gatewayPoolCreate(input: {name: "EU"}) { id } }')
    assert error(dup)[:2] == ("CONFLICT", "name")

    body = await admin_gql(
        GW_CREATE,
        {"input": {"name": "gw1", "address": "GW1.Example.com", "poolId": pool["id"]}},
    )
    gw = body["data"]["cloudGatewayCreate"]
    assert {k: v for k, v in gw.items() if k != "id"} == {
        "name": "gw1",
        "address": "gw1.example.com",
        "port": 6180,
        "enabled": True,
        "redirectorCapacity": 10,
        "pool": {"name": "EU"},
    }
    for bad, field in (
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"redirectorCapacity": -1}, "redirectorCapacity"),
        ({"address": "not an address!"}, "address"),
        ({"name": "gw1"}, "name"),
        ({"poolId": gid("GatewayPool", 999)}, "poolId"),
    ):
        data = {"name": "gw2", "address": "gw2.example.com", **bad}
        code, got, _ = error(await admin_gql(GW_CREATE, {"input": data}))
        assert (code, got) == (
            {"name": "CONFLICT", "poolId": "NOT_FOUND"}.get(field, "BAD_USER_INPUT"),
            field,
        ), bad
    assert await CloudGateway.all().count() == 1

    body = await admin_gql(
        GW_UPDATE,
        {
            "input": {
                "id": gw["id"],
                "address": "192.0.2.7",
                "port": 443,
                "enabled": False,
                "redirectorCapacity": 0,
                "poolId": None,
            }
        },
    )
    assert body["data"]["cloudGatewayUpdate"] == {
        "name": "gw1",
        "address": "192.0.2.7",
        "port": 443,
        "enabled": False,
        "redirectorCapacity": 0,
        "pool": None,
    }
    # Absent poolId leaves it as is.
    await admin_gql(GW_UPDATE, {"input": {"id": gw["id"], "poolId": pool["id"]}})
    body = await admin_gql(GW_UPDATE, {"input": {"id": gw["id"], "name": "gw-1"}})
    assert body["data"]["cloudGatewayUpdate"]["pool"] == {"name": "EU"}
    listing = await admin_gql("{ gatewayPools { nodes { name gateways { name } } } }")
    assert listing["data"]["gatewayPools"]["nodes"] == [
        {"name": "EU", "gateways": [{"name": "gw-1"}]}
    ]
    renamed = await admin_gql(
        'mutation($id: ID!) { gatewayPoolUpdate(input: {id: $id, name: "Europe"}) { name } }',
        {"id": pool["id"]},
    )
    assert renamed["data"] == {"gatewayPoolUpdate": {"name": "Europe"}}
    assert await AuditEntry.filter(action="cloudGatewayUpdate", outcome="SUCCESS").count() == 3


async def test_pool_and_gateway_removal_rules(world, admin_gql) -> None:
    pool = await GatewayPool.create(name="EU")
    gw = await CloudGateway.create(name="gw", address="gw.example.com", pool=pool)
    account = await make_account(world)
    await account.gateway_pools.add(pool)
    delete_pool = "mutation($id: ID!) { gatewayPoolDelete(id: $id) { deletedId } }"
    code, _, message = error(await admin_gql(delete_pool, {"id": gid("GatewayPool", pool.id)}))
    assert code == "CONFLICT" and "tenant account" in message
    await account.gateway_pools.remove(pool)
    body = await admin_gql(delete_pool, {"id": gid("GatewayPool", pool.id)})
    assert "errors" not in body, body
    assert (await CloudGateway.get(id=gw.id)).pool_id is None  # type: ignore[attr-defined]

    from datetime import UTC, datetime, timedelta

    session = await RemoteSession.create(
        tenant_account=account,
        kind=RemoteConnectionKind.RDP,
        gateway=gw,
        endpoint="gw.example.com:6180",
        token_hash="h" * 64,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    delete_gw = "mutation($id: ID!) { cloudGatewayDelete(id: $id) { deletedId } }"
    code, _, message = error(await admin_gql(delete_gw, {"id": gid("CloudGateway", gw.id)}))
    assert code == "CONFLICT" and "remote session" in message
    session.closed_at = datetime.now(UTC)
    await session.save()
    body = await admin_gql(delete_gw, {"id": gid("CloudGateway", gw.id)})
    assert "errors" not in body, body
    assert not await CloudGateway.exists()


# --- hardware plans -----------------------------------------------------------------------

PLAN_CREATE = """mutation($input: HardwarePlanCreateInput!) {
  hardwarePlanCreate(input: $input) {
    id name cpuMhz memoryMb networksWithInternet networksWithoutInternet
    datastores { datastore quotaGb } subscriptionCount
  }
}"""


def plan_input(**changes) -> dict:
    return {
        "name": "Silver",
        "cpuMhz": 4000,
        "memoryMb": 8192,
        "networksWithInternet": 1,
        "networksWithoutInternet": 2,
        "datastores": [{"datastore": "ds1", "quotaGb": 500}, {"datastore": "ds2", "quotaGb": 100}],
        **changes,
    }


async def test_hardware_plan_crud_validation_and_removal(world, admin_gql) -> None:
    body = await admin_gql(PLAN_CREATE, {"input": plan_input()})
    plan = body["data"]["hardwarePlanCreate"]
    assert {k: v for k, v in plan.items() if k != "id"} == {
        "name": "Silver",
        "cpuMhz": 4000,
        "memoryMb": 8192,
        "networksWithInternet": 1,
        "networksWithoutInternet": 2,
        "datastores": [{"datastore": "ds1", "quotaGb": 500}, {"datastore": "ds2", "quotaGb": 100}],
        "subscriptionCount": 0,
    }
    for bad, code, field in (
        ({"name": "Silver"}, "CONFLICT", "name"),
        ({"cpuMhz": 0}, "BAD_USER_INPUT", "cpuMhz"),
        ({"memoryMb": -1}, "BAD_USER_INPUT", "memoryMb"),
        ({"networksWithInternet": -1}, "BAD_USER_INPUT", "networksWithInternet"),
        (
            {"datastores": [{"datastore": "a", "quotaGb": 1}, {"datastore": "A", "quotaGb": 1}]},
            "BAD_USER_INPUT",
            "datastores.1.datastore",
        ),
        (
            {"datastores": [{"datastore": "a", "quotaGb": 0}]},
            "BAD_USER_INPUT",
            "datastores.0.quotaGb",
        ),
    ):
        got = error(await admin_gql(PLAN_CREATE, {"input": plan_input(**{"name": "Gold", **bad})}))
        assert got[:2] == (code, field), bad
    assert await HardwarePlan.all().count() == 1

    body = await admin_gql(
        """mutation($input: HardwarePlanUpdateInput!) {
             hardwarePlanUpdate(input: $input) { name cpuMhz datastores { datastore quotaGb } }
           }""",
        {
            "input": {
                "id": plan["id"],
                "cpuMhz": 8000,
                "datastores": [{"datastore": "ds3", "quotaGb": 9}],
            }
        },
    )
    assert body["data"]["hardwarePlanUpdate"] == {
        "name": "Silver",
        "cpuMhz": 8000,
        "datastores": [{"datastore": "ds3", "quotaGb": 9}],
    }
    assert await HardwarePlanDatastore.all().count() == 1

    row = await HardwarePlan.get(name="Silver")
    sub = await HardwarePlanSubscription.create(tenant_account=await make_account(world), plan=row)
    listing = await admin_gql("{ hardwarePlans { nodes { name subscriptionCount } } }")
    assert listing["data"]["hardwarePlans"]["nodes"] == [{"name": "Silver", "subscriptionCount": 1}]
    delete = "mutation($id: ID!) { hardwarePlanDelete(id: $id) { deletedId } }"
    code, _, message = error(await admin_gql(delete, {"id": plan["id"]}))
    assert code == "CONFLICT" and "subscribe" in message
    await sub.delete()
    assert "errors" not in await admin_gql(delete, {"id": plan["id"]})
    assert not await HardwarePlan.exists() and not await HardwarePlanDatastore.exists()


# --- VLAN ranges ----------------------------------------------------------------------------

VLAN_CREATE = """mutation($input: VlanRangeCreateInput!) {
  vlanRangeCreate(input: $input) { id host firstId lastId internet size allocatedCount }
}"""


def vlan(host: str, first: int, last: int, internet: bool = True) -> dict:
    return {"input": {"host": host, "firstId": first, "lastId": last, "internet": internet}}


async def test_vlan_ranges_validation_overlap_and_removal(world, admin_gql) -> None:
    body = await admin_gql(VLAN_CREATE, vlan("esx1", 100, 199))
    created = body["data"]["vlanRangeCreate"]
    assert {k: v for k, v in created.items() if k != "id"} == {
        "host": "esx1",
        "firstId": 100,
        "lastId": 199,
        "internet": True,
        "size": 100,
        "allocatedCount": 0,
    }
    for args, code, field in (
        (("esx1", 0, 10), "BAD_USER_INPUT", "firstId"),
        (("esx1", 4000, 4095), "BAD_USER_INPUT", "lastId"),
        (("esx1", 300, 299), "BAD_USER_INPUT", "lastId"),
        (("esx1", 199, 250), "CONFLICT", "firstId"),  # shares 199
        (("esx1", 50, 100), "CONFLICT", "firstId"),  # shares 100
        (("esx1", 120, 130, False), "CONFLICT", "firstId"),  # inside, other kind
        (("esx1", 1, 4094), "CONFLICT", "firstId"),  # around
    ):
        assert error(await admin_gql(VLAN_CREATE, vlan(*args)))[:2] == (code, field), args
    for args in (
        ("esx1", 200, 299, False),
        ("esx1", 1, 99),
        ("esx2", 100, 199),
        ("esx1", 4094, 4094),
    ):
        assert "errors" not in await admin_gql(VLAN_CREATE, vlan(*args)), args
    listing = await admin_gql('{ vlanRanges(host: "esx1") { nodes { firstId lastId } } }')
    assert [(n["firstId"], n["lastId"]) for n in listing["data"]["vlanRanges"]["nodes"]] == [
        (100, 199),
        (200, 299),
        (1, 99),
        (4094, 4094),
    ]
    vrange = await VlanRange.get(host="esx1", first_id=100)
    plan = await HardwarePlan.create(name="p", cpu_mhz=1, memory_mb=1)
    sub = await HardwarePlanSubscription.create(tenant_account=await make_account(world), plan=plan)
    alloc = await VlanAllocation.create(
        vlan_range=vrange, host="esx1", vlan_id=150, subscription=sub
    )
    listing = await admin_gql("{ vlanRanges(first: 1) { nodes { allocatedCount } } }")
    assert listing["data"]["vlanRanges"]["nodes"] == [{"allocatedCount": 1}]
    delete = "mutation($id: ID!) { vlanRangeDelete(id: $id) { deletedId } }"
    code, _, message = error(await admin_gql(delete, {"id": created["id"]}))
    assert code == "CONFLICT" and "allocated" in message
    await alloc.delete()
    assert "errors" not in await admin_gql(delete, {"id": created["id"]})
    assert await VlanRange.all().count() == 4


# --- public IP pools ----------------------------------------------------------------------

IP_CREATE = """mutation($input: PublicIpPoolCreateInput!) {
  publicIpPoolCreate(input: $input) { id name firstAddress lastAddress size allocatedCount }
}"""


def ip_pool(name: str, first: str, last: str) -> dict:
    return {"input": {"name": name, "firstAddress": first, "lastAddress": last}}


async def test_public_ip_pools_validation_overlap_and_removal(world, admin_gql) -> None:
    body = await admin_gql(IP_CREATE, ip_pool("v4", "203.0.113.10", "203.0.113.20"))
    created = body["data"]["publicIpPoolCreate"]
    assert {k: v for k, v in created.items() if k != "id"} == {
        "name": "v4",
        "firstAddress": "203.0.113.10",
        "lastAddress": "203.0.113.20",
        "size": 11,
        "allocatedCount": 0,
    }
    for args, code, field in (
        (("x", "nope", "203.0.113.1"), "BAD_USER_INPUT", "firstAddress"),
        (("x", "203.0.113.1", "2001:db8::1"), "BAD_USER_INPUT", "lastAddress"),
        (("x", "203.0.113.9", "203.0.113.8"), "BAD_USER_INPUT", "lastAddress"),
        (("x", "10.0.0.0", "10.1.0.0"), "BAD_USER_INPUT", "lastAddress"),  # 65,537
        (("x", "203.0.113.20", "203.0.113.30"), "CONFLICT", "firstAddress"),
        (("x", "203.0.113.2", "203.0.113.10"), "CONFLICT", "firstAddress"),
        (("x", "203.0.113.0", "203.0.113.255"), "CONFLICT", "firstAddress"),
        (("v4", "198.51.100.1", "198.51.100.2"), "CONFLICT", "name"),
    ):
        assert error(await admin_gql(IP_CREATE, ip_pool(*args)))[:2] == (code, field), args
    # Text order is not address order: .9 < .10 numerically.
    ok = await admin_gql(IP_CREATE, ip_pool("low", "203.0.113.2", "203.0.113.9"))
    assert ok["data"]["publicIpPoolCreate"]["size"] == 8, ok
    big = await admin_gql(IP_CREATE, ip_pool("big", "10.0.0.0", "10.0.255.255"))
    assert big["data"]["publicIpPoolCreate"]["size"] == 65536, big
    v6 = await admin_gql(IP_CREATE, ip_pool("v6", "2001:DB8::10", "2001:db8::1f"))
    assert v6["data"]["publicIpPoolCreate"]["firstAddress"] == "2001:db8::10"
    assert v6["data"]["publicIpPoolCreate"]["size"] == 16

    pool = await PublicIpPool.get(name="v4")
    alloc = await PublicIpAllocation.create(
        pool=pool, address="203.0.113.11", tenant_account=await make_account(world)
    )
    listing = await admin_gql("{ publicIpPools { nodes { name allocatedCount } } }")
    assert listing["data"]["publicIpPools"]["nodes"][0] == {"name": "v4", "allocatedCount": 1}
    delete = "mutation($id: ID!) { publicIpPoolDelete(id: $id) { deletedId } }"
    code, _, message = error(await admin_gql(delete, {"id": created["id"]}))
    assert code == "CONFLICT" and "allocated" in message
    await alloc.delete()
    assert "errors" not in await admin_gql(delete, {"id": created["id"]})
    assert await AuditEntry.filter(action="publicIpPoolDelete").count() == 2


# --- permissions, from the engine ---------------------------------------------------------

# One query and one mutation per object type; `{n}` makes names unique per principal.
CASES: list[tuple[str, Action, str, str, dict]] = [
    ("cloudRepositories", Action.READ, "{ cloudRepositories { totalCount } }", "", {}),
    (
        "cloudRepositoryCreate",
        Action.CREATE,
        "mutation($n: String!) { cloudRepositoryCreate(input: {name: $n, capacityGb: 1}) { id } }",
        "n",
        {},
    ),
    ("gatewayPools", Action.READ, "{ gatewayPools { totalCount } }", "", {}),
    (
        "gatewayPoolCreate",
        Action.CREATE,
        "mutation($n: String!) { gatewayPoolCreate(input: {name: $n}) { id } }",
        "n",
        {},
    ),
    ("cloudGateways", Action.READ, "{ cloudGateways { totalCount } }", "", {}),
    (
        "cloudGatewayCreate",
        Action.CREATE,
        'mutation($n: String!) { cloudGatewayCreate(input: {name: $n, address: "gw.example.com"}) { id } }',
        "n",
        {},
    ),
    ("certificates", Action.READ, "{ certificates { totalCount } }", "", {}),
    ("hardwarePlans", Action.READ, "{ hardwarePlans { totalCount } }", "", {}),
    (
        "hardwarePlanCreate",
        Action.CREATE,
        "mutation($n: String!) { hardwarePlanCreate(input: {name: $n, cpuMhz: 1, memoryMb: 1}) { id } }",
        "n",
        {},
    ),
    ("vlanRanges", Action.READ, "{ vlanRanges { totalCount } }", "", {}),
    (
        "vlanRangeCreate",
        Action.CREATE,
        "mutation($n: String!) { vlanRangeCreate(input: {host: $n, firstId: 1, lastId: 2, internet: true}) { id } }",
        "n",
        {},
    ),
    ("publicIpPools", Action.READ, "{ publicIpPools { totalCount } }", "", {}),
    (
        "publicIpPoolCreate",
        Action.CREATE,
        "mutation($n: String!, $a: String!) { publicIpPoolCreate(input: {name: $n, firstAddress: $a, lastAddress: $a}) { id } }",
        "n",
        {"a": True},
    ),
]


async def test_every_world_principal_gets_what_the_engine_says(world, gql) -> None:
    from tests.test_certificates import UPLOAD, ec_key, key_pem, make_cert, pem, upload_vars

    allowed: dict[tuple[str, Action], set[str]] = {}
    for i, (key, token) in enumerate(sorted(world.tokens.items())):
        p = await principal_for_bearer(token)
        for field, action, query, name_var, extra in CASES:
            variables: dict = {}
            if name_var:
                variables["n"] = f"{field}-{i}"
            if extra.get("a"):
                variables["a"] = f"198.51.{i // 250}.{i % 250 + 1}"
            body = await gql(query, variables, token=token)
            expected = engine.allows(p, CLOUD_INFRASTRUCTURE, action)
            if expected:
                assert "errors" not in body, (key, field, body)
                allowed.setdefault((field, action), set()).add(key)
            else:
                assert error(body)[0] == "FORBIDDEN", (key, field, body)
                assert body["data"] is None or body["data"][field] is None
        # Certificate upload: one real certificate per principal.
        k = ec_key()
        body = await gql(
            UPLOAD,
            upload_vars(pem(make_cert(k, cn=f"gw{i}.example.com")), key_pem(k), f"c{i}"),
            token=token,
        )
        if engine.allows(p, CLOUD_INFRASTRUCTURE, Action.CREATE):
            assert "errors" not in body, (key, body)
        else:
            assert error(body)[0] == "FORBIDDEN", (key, body)
    # What the computed table comes to: the provider's unrestricted GA and Administrator only.
    expected_keys = {f"Provider:{GA}", f"Provider:{ADMIN}"}
    assert all(keys == expected_keys for keys in allowed.values()), allowed
    assert len(allowed) == len(CASES)
    # Refused calls changed nothing: only the two allowed principals created objects.
    assert await CloudRepository.all().count() == 2
    assert await AuditEntry.filter(action="certificateUpload", outcome="SUCCESS").count() == 2


async def test_objects_are_unreachable_for_other_staff_by_id(world, gql) -> None:
    repo = await CloudRepository.create(name="r", capacity_gb=1)
    gw = await CloudGateway.create(name="gw", address="gw.example.com")
    for org, role in (
        ("R2", GA),
        ("R1", ADMIN),
        ("B1", "Company Owner"),
        ("Provider", "Service Provider Operator"),
    ):
        token = world.token(org, role)
        body = await gql(
            "query($id: ID!) { cloudRepository(id: $id) { name } }",
            {"id": gid("CloudRepository", repo.id)},
            token=token,
        )
        assert error(body)[0] == "FORBIDDEN", (org, role)
        body = await gql(
            "query($id: ID!) { node(id: $id) { id } }",
            {"id": gid("CloudGateway", gw.id)},
            token=token,
        )
        assert error(body)[0] == "FORBIDDEN", (org, role)
        body = await gql(
            "mutation($id: ID!) { cloudGatewayDelete(id: $id) { deletedId } }",
            {"id": gid("CloudGateway", gw.id)},
            token=token,
        )
        assert error(body)[0] == "FORBIDDEN", (org, role)
    assert await CloudGateway.exists()
    body = await gql(
        "query($id: ID!) { node(id: $id) { ... on CloudGateway { name coveredByCertificate } } }",
        {"id": gid("CloudGateway", gw.id)},
        token=world.token("Provider", GA),
    )
    assert body["data"] == {"node": {"name": "gw", "coveredByCertificate": False}}


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_concurrent_overlapping_definitions_leave_one(world) -> None:
    from app.services import cloud_networks
    from app.services.actor import Actor

    actor = Actor(
        await principal_for_bearer(world.token("Provider", "Service Provider Global Administrator"))
    )
    results = await asyncio.gather(
        *[
            cloud_networks.create_vlan_range(actor, "esx-1", 100 + i, 200 + i, True)
            for i in range(8)
        ],
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))
    assert await VlanRange.filter(host="esx-1").count() == 1
    pools = await asyncio.gather(
        *[
            cloud_networks.create_ip_pool(
                actor, f"pool-{i}", f"198.51.100.{i}", f"198.51.100.{i + 20}"
            )
            for i in range(8)
        ],
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in pools) == 1
    assert await PublicIpPool.all().count() == 1
