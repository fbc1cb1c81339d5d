"""Remote connection to a tenant's backup server (seed 001): conditions, slots, close, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.models import AuditEntry
from app.models.cloud import (
    CloudGateway,
    RemoteConnectionKind,
    RemoteSession,
    TenantAccount,
    TenantAccountType,
)
from app.services import remote


async def make_account(world, company: str = "A1", **kw) -> TenantAccount:
    defaults = dict(type=TenantAccountType.STANDALONE, managed_by_provider=True, password_hash="x")
    defaults.update(kw)
    return await TenantAccount.create(
        company=world.orgs[company], name=kw.pop("name", f"{company}-tenant"), **defaults
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
