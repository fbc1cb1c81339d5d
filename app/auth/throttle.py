"""Login throttling, kept in the database (LoginThrottle) so that every process and both backends
share the counters.

Failures are counted per account ("account:<email>") and per client address ("address:<ip>")
within a fixed window of `login_window_seconds` that starts at the first failure. Once a counter
reaches its limit, attempts are refused (RATE_LIMITED, with `retryAfter` seconds) until the window
has passed, whatever the password. A successful login resets the account counter.

Counting is race-free: the increment is one `UPDATE ... SET failures = failures + 1`, a window
that has run out is restarted by one conditional UPDATE, and the first failure's INSERT falls
back to the increment when a concurrent request created the row first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.errors import RateLimited
from app.models import LoginThrottle
from app.settings import get_settings

ACCOUNT = "account:"
ADDRESS = "address:"


@dataclass(frozen=True)
class Limit:
    key: str
    max_failures: int


def now() -> datetime:
    return datetime.now(UTC)


def window() -> timedelta:
    return timedelta(seconds=get_settings().login_window_seconds)


def account_key(email: str) -> str:
    return f"{ACCOUNT}{email.strip().lower()}"[:300]


def address_key(address: str) -> str:
    return f"{ADDRESS}{address}"[:300]


def account_limit(email: str) -> Limit:
    return Limit(account_key(email), get_settings().login_max_failures_per_account)


def limits_for(email: str, client_address: str) -> list[Limit]:
    """The counters a login attempt for `email` from `client_address` is held against."""
    limits = [account_limit(email)]
    if client_address:
        per_address = get_settings().login_max_failures_per_address
        limits.append(Limit(address_key(client_address), per_address))
    return limits


async def check(limits: Sequence[Limit]) -> None:
    """RATE_LIMITED when any counter has reached its limit inside its current window."""
    by_key = {limit.key: limit for limit in limits}
    at = now()
    retry_after = 0
    for row in await LoginThrottle.filter(key__in=list(by_key)):
        ends = row.window_started_at + window()
        if row.failures >= by_key[row.key].max_failures and ends > at:
            retry_after = max(retry_after, math.ceil((ends - at).total_seconds()))
    if retry_after:
        raise RateLimited("too many failed logins; try again later", retryAfter=retry_after)


async def record_failure(limits: Sequence[Limit]) -> None:
    for limit in limits:
        await _increment(limit.key)


async def _increment(key: str) -> None:
    at = now()
    # A window that has run out starts over at this failure (only one racer can match this).
    restarted = await LoginThrottle.filter(key=key, window_started_at__lte=at - window()).update(
        failures=1, window_started_at=at, locked_until=None
    )
    if restarted:
        return
    if await LoginThrottle.filter(key=key).update(failures=F("failures") + 1):
        return
    try:
        # A savepoint when called inside a transaction: a lost race must not abort it.
        async with in_transaction(connection_name()):
            await LoginThrottle.create(key=key, failures=1, window_started_at=at)
    except IntegrityError:
        await LoginThrottle.filter(key=key).update(failures=F("failures") + 1)


async def reset(key: str) -> None:
    await LoginThrottle.filter(key=key).delete()


async def purge_expired() -> int:
    """Delete counters whose window has passed (for a periodic job: they would only restart)."""
    return await LoginThrottle.filter(window_started_at__lte=now() - window()).delete()
