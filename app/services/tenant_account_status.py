"""Whether a Cloud Connect tenant account works: enabled, its lease not expired, its company
and the company's parent (reseller, or the provider) enabled. Every check that needs a working
account (remote connections, storage reservations, failover readiness) asks here, for one
account (`is_active`) or in SQL (`active_q`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import Q

from app.models import TenantAccount


def now() -> datetime:
    return datetime.now(UTC)


def lease_expired(account: TenantAccount, at: datetime | None = None) -> bool:
    expires = account.lease_expires_at
    return expires is not None and expires <= (at or now())


def _q(**filters: Any) -> Q:
    return Q(**filters)


def active_q(path: str = "", at: datetime | None = None) -> Q:
    """Rows whose tenant account is active: enabled, lease not expired, its company and the
    company's parent (reseller, or the provider) enabled. `path` as in scope.tenant_account_q."""
    pre = f"{path}__" if path else ""
    expires = f"{pre}lease_expires_at"
    return (
        _q(**{f"{pre}enabled": True})
        & (_q(**{f"{expires}__isnull": True}) | _q(**{f"{expires}__gt": at or now()}))
        & _q(**{f"{pre}company__enabled": True})
        & _q(**{f"{pre}company__parent__enabled": True})
    )


async def is_active(account: TenantAccount) -> bool:
    """The account works: enabled, lease not expired, company and reseller enabled. Every check
    that needs a working account (remote connections, storage reservations) asks this."""
    if not account.enabled or lease_expired(account):
        return False
    return await TenantAccount.filter(active_q(), id=account.id).exists()
