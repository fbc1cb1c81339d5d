"""Tenant accounts through GraphQL: lifecycle and validation, the account's effective state
(lease, company and reseller switches), the company's consent, BaaS, the permission matrix for
every principal of the world, and cross-tenant NOT_FOUND."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.auth.passwords import verify_password
from app.authz import engine
from app.authz.capabilities import (
    COMPANY_SERVICE,
    SUBTENANTS,
    TENANT_ACCOUNTS,
    TENANT_CONSENT,
    Capability,
)
from app.authz.matrix import Action
from app.authz.principal import Target
from app.graphql.ids import to_global_id
from app.models import (
    AuditEntry,
    BackupResource,
    CloudGateway,
    CloudRepository,
    GatewayPool,
    Organization,
    OrgKind,
    RemoteConnectionKind,
    RemoteSession,
    Subtenant,
    TenantAccount,
    TenantAccountType,
    User,
)
from app.services.quotas import subtenant_role_name
from app.services.tenant_account_status import is_active
from tests.factories import World, build_world, password_hash
from tests.permission_cases import EDITIONS, Scene, Subject, build_scene, subjects
from tests.reseller_grants import give_resellers

TA_PASSWORD = "Tenant-Secret-Phrase-77"
SP_ADMIN = ("Provider", "Service Provider Global Administrator")


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def code(body: dict) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


async def make_repo(name: str = "repo-1", capacity_gb: int = 1000) -> CloudRepository:
    repo = await CloudRepository.create(name=name, capacity_gb=capacity_gb)
    await give_resellers(repository=repo)  # companies under a reseller need it allocated
    return repo


async def make_account(
    company: Organization,
    name: str,
    type: TenantAccountType = TenantAccountType.STANDALONE,
    **fields: Any,
) -> TenantAccount:
    return await TenantAccount.create(
        company=company, name=name, type=type, password_hash=password_hash(), **fields
    )


async def make_subtenant(
    resource: BackupResource, company: Organization, name: str, quota_gb: int | None = None
) -> Subtenant:
    user = await User.create(
        email=f"{name}@example.test",
        name=name,
        role=subtenant_role_name(),
        organization=company,
        password_hash=password_hash(),
    )
    return await Subtenant.create(user=user, resource=resource, quota_gb=quota_gb)


CREATE = """mutation($input: TenantAccountCreateInput!) {
  tenantAccountCreate(input: $input) {
    id name type enabled active leaseExpiresAt maxConcurrentTasks bandwidthLimitMbps
    gatewaySelection gatewayFailover managedByProvider gatewayPools { name }
    company { name } backupResources { id } viewerCanUpdate viewerCanSetConsent
  }
}"""
ACCOUNT = """query($id: ID!) { tenantAccount(id: $id) {
  id name type enabled active managedByProvider viewerCanUpdate viewerCanSetConsent
} }"""


def create_input(company: Organization, name: str = "acme-backup", **extra: Any) -> dict:
    return {
        "input": {
            "companyId": gid("Company", company.id),
            "name": name,
            "type": "STANDALONE",
            "password": TA_PASSWORD,
            **extra,
        }
    }


async def test_account_lifecycle(world: World, gql) -> None:
    token = world.token(*SP_ADMIN)
    pool = await GatewayPool.create(name="pool-eu")
    lease = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    body = await gql(
        CREATE,
        create_input(
            world.orgs["A1"],
            leaseExpiresAt=lease.isoformat(),
            maxConcurrentTasks=4,
            bandwidthLimitMbps=200,
            gatewaySelection="POOLS",
            gatewayPoolIds=[gid("GatewayPool", pool.id)],
            gatewayFailover=True,
        ),
        token=token,
    )
    assert "errors" not in body, body
    created = body["data"]["tenantAccountCreate"]
    account_id = created.pop("id")
    assert created == {
        "name": "acme-backup",
        "type": "STANDALONE",
        "enabled": True,
        "active": True,
        "leaseExpiresAt": lease.isoformat(),
        "maxConcurrentTasks": 4,
        "bandwidthLimitMbps": 200,
        "gatewaySelection": "POOLS",
        "gatewayFailover": True,
        "managedByProvider": False,
        "gatewayPools": [{"name": "pool-eu"}],
        "company": {"name": "A1"},
        "backupResources": [],
        "viewerCanUpdate": True,
        "viewerCanSetConsent": False,  # the company's choice (A1 is not BaaS)
    }
    row = await TenantAccount.get(name="acme-backup")
    assert row.password_hash.startswith("$argon2id$")
    assert verify_password(row.password_hash, TA_PASSWORD)

    update = """mutation($input: TenantAccountUpdateInput!) { tenantAccountUpdate(input: $input) {
      name maxConcurrentTasks bandwidthLimitMbps gatewaySelection gatewayPools { name } type } }"""
    body = await gql(
        update,
        {
            "input": {
                "id": account_id,
                "name": "acme-cloud",
                "maxConcurrentTasks": 8,
                "bandwidthLimitMbps": None,
                "gatewaySelection": "ALL",
            }
        },
        token=token,
    )
    assert body.get("data") == {
        "tenantAccountUpdate": {
            "name": "acme-cloud",
            "maxConcurrentTasks": 8,
            "bandwidthLimitMbps": None,
            "gatewaySelection": "ALL",
            "gatewayPools": [],
            "type": "STANDALONE",
        }
    }, body
    # The type is fixed at creation: the update input has no such field.
    body = await gql(update, {"input": {"id": account_id, "type": "VCD"}}, token=token)
    assert body["errors"] and body.get("data") is None
    assert (await TenantAccount.get(id=row.id)).type is TenantAccountType.STANDALONE

    rotate = """mutation($input: TenantAccountPasswordRotateInput!) {
      tenantAccountPasswordRotate(input: $input) { id } }"""
    body = await gql(rotate, {"input": {"id": account_id, "newPassword": "short"}}, token=token)
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "input.newPassword"
    body = await gql(
        rotate, {"input": {"id": account_id, "newPassword": "Rotated-Secret-2031"}}, token=token
    )
    assert "errors" not in body, body
    rotated = await TenantAccount.get(id=row.id)
    assert verify_password(rotated.password_hash, "Rotated-Secret-2031")
    assert not verify_password(rotated.password_hash, TA_PASSWORD)

    disable = "mutation($id: ID!) { tenantAccountDisable(id: $id) { enabled active } }"
    body = await gql(disable, {"id": account_id}, token=token)
    assert body.get("data") == {"tenantAccountDisable": {"enabled": False, "active": False}}
    enable = "mutation($id: ID!) { tenantAccountEnable(id: $id) { enabled active } }"
    body = await gql(enable, {"id": account_id}, token=token)
    assert body.get("data") == {"tenantAccountEnable": {"enabled": True, "active": True}}

    delete = "mutation($id: ID!) { tenantAccountDelete(id: $id) { deletedId } }"
    body = await gql(delete, {"id": account_id}, token=token)
    assert body.get("data") == {"tenantAccountDelete": {"deletedId": account_id}}
    assert not await TenantAccount.filter(id=row.id).exists()

    actions = (
        await AuditEntry.filter(object_type="TenantAccount", outcome="SUCCESS")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert list(actions) == [
        "tenantAccountCreate",
        "tenantAccountUpdate",
        "tenantAccountPasswordRotate",
        "tenantAccountDisable",
        "tenantAccountEnable",
        "tenantAccountDelete",
    ]


@pytest.mark.parametrize(
    ("extra", "field", "wanted"),
    [
        ({"password": "short"}, "input.password", "BAD_USER_INPUT"),
        ({"password": "acme-backup"}, "input.password", "BAD_USER_INPUT"),
        ({"name": "  "}, "input.name", "BAD_USER_INPUT"),
        ({"maxConcurrentTasks": 0}, "input.maxConcurrentTasks", "BAD_USER_INPUT"),
        ({"bandwidthLimitMbps": 0}, "input.bandwidthLimitMbps", "BAD_USER_INPUT"),
        ({"gatewaySelection": "POOLS"}, "input.gatewayPoolIds", "BAD_USER_INPUT"),
        ({"leaseExpiresAt": "2001-01-01T00:00:00+00:00"}, "input.leaseExpiresAt", "BAD_USER_INPUT"),
        ({"companyId": to_global_id("Reseller", 1)}, "input.companyId", "BAD_USER_INPUT"),
    ],
)
async def test_create_validation(world: World, gql, extra: dict, field: str, wanted: str) -> None:
    variables = create_input(world.orgs["A1"])
    variables["input"].update(extra)
    body = await gql(CREATE, variables, token=world.token(*SP_ADMIN))
    assert code(body) == wanted, body
    assert body["errors"][0]["extensions"].get("field") == field
    assert await TenantAccount.all().count() == 0


async def test_pools_only_with_pool_selection_and_names_unique(world: World, gql) -> None:
    token = world.token(*SP_ADMIN)
    pool = await GatewayPool.create(name="pool-1")
    body = await gql(
        CREATE,
        create_input(world.orgs["A1"], gatewayPoolIds=[gid("GatewayPool", pool.id)]),
        token=token,
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "input.gatewayPoolIds"
    assert code(await gql(CREATE, create_input(world.orgs["A1"]), token=token)) is None
    body = await gql(CREATE, create_input(world.orgs["A2"]), token=token)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["extensions"]["field"] == "name"


async def test_expired_lease_makes_the_account_inactive(world: World, gql) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    expired = await make_account(world.orgs["A1"], "expired", lease_expires_at=past)
    current = await make_account(
        world.orgs["A1"], "current", lease_expires_at=past + timedelta(days=2)
    )
    token = world.token(*SP_ADMIN)
    body = await gql(ACCOUNT, {"id": gid("TenantAccount", expired.id)}, token=token)
    assert body["data"]["tenantAccount"]["enabled"] is True
    assert body["data"]["tenantAccount"]["active"] is False
    assert await is_active(expired) is False
    assert await is_active(current) is True
    listing = """query($active: Boolean) {
      tenantAccounts(first: 10, filter: {active: $active}) { nodes { name active } } }"""
    body = await gql(listing, {"active": False}, token=token)
    assert body["data"]["tenantAccounts"]["nodes"] == [{"name": "expired", "active": False}]
    body = await gql(listing, {"active": True}, token=token)
    assert body["data"]["tenantAccounts"]["nodes"] == [{"name": "current", "active": True}]


async def test_disabling_the_company_or_reseller_disables_its_accounts(world: World, gql) -> None:
    account = await make_account(world.orgs["A1"], "a1-account")
    token = world.token(*SP_ADMIN)
    variables = {"id": gid("TenantAccount", account.id)}

    async def active() -> bool:
        body = await gql(ACCOUNT, variables, token=token)
        return body["data"]["tenantAccount"]["active"]

    assert await active() is True
    company_id = gid("Company", world.orgs["A1"].id)
    body = await gql(
        "mutation($id: ID!) { companyDisable(id: $id) { id } }", {"id": company_id}, token=token
    )
    assert "errors" not in body, body
    assert await active() is False
    assert await is_active(account) is False
    await gql(
        "mutation($id: ID!) { companyEnable(id: $id) { id } }", {"id": company_id}, token=token
    )
    assert await active() is True

    reseller_id = gid("Reseller", world.orgs["R1"].id)
    body = await gql(
        "mutation($id: ID!) { resellerDisable(id: $id) { id } }", {"id": reseller_id}, token=token
    )
    assert "errors" not in body, body
    assert await active() is False
    assert await is_active(await TenantAccount.get(id=account.id)) is False
    body = await gql(
        "{ tenantAccounts(first: 5, filter: {active: true}) { nodes { name } } }", token=token
    )
    assert body["data"]["tenantAccounts"]["nodes"] == []


CONSENT = """mutation($id: ID!, $on: Boolean!) {
  tenantAccountConsentSet(input: {id: $id, managedByProvider: $on}) { managedByProvider } }"""
BAAS = """mutation($id: ID!, $on: Boolean!) {
  companyBaasSet(input: {companyId: $id, baas: $on}) { id name } }"""


async def open_session(account: TenantAccount) -> RemoteSession:
    gateway = await CloudGateway.get_or_none(name="gw-1") or await CloudGateway.create(
        name="gw-1", address="gw1.example.test"
    )
    return await RemoteSession.create(
        tenant_account=account,
        kind=RemoteConnectionKind.RDP,
        gateway=gateway,
        endpoint="gw1.example.test:6180",
        token_hash=f"{account.id:064d}",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )


async def test_consent_is_the_companys_choice(world: World, gql) -> None:
    account = await make_account(world.orgs["A1"], "a1-account")
    variables = {"id": gid("TenantAccount", account.id), "on": True}
    body = await gql(CONSENT, variables, token=world.token("A1", "Company Owner"))
    assert body.get("data") == {"tenantAccountConsentSet": {"managedByProvider": True}}, body

    body = await gql(CONSENT, {**variables, "on": False}, token=world.token("A1", "Location User"))
    assert code(body) == "FORBIDDEN"
    # Provider staff may not give themselves the consent...
    body = await gql(CONSENT, {**variables, "on": False}, token=world.token(*SP_ADMIN))
    assert code(body) == "FORBIDDEN"
    assert (await TenantAccount.get(id=account.id)).managed_by_provider is True

    # ...and withdrawing it ends the open remote sessions, in the same transaction.
    session = await open_session(account)
    body = await gql(CONSENT, {**variables, "on": False}, token=world.token("A1", "Company Owner"))
    assert body.get("data") == {"tenantAccountConsentSet": {"managedByProvider": False}}, body
    closed = await RemoteSession.get(id=session.id)
    assert closed.closed_at is not None and closed.close_reason == "consent withdrawn"
    entries = await AuditEntry.filter(action="tenantAccountConsentSet", outcome="SUCCESS").order_by(
        "id"
    )
    assert [e.details["managedByProvider"] for e in entries] == [True, False]
    assert entries[1].details["remoteSessionsClosed"] == 1


async def test_baas_lets_the_provider_set_the_consent(world: World, gql) -> None:
    account = await make_account(world.orgs["A1"], "a1-account")
    company = gid("Company", world.orgs["A1"].id)
    body = await gql(BAAS, {"id": company, "on": True}, token=world.token("A1", "Company Owner"))
    assert code(body) == "FORBIDDEN"
    body = await gql(BAAS, {"id": company, "on": True}, token=world.token(*SP_ADMIN))
    assert body.get("data") == {"companyBaasSet": {"id": company, "name": "A1"}}, body
    assert (await Organization.get(id=world.orgs["A1"].id)).baas is True
    entry = await AuditEntry.get(action="companyBaasSet", outcome="SUCCESS")
    assert entry.details == {"baas": True} and entry.organization_id == world.orgs["A1"].id

    variables = {"id": gid("TenantAccount", account.id), "on": True}
    body = await gql(ACCOUNT, {"id": variables["id"]}, token=world.token(*SP_ADMIN))
    assert body["data"]["tenantAccount"]["viewerCanSetConsent"] is True
    body = await gql(CONSENT, variables, token=world.token(*SP_ADMIN))
    assert body.get("data") == {"tenantAccountConsentSet": {"managedByProvider": True}}, body
    # A reseller outside A1's tree does not even find the company.
    body = await gql(
        BAAS,
        {"id": company, "on": False},
        token=world.token("R2", "Service Provider Global Administrator"),
    )
    assert code(body) == "NOT_FOUND"


async def test_disabling_an_account_closes_its_sessions(world: World, gql) -> None:
    account = await make_account(world.orgs["A1"], "a1-account", managed_by_provider=True)
    session = await open_session(account)
    body = await gql(
        "mutation($id: ID!) { tenantAccountDisable(id: $id) { enabled } }",
        {"id": gid("TenantAccount", account.id)},
        token=world.token(*SP_ADMIN),
    )
    assert body.get("data") == {"tenantAccountDisable": {"enabled": False}}, body
    assert (await RemoteSession.get(id=session.id)).closed_at is not None


async def test_company_users_read_but_do_not_configure(world: World, gql) -> None:
    account = await make_account(world.orgs["A1"], "a1-account")
    owner = world.token("A1", "Company Owner")
    body = await gql(ACCOUNT, {"id": gid("TenantAccount", account.id)}, token=owner)
    assert body["data"]["tenantAccount"] == {
        "id": gid("TenantAccount", account.id),
        "name": "a1-account",
        "type": "STANDALONE",
        "enabled": True,
        "active": True,
        "managedByProvider": False,
        "viewerCanUpdate": False,
        "viewerCanSetConsent": True,
    }
    body = await gql(
        "mutation($id: ID!) { tenantAccountDisable(id: $id) { id } }",
        {"id": gid("TenantAccount", account.id)},
        token=owner,
    )
    assert code(body) == "FORBIDDEN"
    body = await gql(CREATE, create_input(world.orgs["A1"]), token=owner)
    assert code(body) == "FORBIDDEN"


async def test_delete_refused_while_quotas_hold_backups(world: World, gql) -> None:
    account = await make_account(world.orgs["A1"], "a1-account")
    repo = await make_repo()
    resource = await BackupResource.create(
        tenant_account=account, repository=repo, quota_gb=100, used_gb=5
    )
    sub = await make_subtenant(resource, world.orgs["A1"], "sub-a1")
    delete = "mutation($id: ID!) { tenantAccountDelete(id: $id) { deletedId } }"
    variables = {"id": gid("TenantAccount", account.id)}
    body = await gql(delete, variables, token=world.token(*SP_ADMIN))
    assert code(body) == "CONFLICT"
    assert "still hold backups" in body["errors"][0]["message"]
    await BackupResource.filter(id=resource.id).update(used_gb=0)
    body = await gql(delete, variables, token=world.token(*SP_ADMIN))
    assert "errors" not in body, body
    assert not await User.filter(id=sub.user_id).exists()  # type: ignore[attr-defined]
    assert not await BackupResource.filter(id=resource.id).exists()


# --- the permission matrix, for every principal of the world ---------------------------------


@dataclass
class Fixture:
    """Per company: an account with a resource (quota 100) and a subtenant, an empty second
    resource (removable), and a spare account (removable)."""

    account: dict[int, TenantAccount]
    spare: dict[int, TenantAccount]
    resource: dict[int, BackupResource]
    empty_resource: dict[int, BackupResource]
    subtenant: dict[int, Subtenant]
    repos: list[CloudRepository]


async def build_fixture(world: World) -> Fixture:
    repos = [await make_repo(f"repo-{i}", 100_000) for i in range(3)]
    f = Fixture({}, {}, {}, {}, {}, repos)
    for key, org in world.orgs.items():
        if org.kind is not OrgKind.COMPANY:
            continue
        f.account[org.id] = acc = await make_account(org, f"ta-{key}")
        f.spare[org.id] = await make_account(org, f"ta-{key}-spare")
        f.resource[org.id] = await BackupResource.create(
            tenant_account=acc, repository=repos[0], quota_gb=100
        )
        f.empty_resource[org.id] = await BackupResource.create(
            tenant_account=acc, repository=repos[1], quota_gb=10
        )
        f.subtenant[org.id] = await make_subtenant(
            f.resource[org.id], org, f"sub-{key.lower()}", 10
        )
    return f


def _consent_refusal(s: Scene) -> str | None:
    # From outside the company, consent is set only for a company managed as a service.
    outside = s.principal.organization_id != s.company.id
    return "company's choice" if outside and not s.company.baas else None


@dataclass(frozen=True)
class TOp:
    field: str
    capability: Capability
    action: Action
    document: str
    variables: Callable[[Scene, Fixture], dict[str, Any]]
    object_level: bool = True  # the engine decides on the company's object
    refusal: Callable[[Scene], str | None] = lambda s: None
    target_kind: str = ""

    def expected(self, s: Scene) -> str | None:
        p = s.principal
        if not engine.allows(p, self.capability, self.action):
            return "FORBIDDEN"
        if self.object_level:
            company = s.company
            target = Target(
                kind=self.target_kind or self.capability.kind,
                organization_id=company.id,
                organization_kind=company.kind,
            )
            if not engine.can(p, self.capability, self.action, target):
                return "FORBIDDEN"
        return "FORBIDDEN" if self.refusal(s) is not None else None


def _acc(s: Scene, f: Fixture) -> str:
    return gid("TenantAccount", f.account[s.company.id].id)


T_OPERATIONS: tuple[TOp, ...] = (
    TOp(
        "tenantAccounts",
        TENANT_ACCOUNTS,
        Action.READ,
        "{ tenantAccounts(first: 50) { nodes { id } } }",
        lambda s, f: {},
        object_level=False,
    ),
    TOp(
        "tenantAccount",
        TENANT_ACCOUNTS,
        Action.READ,
        "query($id: ID!) { tenantAccount(id: $id) { id backupResources { id } } }",
        lambda s, f: {"id": _acc(s, f)},
    ),
    TOp(
        "node:TenantAccount",
        TENANT_ACCOUNTS,
        Action.READ,
        "query($id: ID!) { node(id: $id) { id } }",
        lambda s, f: {"id": _acc(s, f)},
    ),
    TOp(
        "node:BackupResource",
        TENANT_ACCOUNTS,
        Action.READ,
        "query($id: ID!) { node(id: $id) { id } }",
        lambda s, f: {"id": gid("BackupResource", f.resource[s.company.id].id)},
    ),
    TOp(
        "subtenants",
        SUBTENANTS,
        Action.READ,
        "{ subtenants(first: 50) { nodes { id } } }",
        lambda s, f: {},
        object_level=False,
    ),
    TOp(
        "subtenant",
        SUBTENANTS,
        Action.READ,
        "query($id: ID!) { subtenant(id: $id) { id email } }",
        lambda s, f: {"id": gid("Subtenant", f.subtenant[s.company.id].id)},
    ),
    TOp(
        "tenantAccountCreate",
        TENANT_ACCOUNTS,
        Action.CREATE,
        "mutation($input: TenantAccountCreateInput!) { tenantAccountCreate(input: $input) { id } }",
        lambda s, f: create_input(s.company, s.unique("new-account-")),
    ),
    TOp(
        "backupResourceSet",
        TENANT_ACCOUNTS,
        Action.UPDATE,
        "mutation($input: BackupResourceSetInput!) { backupResourceSet(input: $input) { id } }",
        lambda s, f: {
            "input": {
                "tenantAccountId": _acc(s, f),
                "repositoryId": gid("CloudRepository", f.repos[2].id),
                "quotaGb": 50,
            }
        },
    ),
    TOp(
        "subtenantCreate",
        SUBTENANTS,
        Action.CREATE,
        "mutation($input: SubtenantCreateInput!) { subtenantCreate(input: $input) { id } }",
        lambda s, f: {
            "input": {
                "tenantAccountId": _acc(s, f),
                "repositoryId": gid("CloudRepository", f.repos[0].id),
                "email": f"{s.unique('newsub')}@example.test",
                "name": "New subtenant",
                "password": TA_PASSWORD,
                "quotaGb": 5,
            }
        },
    ),
    TOp(
        "tenantAccountUpdate",
        TENANT_ACCOUNTS,
        Action.UPDATE,
        "mutation($input: TenantAccountUpdateInput!) { tenantAccountUpdate(input: $input) { id } }",
        lambda s, f: {"input": {"id": _acc(s, f), "maxConcurrentTasks": 3}},
    ),
    TOp(
        "tenantAccountPasswordRotate",
        TENANT_ACCOUNTS,
        Action.UPDATE,
        "mutation($input: TenantAccountPasswordRotateInput!) {"
        " tenantAccountPasswordRotate(input: $input) { id } }",
        lambda s, f: {"input": {"id": _acc(s, f), "newPassword": "Rotated-Secret-2031"}},
    ),
    TOp(
        "tenantAccountConsentSet",
        TENANT_CONSENT,
        Action.UPDATE,
        CONSENT,
        lambda s, f: {"id": _acc(s, f), "on": True},
        refusal=_consent_refusal,
    ),
    TOp(
        "subtenantUpdate",
        SUBTENANTS,
        Action.UPDATE,
        "mutation($input: SubtenantUpdateInput!) { subtenantUpdate(input: $input) { id } }",
        lambda s, f: {
            "input": {"id": gid("Subtenant", f.subtenant[s.company.id].id), "quotaGb": 20}
        },
    ),
    TOp(
        "tenantAccountDisable",
        TENANT_ACCOUNTS,
        Action.UPDATE,
        "mutation($id: ID!) { tenantAccountDisable(id: $id) { id } }",
        lambda s, f: {"id": _acc(s, f)},
    ),
    TOp(
        "tenantAccountEnable",
        TENANT_ACCOUNTS,
        Action.UPDATE,
        "mutation($id: ID!) { tenantAccountEnable(id: $id) { id } }",
        lambda s, f: {"id": _acc(s, f)},
    ),
    TOp(
        "companyBaasSet",
        COMPANY_SERVICE,
        Action.UPDATE,
        BAAS,
        lambda s, f: {"id": gid("Company", s.company.id), "on": False},
    ),
    TOp(
        "subtenantDelete",
        SUBTENANTS,
        Action.DELETE,
        "mutation($id: ID!) { subtenantDelete(id: $id) { deletedId } }",
        lambda s, f: {"id": gid("Subtenant", f.subtenant[s.company.id].id)},
    ),
    TOp(
        "backupResourceRemove",
        TENANT_ACCOUNTS,
        Action.DELETE,
        "mutation($id: ID!) { backupResourceRemove(id: $id) { deletedId } }",
        lambda s, f: {"id": gid("BackupResource", f.empty_resource[s.company.id].id)},
    ),
    TOp(
        "tenantAccountDelete",
        TENANT_ACCOUNTS,
        Action.DELETE,
        "mutation($id: ID!) { tenantAccountDelete(id: $id) { deletedId } }",
        lambda s, f: {"id": gid("TenantAccount", f.spare[s.company.id].id)},
    ),
)

ALL_SUBJECTS = [s for edition in EDITIONS for s in subjects(edition)]


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_tenant_operations_follow_the_matrix(subject: Subject, use_settings, db, gql) -> None:
    use_settings(edition=subject.edition)
    world = await build_world()
    fixture = await build_fixture(world)
    scene = await build_scene(world, subject, enterprise=subject.edition == "enterprise")
    got: dict[str, str | None] = {}
    wanted: dict[str, str | None] = {}
    for op in T_OPERATIONS:
        body = await gql(op.document, op.variables(scene, fixture), token=scene.token)
        got[op.field] = code(body)
        wanted[op.field] = op.expected(scene)
        if got[op.field] is None:
            assert all(v is not None for v in body["data"].values()), (op.field, body)
    assert got == wanted
    assert set(wanted.values()) <= {None, "FORBIDDEN"}


def test_the_tenant_table_is_not_trivial() -> None:
    """Every operation is allowed to some principal of the world and refused to another."""
    from app.authz.matrix import Portal, load_matrix
    from tests.permission_cases import make_principal

    for op in T_OPERATIONS:
        answers = {
            engine.allows(make_principal(portal, r.name), op.capability, op.action)
            for portal in Portal
            for r in load_matrix().portals[portal].roles
        }
        assert answers == {True, False}, op.field


# --- cross-tenant: R2 and B1 principals on A1's objects ------------------------------------

OUTSIDERS = [
    ("R2", "Service Provider Global Administrator"),
    ("R2", "Service Provider Operator"),
    ("B1", "Company Owner"),
    ("B1", "Company Administrator"),
    ("Provider", "Service Provider Operator:P1"),
]


@pytest.mark.parametrize("who", OUTSIDERS, ids=[":".join(w) for w in OUTSIDERS])
async def test_other_tenants_objects_are_not_found(who: tuple[str, str], world: World, gql) -> None:
    from app.auth.authenticate import principal_for_bearer

    fixture = await build_fixture(world)
    a1 = world.orgs["A1"]
    token = world.tokens[f"{who[0]}:{who[1]}"]
    p = await principal_for_bearer(token)

    class A1Scene:  # the variables builders only need `company` and `unique`
        company = a1

        @staticmethod
        def unique(stem: str) -> str:
            return f"{stem}x"

    checked = 0
    for op in T_OPERATIONS:
        if not op.object_level:
            continue
        body = await gql(op.document, op.variables(A1Scene, fixture), token=token)  # type: ignore[arg-type]
        wanted = "NOT_FOUND" if engine.allows(p, op.capability, op.action) else "FORBIDDEN"
        assert code(body) == wanted, (op.field, body)
        checked += wanted == "NOT_FOUND"
    assert checked >= 5
    # Lists never show A1's rows.
    body = await gql("{ tenantAccounts(first: 50) { nodes { name } } }", token=token)
    if body.get("data") and body["data"]["tenantAccounts"]:
        names = {n["name"] for n in body["data"]["tenantAccounts"]["nodes"]}
        assert "ta-A1" not in names and names
    assert await TenantAccount.filter(
        id=fixture.account[a1.id].id, managed_by_provider=False
    ).exists()
    assert await Subtenant.filter(id=fixture.subtenant[a1.id].id, quota_gb=10).exists()
