"""Remote connections to a tenant's backup server (seed 001), through a cloud gateway's network
redirector: the seed's conditions, one redirector slot per open session, expiry and close.

Refusals and their codes:
- a VMware Cloud Director account → BAD_USER_INPUT (not supported; a standalone account fixes it);
- the tenant did not enable "Allow this Veeam Backup & Replication installation to be managed
  by the service provider" → FORBIDDEN (the tenant's consent is missing, not the caller's input);
- the account (or its company or reseller) is disabled, its lease expired, or no gateway has
  a free slot → CONFLICT.

A session is open while `closed_at` is null and `expires_at` is in the future: an expired
session is closed as far as every count is concerned, and `expire_sessions()` writes it down.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count

from app.authz import scope
from app.authz.capabilities import REMOTE_CONNECTIONS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import connection_name
from app.errors import BadInput, Conflict, Forbidden, NotFound
from app.models import AuditEntry
from app.models.cloud import (
    CloudGateway,
    GatewaySelection,
    RemoteConnectionKind,
    RemoteSession,
    TenantAccount,
    TenantAccountType,
)
from app.models.tenancy import OrgKind
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.settings import get_settings

CONSENT_OPTION = (
    "Allow this Veeam Backup & Replication installation to be managed by the service provider"
)
VCD_REFUSAL = (
    "remote connection to a backup server of a tenant with a VMware Cloud Director tenant "
    "account is not supported: create a separate standalone tenant account for this tenant "
    "and have the tenant connect with its credentials"
)
CONSENT_REFUSAL = (
    f'the tenant has not enabled "{CONSENT_OPTION}": only the tenant can allow remote connections'
)


def now() -> datetime:
    return datetime.now(UTC)


def open_q(at: datetime | None = None, path: str = "") -> Q:
    """Sessions still holding a redirector slot: not closed and not expired."""
    prefix = f"{path}__" if path else ""
    filters: dict[str, Any] = {
        f"{prefix}closed_at__isnull": True,
        f"{prefix}expires_at__gt": at or now(),
    }
    return Q(**filters)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_target(account: TenantAccount) -> Target:
    return Target(
        kind=REMOTE_CONNECTIONS.kind,
        organization_id=account.company_id,  # type: ignore[attr-defined]
        organization_kind=OrgKind.COMPANY,
    )


@dataclass(frozen=True)
class OpenedSession:
    session: RemoteSession
    token: str  # shown once: only its SHA-256 is stored


async def _account_in_scope(p: Principal, account_id: int) -> TenantAccount:
    account = await TenantAccount.filter(scope.tenant_account_q(p), id=account_id).first()
    if account is None:
        raise NotFound("tenant account")
    return account


async def session_in_scope(p: Principal, session_id: int) -> RemoteSession:
    row = await RemoteSession.filter(
        scope.tenant_account_q(p, "tenant_account"), id=session_id
    ).first()
    if row is None:
        raise NotFound("remote session")
    return row


def refusal(account: TenantAccount, at: datetime) -> Exception | None:
    """The seed's conditions, in the order a caller can act on them."""
    if account.type is TenantAccountType.VCD:
        return BadInput(VCD_REFUSAL, field="input.tenantAccountId")
    if not account.managed_by_provider:
        return Forbidden(CONSENT_REFUSAL)
    if not account.enabled:
        return Conflict("the tenant account is disabled", field="input.tenantAccountId")
    if account.lease_expires_at is not None and account.lease_expires_at <= at:
        return Conflict("the tenant account's lease has expired", field="input.tenantAccountId")
    return None


async def _gateway_tiers(account: TenantAccount) -> list[list[int]]:
    """Enabled gateways the tenant may use, in the order to try them: its pools first, then
    (with failover) every other enabled gateway."""
    enabled = CloudGateway.filter(enabled=True).order_by("id")
    if account.gateway_selection is GatewaySelection.ALL:
        return [await enabled.values_list("id", flat=True)]  # type: ignore[list-item]
    pool_ids = await account.gateway_pools.all().values_list("id", flat=True)
    own = await enabled.filter(pool_id__in=list(pool_ids)).values_list("id", flat=True)
    tiers: list[list[int]] = [list(own)]  # type: ignore[arg-type]
    if account.gateway_failover:
        others = await enabled.exclude(id__in=list(own)).values_list("id", flat=True)
        tiers.append(list(others))  # type: ignore[arg-type]
    return tiers


async def _free_gateway(gateway_ids: list[int], at: datetime) -> CloudGateway | None:
    """Lock the candidate gateways (one statement, id order: no deadlock between two opens),
    count their open sessions, and return the first with a free slot. The locks are held to
    the end of the transaction, so two opens never both take the last slot."""
    if not gateway_ids:
        return None
    gateways = (
        await CloudGateway.filter(id__in=gateway_ids, enabled=True)
        .order_by("id")
        .select_for_update()
    )
    counts = dict(
        await RemoteSession.filter(open_q(at), gateway_id__in=gateway_ids)
        .annotate(n=Count("id"))
        .group_by("gateway_id")
        .values_list("gateway_id", "n")
    )
    for gateway in gateways:
        if counts.get(gateway.id, 0) < gateway.redirector_capacity:
            return gateway
    return None


async def open_session(actor: Actor, account_id: int, kind: RemoteConnectionKind) -> OpenedSession:
    p = actor.p
    require(p, REMOTE_CONNECTIONS, Action.CREATE)
    account = await _account_in_scope(p, account_id)
    require(p, REMOTE_CONNECTIONS, Action.CREATE, session_target(account))
    async with audited(
        actor,
        "remoteConnectionOpen",
        "RemoteSession",
        organization_id=account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        entry.details.update(tenantAccount=account.name, kind=kind.value)
        at = now()
        refused = refusal(account, at)
        if refused is not None:
            raise refused
        from app.services.tenant_account_status import is_active

        if not await is_active(account):
            raise Conflict(
                "the tenant account's company or reseller is disabled",
                field="input.tenantAccountId",
            )
        gateway = None
        for tier in await _gateway_tiers(account):
            gateway = await _free_gateway(tier, at)
            if gateway is not None:
                break
        if gateway is None:
            raise Conflict(
                "no cloud gateway this tenant may use has a free network redirector slot",
                field="input.tenantAccountId",
            )
        token = secrets.token_urlsafe(32)
        session = await RemoteSession.create(
            tenant_account=account,
            kind=kind,
            gateway=gateway,
            opened_by_id=p.user_id,
            endpoint=f"{gateway.address}:{gateway.port}",
            token_hash=token_hash(token),
            expires_at=at + timedelta(seconds=get_settings().remote_session_ttl_seconds),
        )
        entry.bind(session.id, gateway=gateway.name, expiresAt=session.expires_at.isoformat())
    return OpenedSession(session, token)


async def close_session(actor: Actor, session_id: int) -> RemoteSession:
    p = actor.p
    session = await session_in_scope(p, session_id)
    account = await TenantAccount.get(id=session.tenant_account_id)  # type: ignore[attr-defined]
    require(p, REMOTE_CONNECTIONS, Action.DELETE, session_target(account))
    async with audited(
        actor,
        "remoteConnectionClose",
        "RemoteSession",
        session.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        at = now()
        if not is_open(session, at):
            raise Conflict("the remote session is already closed", field="id")
        changed = await RemoteSession.filter(open_q(at), id=session.id).update(
            closed_at=at, close_reason="closed"
        )
        if not changed:
            raise Conflict("the remote session is already closed", field="id")
        session.closed_at, session.close_reason = at, "closed"
        entry.details.update(tenantAccount=account.name, reason="closed")
    return session


def is_open(session: RemoteSession, at: datetime | None = None) -> bool:
    return session.closed_at is None and session.expires_at > (at or now())


async def _close_where(query: Q, reason: str, at: datetime, actor: Actor | None) -> int:
    """Close the open sessions matching `query`, one audit entry each (in the caller's
    transaction when there is one)."""
    from tortoise.transactions import in_transaction

    async with in_transaction(connection_name()):
        rows = (
            await RemoteSession.filter(query, open_q(at))
            .select_for_update()
            .values("id", "tenant_account_id", "tenant_account__company_id")
        )
        if not rows:
            return 0
        await RemoteSession.filter(id__in=[r["id"] for r in rows]).update(
            closed_at=at, close_reason=reason[:100]
        )
        p = actor.principal if actor else None
        await AuditEntry.bulk_create(
            [
                AuditEntry(
                    actor_id=p.user_id if p else None,
                    actor_email=p.email if p else "",
                    actor_organization_id=p.organization_id if p else None,
                    organization_id=r["tenant_account__company_id"],
                    action="remoteConnectionClose",
                    object_type="RemoteSession",
                    object_id=str(r["id"]),
                    client_address=actor.client_address if actor else "",
                    request_id=actor.request_id if actor else "",
                    outcome="SUCCESS",
                    details={"reason": reason, "automatic": True},
                )
                for r in rows
            ]
        )
    return len(rows)


async def close_sessions_for_tenant(
    tenant_account_id: int, reason: str, actor: Actor | None = None
) -> int:
    """End every open session of a tenant account (consent withdrawn, account disabled or
    removed). Call it inside the change's own transaction; returns how many were closed."""
    return await _close_where(Q(tenant_account_id=tenant_account_id), reason, now(), actor)


async def expire_sessions(at: datetime | None = None) -> int:
    """Write down the sessions whose time ran out (they already count as closed). For the
    scheduler; returns how many were marked."""
    at = at or now()
    from tortoise.transactions import in_transaction

    async with in_transaction(connection_name()):
        return await RemoteSession.filter(closed_at__isnull=True, expires_at__lte=at).update(
            closed_at=at, close_reason="expired"
        )
