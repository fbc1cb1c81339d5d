"""Login throttling: per account and per client address, in the database, no sleeping."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from app.auth import throttle
from app.models import AuditEntry, LoginThrottle
from tests.factories import PASSWORD, slug

LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { token }
}"""
WRONG = "Not-The-Password-1"


def email_of(org: str, role: str) -> str:
    return f"{slug(f'{org}:{role}')}@example.test"


OWNER_EMAIL = email_of("A1", "Company Owner")


def code(body: dict) -> str:
    return body["errors"][0]["extensions"]["code"]


async def login(gql, email: str, password: str) -> dict:
    return await gql(LOGIN, {"email": email, "password": password})


async def fail(gql, email: str, times: int) -> None:
    for _ in range(times):
        body = await login(gql, email, WRONG)
        assert code(body) == "UNAUTHENTICATED", body


async def age_window(key: str, seconds: int) -> None:
    row = await LoginThrottle.get(key=key)
    row.window_started_at = row.window_started_at - timedelta(seconds=seconds)
    await row.save(update_fields=["window_started_at"])


async def test_account_is_locked_after_five_failures_even_with_the_right_password(
    world, gql, settings
):
    await fail(gql, OWNER_EMAIL, settings.login_max_failures_per_account)
    row = await LoginThrottle.get(key=f"account:{OWNER_EMAIL}")
    assert row.failures == 5
    body = await login(gql, OWNER_EMAIL, PASSWORD)
    assert body["data"] is None
    assert code(body) == "RATE_LIMITED"
    retry_after = body["errors"][0]["extensions"]["retryAfter"]
    assert isinstance(retry_after, int) and 0 < retry_after <= settings.login_window_seconds
    # Refused attempts are not counted again, and they are audited.
    assert (await LoginThrottle.get(key=row.key)).failures == 5
    entry = await AuditEntry.filter(action="login").order_by("-id").first()
    assert entry is not None
    assert (entry.outcome, entry.details["error"]) == ("FAILURE", "RATE_LIMITED")
    # Another account from the same address is not locked.
    other = await login(gql, email_of("A2", "Company Owner"), PASSWORD)
    assert "errors" not in other, other


async def test_account_lock_ends_when_the_window_passes(world, gql, settings):
    await fail(gql, OWNER_EMAIL, 5)
    assert code(await login(gql, OWNER_EMAIL, PASSWORD)) == "RATE_LIMITED"
    # Still inside the window one second before its end.
    await age_window(f"account:{OWNER_EMAIL}", settings.login_window_seconds - 2)
    body = await login(gql, OWNER_EMAIL, PASSWORD)
    assert code(body) == "RATE_LIMITED"
    assert body["errors"][0]["extensions"]["retryAfter"] <= 2
    await age_window(f"account:{OWNER_EMAIL}", 2)
    body = await login(gql, OWNER_EMAIL, PASSWORD)
    assert "errors" not in body, body
    assert not await LoginThrottle.filter(key=f"account:{OWNER_EMAIL}").exists()


async def test_a_failure_after_the_window_starts_a_new_window(world, gql, settings):
    await fail(gql, OWNER_EMAIL, 4)
    await age_window(f"account:{OWNER_EMAIL}", settings.login_window_seconds)
    await fail(gql, OWNER_EMAIL, 4)  # 8 failures, but never 5 in one window
    row = await LoginThrottle.get(key=f"account:{OWNER_EMAIL}")
    assert row.failures == 4
    assert "errors" not in await login(gql, OWNER_EMAIL, PASSWORD)


async def test_success_resets_the_account_counter(world, gql):
    await fail(gql, OWNER_EMAIL, 4)
    assert "errors" not in await login(gql, OWNER_EMAIL, PASSWORD)
    assert not await LoginThrottle.filter(key=f"account:{OWNER_EMAIL}").exists()
    await fail(gql, OWNER_EMAIL, 4)
    assert "errors" not in await login(gql, OWNER_EMAIL, PASSWORD)
    # The address counter is not reset by a success: it counts all 8 failures.
    assert (await LoginThrottle.get(key="address:10.0.0.1")).failures == 8


async def test_account_counter_ignores_the_case_of_the_email(world, gql):
    for variant in (OWNER_EMAIL, OWNER_EMAIL.upper(), f"  {OWNER_EMAIL}  "):
        await fail(gql, variant, 2 if variant == OWNER_EMAIL else 1)
    assert (await LoginThrottle.get(key=f"account:{OWNER_EMAIL}")).failures == 4
    await fail(gql, OWNER_EMAIL.title(), 1)
    assert code(await login(gql, OWNER_EMAIL, PASSWORD)) == "RATE_LIMITED"


async def test_unknown_accounts_are_throttled_too(world, gql):
    await fail(gql, "nobody@example.test", 5)
    assert code(await login(gql, "nobody@example.test", WRONG)) == "RATE_LIMITED"


async def test_address_is_locked_after_twenty_failures(world, gql, client, settings):
    limit = settings.login_max_failures_per_address
    for i in range(limit):
        # Spread over many accounts (none reaches its own limit), with forged forwarding
        # headers: the address the server sees is what counts.
        resp = await client.post(
            "/graphql",
            json={
                "query": LOGIN,
                "variables": {"email": f"guess{i}@example.test", "password": WRONG},
            },
            headers={"X-Forwarded-For": f"192.0.2.{i}", "X-Real-IP": f"198.51.100.{i}"},
        )
        assert code(resp.json()) == "UNAUTHENTICATED"
    assert (await LoginThrottle.get(key="address:10.0.0.1")).failures == limit
    body = await login(gql, OWNER_EMAIL, PASSWORD)
    assert code(body) == "RATE_LIMITED"
    assert 0 < body["errors"][0]["extensions"]["retryAfter"] <= settings.login_window_seconds
    # The owner's account itself has no failure: it is the address that is locked.
    assert not await LoginThrottle.filter(key=f"account:{OWNER_EMAIL}").exists()
    await age_window("address:10.0.0.1", settings.login_window_seconds)
    assert "errors" not in await login(gql, OWNER_EMAIL, PASSWORD)


async def test_concurrent_failures_are_all_counted(db):
    limits = [throttle.Limit("account:race@example.test", 5), throttle.Limit("address:x", 20)]
    await asyncio.gather(*(throttle.record_failure(limits) for _ in range(12)))
    rows = dict(await LoginThrottle.all().values_list("key", "failures"))
    assert rows == {"account:race@example.test": 12, "address:x": 12}


async def test_create_race_falls_back_to_the_increment(db, monkeypatch):
    """Two first failures: the loser of the INSERT race increments instead of failing."""
    key = "account:first@example.test"
    original = LoginThrottle.filter

    calls = {"n": 0}

    def filter_hiding_the_row_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The first increment attempt sees no row (as if the other request had not yet
        # inserted), then the competing insert lands before ours.
        query = original(*args, **kwargs)
        if kwargs.get("key") == key and calls["n"] < 2:
            calls["n"] += 1
            return original(key="no-such-key")
        return query

    await LoginThrottle.create(key=key, failures=1, window_started_at=throttle.now())
    monkeypatch.setattr(LoginThrottle, "filter", filter_hiding_the_row_once)
    await throttle.record_failure([throttle.Limit(key, 5)])
    monkeypatch.undo()
    assert (await LoginThrottle.get(key=key)).failures == 2


async def test_purge_drops_only_counters_whose_window_passed(db, settings):
    await throttle.record_failure([throttle.Limit("account:old@example.test", 5)])
    await throttle.record_failure([throttle.Limit("account:new@example.test", 5)])
    await age_window("account:old@example.test", settings.login_window_seconds)
    assert await throttle.purge_expired() == 1
    assert await LoginThrottle.all().values_list("key", flat=True) == ["account:new@example.test"]
