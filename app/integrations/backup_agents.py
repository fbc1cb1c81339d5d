"""What Tenantry asks of the agents it manages, as a protocol: scan a network, query a
directory, restore files from a restore point. Services and job handlers depend on this
module only; `app.integrations.agents()` picks the implementation (the simulator, or a real
driver registered in `app.integrations.DRIVERS`).

Errors a driver raises: `AgentUnavailable` (the agent or its network did not answer; worth a
retry), `DriverFailed` (a permanent refusal, with a message meant for the user).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class AgentUnavailable(Exception):
    """The agent did not answer (down, unreachable, timed out): the work may be retried."""


class DriverFailed(Exception):
    """A permanent failure, explained for the user (access denied, path not in the backup)."""


def ipv4_range(text: str) -> tuple[int, int]:
    """The first and last address (as integers) of "10.0.0.0/24" or "10.0.1.10-10.0.1.50";
    ValueError with the reason otherwise."""
    text = text.strip()
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        try:
            first = ipaddress.IPv4Address(first_text.strip())
            last = ipaddress.IPv4Address(last_text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a range of IPv4 addresses") from None
        if int(last) < int(first):
            raise ValueError(f"{text!r} ends before it starts")
        return int(first), int(last)
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is neither a CIDR block nor an a-b range of IPv4") from None
    return int(network.network_address), int(network.broadcast_address)


@dataclass(frozen=True)
class FoundHost:
    """A machine a discovery found: its address (network scan) or distinguished name
    (directory query), and what the agent could tell of it."""

    address: str
    hostname: str
    os_family: str = "OTHER"  # one of app.models.OsFamily
    os_name: str = ""
    dn: str = ""

    @property
    def key(self) -> str:
        """What identifies the host across runs: its directory entry, else its address."""
        return self.dn or self.address


@dataclass(frozen=True)
class ComputerRef:
    id: int
    company_id: int
    uid: str
    hostname: str


@dataclass(frozen=True)
class RestorePointRef:
    id: int
    uid: str
    created_at: datetime


@dataclass(frozen=True)
class RestoredPath:
    path: str
    files: int
    bytes: int


# Called by `restore_files` after each path: (paths done, paths in all, the path just done).
# The job handler reports progress here and may raise to stop the restore (cancellation).
RestoreProgress = Callable[[int, int, RestoredPath], Awaitable[None]]


class BackupAgentDriver(Protocol):
    async def scan_network(
        self, ranges: Sequence[str], credentials_ref: str, *, rule_id: int
    ) -> list[FoundHost]:
        """Hosts answering in the IPv4 ranges ("10.0.0.0/24", "10.0.1.10-10.0.1.50")."""
        ...

    async def query_directory(
        self, ad_query: str, credentials_ref: str, *, rule_id: int
    ) -> list[FoundHost]:
        """Computer objects an LDAP query returns from the company's domain."""
        ...

    async def restore_files(
        self,
        computer: ComputerRef,
        restore_point: RestorePointRef,
        paths: Sequence[str],
        destination: str,
        overwrite: bool,
        progress: RestoreProgress,
    ) -> list[RestoredPath]:
        """Restore each path (file or folder) of the restore point to `destination` on the
        computer, in order, reporting after each one."""
        ...
