"""Remote connection to a tenant's backup server (seed 001): conditions, slots, close, expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz.capabilities import REMOTE_CONNECTIONS
from app.authz.matrix import Action
from app.errors import Conflict
from app.models import AuditEntry
from app.models.cloud import (
    CloudGateway,
    GatewayPool,
    GatewaySelection,
    RemoteConnectionKind,
    RemoteSession,
    TenantAccountType,
)
from app.services import remote
from app.services.actor import Actor
from tests.conftest import ON_POSTGRES
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


async def make_session(account, gateway, *, expires_in: int = 600, closed: bool = False):
    at = datetime.now(UTC)
    return await RemoteSession.create(
        tenant_account=account,
        kind=RemoteConnectionKind.RDP,
        gateway=gateway,
        endpoint="gw:6180",
        token_hash=remote.token_hash(f"{account.id}-{gateway.id}-{at.timestamp()}-{expires_in}"),
        expires_at=at + timedelta(seconds=expires_in),
        closed_at=at if closed else None,
    )


async def test_close_sessions_for_tenant_closes_only_that_tenants_open_sessions(world) -> None:
    gw = await CloudGateway.create(name="gw1", address="gw1.example.test")
    mine = await make_account(world, "A1")
    other = await make_account(world, "B1")
    s1 = await make_session(mine, gw)
    s2 = await make_session(other, gw)
    assert await remote.close_sessions_for_tenant(mine.id, "consent withdrawn") == 1
    s1 = await RemoteSession.get(id=s1.id)
    assert s1.closed_at is not None and s1.close_reason == "consent withdrawn"
    assert (await RemoteSession.get(id=s2.id)).closed_at is None
    entry = await AuditEntry.get(action="remoteConnectionClose", object_id=str(s1.id))
    assert entry.organization_id == world.orgs["A1"].id
    assert entry.details == {"reason": "consent withdrawn", "automatic": True}
    assert await remote.close_sessions_for_tenant(mine.id, "again") == 0


# --- through the API -----------------------------------------------------------------------

OPEN = """mutation($input: RemoteConnectionOpenInput!) { remoteConnectionOpen(input: $input) {
  endpoint token expiresAt session { id kind open gatewayId closedAt } } }"""
CLOSE = "mutation($id: ID!) { remoteConnectionClose(id: $id) { id open closeReason } }"


def open_vars(account, kind: str = "RDP") -> dict:
    return {"input": {"tenantAccountId": gid("TenantAccount", account.id), "kind": kind}}


async def test_open_returns_endpoint_and_a_token_stored_only_as_its_hash(world, gql) -> None:
    gw = await CloudGateway.create(name="gw1", address="gw1.example.test", port=6180)
    account = await make_account(world, "A1")
    body = await gql(OPEN, open_vars(account, "REMOTE_CONSOLE"), token=world.token(*ADMIN))
    opened = body["data"]["remoteConnectionOpen"]
    assert opened["endpoint"] == "gw1.example.test:6180"
    assert opened["session"]["kind"] == "REMOTE_CONSOLE" and opened["session"]["open"] is True
    assert opened["session"]["gatewayId"] == gid("CloudGateway", gw.id)
    row = await RemoteSession.get()
    assert row.token_hash == remote.token_hash(opened["token"]) != opened["token"]
    assert (row.expires_at - row.opened_at).total_seconds() == pytest.approx(3600, abs=5)
    entry = await AuditEntry.get(action="remoteConnectionOpen")
    assert entry.outcome == "SUCCESS" and entry.object_id == str(row.id)
    assert entry.organization_id == world.orgs["A1"].id
    assert opened["token"] not in str(entry.details)


REFUSALS = [
    (
        {"type": TenantAccountType.VCD},
        "BAD_USER_INPUT",
        "remote connection to a backup server of a tenant with a VMware Cloud Director tenant "
        "account is not supported: create a separate standalone tenant account for this tenant "
        "and have the tenant connect with its credentials",
    ),
    (
        {"managed_by_provider": False},
        "FORBIDDEN",
        'the tenant has not enabled "Allow this Veeam Backup & Replication installation to be '
        'managed by the service provider": only the tenant can allow remote connections',
    ),
    ({"enabled": False}, "CONFLICT", "the tenant account is disabled"),
    (
        {"lease_expires_at": datetime(2020, 1, 1, tzinfo=UTC)},
        "CONFLICT",
        "the tenant account's lease has expired",
    ),
]


@pytest.mark.parametrize(("fields", "want_code", "message"), REFUSALS)
async def test_each_refusal_has_its_code_and_message(
    world, gql, fields, want_code, message
) -> None:
    await CloudGateway.create(name="gw1", address="gw1.example.test")
    account = await make_account(world, "A1", **fields)
    body = await gql(OPEN, open_vars(account), token=world.token(*ADMIN))
    assert code(body) == want_code
    assert body["errors"][0]["message"] == message
    assert await RemoteSession.all().count() == 0
    entry = await AuditEntry.get(action="remoteConnectionOpen")
    assert entry.outcome == "FAILURE" and entry.details["error"] == want_code


async def test_disabled_company_refuses_the_connection(world, gql) -> None:
    await CloudGateway.create(name="gw1", address="gw1.example.test")
    account = await make_account(world, "A1")
    world.orgs["R1"].enabled = False
    await world.orgs["R1"].save()
    body = await gql(OPEN, open_vars(account), token=world.token(*ADMIN))
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["message"] == "the tenant account's company or reseller is disabled"


async def test_capacity_pools_and_failover(world, gql) -> None:
    token = world.token(*ADMIN)
    pool = await GatewayPool.create(name="east")
    await CloudGateway.create(name="off", address="off.test", pool=pool, enabled=False)
    inpool = await CloudGateway.create(
        name="in", address="in.test", pool=pool, redirector_capacity=1
    )
    other = await CloudGateway.create(name="other", address="other.test", redirector_capacity=1)
    account = await make_account(
        world, "A1", gateway_selection=GatewaySelection.POOLS, gateway_failover=False
    )
    await account.gateway_pools.add(pool)
    body = await gql(OPEN, open_vars(account), token=token)
    assert body["data"]["remoteConnectionOpen"]["endpoint"] == "in.test:6180"
    # The pool's only slot is taken and failover is off: CONFLICT.
    body = await gql(OPEN, open_vars(account), token=token)
    assert code(body) == "CONFLICT"
    assert body["errors"][0]["message"] == (
        "no cloud gateway this tenant may use has a free network redirector slot"
    )
    account.gateway_failover = True
    await account.save()
    body = await gql(OPEN, open_vars(account), token=token)
    assert body["data"]["remoteConnectionOpen"]["endpoint"] == "other.test:6180"
    body = await gql(OPEN, open_vars(account), token=token)
    assert code(body) == "CONFLICT"
    # An expired session frees its slot, even before expire_sessions() writes it down.
    await RemoteSession.filter(gateway_id=inpool.id).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    body = await gql(OPEN, open_vars(account), token=token)
    assert body["data"]["remoteConnectionOpen"]["endpoint"] == "in.test:6180"
    assert await remote.expire_sessions() == 1
    expired = await RemoteSession.get(gateway_id=inpool.id, close_reason="expired")
    assert expired.closed_at is not None
    assert other.id  # used above


async def test_close_frees_the_slot_and_is_audited(world, gql) -> None:
    await CloudGateway.create(name="gw", address="gw.test", redirector_capacity=1)
    account = await make_account(world, "A1")
    token = world.token(*ADMIN)
    body = await gql(OPEN, open_vars(account), token=token)
    sid = body["data"]["remoteConnectionOpen"]["session"]["id"]
    assert code(await gql(OPEN, open_vars(account), token=token)) == "CONFLICT"
    body = await gql(CLOSE, {"id": sid}, token=token)
    assert body["data"]["remoteConnectionClose"] == {
        "id": sid,
        "open": False,
        "closeReason": "closed",
    }
    assert code(await gql(CLOSE, {"id": sid}, token=token)) == "CONFLICT"
    assert code(await gql(OPEN, open_vars(account), token=token)) is None
    body = await gql(
        "query($f: RemoteSessionFilter) { remoteSessions(filter: $f) { nodes { id open } } }",
        {"f": {"open": False}},
        token=token,
    )
    assert body["data"]["remoteSessions"]["nodes"] == [{"id": sid, "open": False}]
    closes = await AuditEntry.filter(action="remoteConnectionClose").values_list(
        "outcome", flat=True
    )
    assert sorted(closes) == ["FAILURE", "SUCCESS"]


async def test_consent_withdrawal_ends_open_sessions(world, gql) -> None:
    await CloudGateway.create(name="gw", address="gw.test")
    account = await make_account(world, "A1")
    actor = Actor(await principal_for_bearer(world.token(*ADMIN)))
    opened = await remote.open_session(actor, account.id, RemoteConnectionKind.RDP)
    account.managed_by_provider = False
    await account.save()
    assert await remote.close_sessions_for_tenant(account.id, "consent withdrawn") == 1
    row = await RemoteSession.get(id=opened.session.id)
    assert not remote.is_open(row) and row.close_reason == "consent withdrawn"
    body = await gql(OPEN, open_vars(account), token=world.token(*ADMIN))
    assert code(body) == "FORBIDDEN"


async def test_cross_tenant_sessions_are_not_found(world, gql) -> None:
    await CloudGateway.create(name="gw", address="gw.test")
    account = await make_account(world, "A1")
    actor = Actor(await principal_for_bearer(world.token(*ADMIN)))
    opened = await remote.open_session(actor, account.id, RemoteConnectionKind.RDP)
    sid = gid("RemoteSession", opened.session.id)
    token = world.token("R2", "Service Provider Global Administrator")
    assert code(await gql(OPEN, open_vars(account), token=token)) == "NOT_FOUND"
    assert code(await gql(CLOSE, {"id": sid}, token=token)) == "NOT_FOUND"
    body = await gql("query($id: ID!) { remoteSession(id: $id) { id } }", {"id": sid}, token=token)
    assert code(body) == "NOT_FOUND"
    body = await gql("{ remoteSessions { nodes { id } } }", token=token)
    assert body["data"]["remoteSessions"]["nodes"] == []
    assert remote.is_open(await RemoteSession.get(id=opened.session.id))


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_remote_operations_follow_the_matrix(subject: Subject, use_settings, db, gql) -> None:
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    await CloudGateway.create(name="gw", address="gw.test", redirector_capacity=100)
    for company in sorted({home_company(world, subject), "A1"}):
        account = await make_account(world, company)
        org = world.orgs[company]
        body = await gql(
            "query($f: RemoteSessionFilter) { remoteSessions(filter: $f) { nodes { id } } }",
            {"f": {"tenantAccountId": gid("TenantAccount", account.id)}},
            token=token,
        )
        # A list: out-of-scope rows are simply absent, so NOT_FOUND reads as an empty answer.
        want = expected_outcome(p, REMOTE_CONNECTIONS, Action.READ, org)
        assert outcome(body, "remoteSessions") == (None if want == "NOT_FOUND" else want)
        body = await gql(OPEN, open_vars(account), token=token)
        want = expected_outcome(p, REMOTE_CONNECTIONS, Action.CREATE, org)
        assert outcome(body, "remoteConnectionOpen") == want, (company, body)


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks need PostgreSQL")
async def test_concurrent_opens_never_exceed_capacity(world) -> None:
    gateways = [
        await CloudGateway.create(name=f"gw{i}", address=f"gw{i}.test", redirector_capacity=3)
        for i in range(2)
    ]
    accounts = [await make_account(world, "A1", name=f"t{i}") for i in range(5)]
    actor = Actor(await principal_for_bearer(world.token(*ADMIN)))

    async def attempt(account) -> str:
        try:
            await remote.open_session(actor, account.id, RemoteConnectionKind.RDP)
            return "ok"
        except Conflict:
            return "conflict"

    results = await asyncio.gather(*[attempt(accounts[i % 5]) for i in range(20)])
    assert results.count("ok") == 6 and results.count("conflict") == 14
    for gw in gateways:
        assert await RemoteSession.filter(remote.open_q(), gateway_id=gw.id).count() == 3


async def test_disabling_the_reseller_ends_its_companies_remote_sessions(world, gql) -> None:
    gateway = await CloudGateway.create(name="gw", address="gw.test")
    account = await make_account(world, "A1")
    open_one = await make_session(account, gateway)
    other = await make_session(await make_account(world, "B1"), gateway)
    body = await gql(
        "mutation($id: ID!) { resellerDisable(id: $id) { active } }",
        {"id": gid("Reseller", world.orgs["R1"].id)},
        token=world.token("Provider", "Service Provider Global Administrator"),
    )
    assert body["data"]["resellerDisable"] == {"active": False}
    closed = await RemoteSession.get(id=open_one.id)
    assert closed.closed_at is not None and closed.close_reason == "organization disabled"
    assert (await RemoteSession.get(id=other.id)).closed_at is None


async def test_the_hourly_purge_writes_down_expired_sessions(world) -> None:
    from app.jobs.context import JobContext
    from app.jobs.maintenance import purge
    from app.models import Job

    gateway = await CloudGateway.create(name="gw", address="gw.test")
    account = await make_account(world, "A1")
    expired = await make_session(account, gateway, expires_in=-5)
    live = await make_session(account, gateway)
    job = await Job.create(
        kind="maintenance.purge", functionality="CONFIGURATION", state="RUNNING", worker_id="w"
    )
    counts = await purge(JobContext(job, "w"))
    assert counts["remote_sessions"] == 1
    assert (await RemoteSession.get(id=expired.id)).close_reason == "expired"
    assert (await RemoteSession.get(id=live.id)).closed_at is None


async def test_viewer_can_booleans_follow_the_matrix(world, gql) -> None:
    gateway = await CloudGateway.create(name="gw", address="gw.test")
    account = await make_account(world, "A1")
    await make_session(account, gateway)
    query = "{ remoteSessions { nodes { viewerCanClose open } } }"
    staff = await gql(query, token=world.token(*ADMIN))
    assert staff["data"]["remoteSessions"]["nodes"] == [{"viewerCanClose": True, "open": True}]
    reader = await gql(query, token=world.token("R1", "Service Provider User"))
    assert reader["data"]["remoteSessions"]["nodes"] == [{"viewerCanClose": False, "open": True}]
