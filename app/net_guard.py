"""Outgoing requests to addresses a tenant names (alarm webhooks) must not reach into the
provider's own network: the host's addresses are checked before saving and before each send."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from app.settings import get_settings


class PrivateAddress(ValueError):
    """The URL's host is (or resolves to) a loopback, private, link-local or reserved address."""


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []  # unresolvable now: the send fails on its own
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_public(url: str) -> None:
    """Raises PrivateAddress unless private addresses are allowed (development and tests, or
    TENANTRY_WEBHOOK_ALLOW_PRIVATE=1) or every address of the URL's host is public. Blocking
    (DNS): call it in a thread from async code."""
    if get_settings().webhook_allow_private:
        return
    host = urlsplit(url).hostname or ""
    for address in _addresses(host):
        if not address.is_global or address.is_multicast:
            raise PrivateAddress(f"{host} is a non-public address ({address})")
