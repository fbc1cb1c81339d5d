"""Webhooks to the provider's own network are refused in production (and allowed in
development and tests, where receivers run on localhost)."""

from __future__ import annotations

import pytest

from app.net_guard import PrivateAddress, check_public


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_addresses_are_refused_when_not_allowed(use_settings, url: str) -> None:
    use_settings(webhook_allow_private=False)
    with pytest.raises(PrivateAddress):
        check_public(url)


def test_public_addresses_pass_and_development_allows_everything(use_settings) -> None:
    use_settings(webhook_allow_private=False)
    check_public("https://93.184.215.14/hook")  # a literal public address: no DNS needed
    use_settings(webhook_allow_private=True)
    check_public("http://127.0.0.1/hook")


def test_production_refuses_private_addresses_by_default(monkeypatch) -> None:
    from app.settings import load_settings

    monkeypatch.setenv("TENANTRY_ENV", "production")
    monkeypatch.setenv("TENANTRY_SECRET_KEY", "x" * 40)
    monkeypatch.setenv("TENANTRY_SEED_DEMO", "0")
    assert load_settings().webhook_allow_private is False
    monkeypatch.setenv("TENANTRY_WEBHOOK_ALLOW_PRIVATE", "1")
    assert load_settings().webhook_allow_private is True
    monkeypatch.delenv("TENANTRY_ENV")
    monkeypatch.delenv("TENANTRY_WEBHOOK_ALLOW_PRIVATE")
    assert load_settings().webhook_allow_private is True
