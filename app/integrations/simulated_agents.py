"""A deterministic stand-in for the agents (`TENANTRY_AGENT_DRIVER=simulator`), for the demo,
tests and benchmarks. The same rule or computer gives the same answer on every run:

- a network scan finds the addresses of the ranges whose hash with the rule's id falls under
  `density` percent (a stable subset), named `host-10-0-0-7` with an OS picked by the hash;
- a directory query finds 3 to 10 computers, named after the rule and the query;
- credentials whose reference starts with `invalid` are refused (a permanent failure);
- a restore takes `restore_seconds` in all (spread over its paths), restores a stable number
  of files and bytes per path, and fails on the first path matching `fail_pattern` (fnmatch).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import Sequence
from fnmatch import fnmatchcase

from app.integrations.backup_agents import (
    ComputerRef,
    DriverFailed,
    FoundHost,
    RestoredPath,
    RestorePointRef,
    RestoreProgress,
    ipv4_range,
)

OS_CHOICES = (
    ("WINDOWS", "Windows Server 2022"),
    ("WINDOWS", "Windows 11 Pro"),
    ("LINUX", "Ubuntu 24.04 LTS"),
    ("LINUX", "Red Hat Enterprise Linux 9"),
    ("MAC", "macOS 15"),
)


def _hash(*parts: object) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class SimulatedAgents:
    def __init__(
        self, restore_seconds: float = 0.0, fail_pattern: str = "", density: int = 5
    ) -> None:
        self.restore_seconds = max(0.0, restore_seconds)
        self.fail_pattern = fail_pattern
        self.density = density

    def _check_credentials(self, credentials_ref: str) -> None:
        if credentials_ref.startswith("invalid"):
            raise DriverFailed(f"the credentials {credentials_ref!r} were refused")

    async def scan_network(
        self, ranges: Sequence[str], credentials_ref: str, *, rule_id: int
    ) -> list[FoundHost]:
        self._check_credentials(credentials_ref)
        found: list[FoundHost] = []
        for text in ranges:
            first, last = ipv4_range(text)
            for value in range(first, last + 1):
                h = _hash("scan", rule_id, value)
                if h % 100 >= self.density:
                    continue
                address = str(ipaddress.IPv4Address(value))
                family, os_name = OS_CHOICES[(h >> 8) % len(OS_CHOICES)]
                found.append(
                    FoundHost(address, "host-" + address.replace(".", "-"), family, os_name)
                )
            await asyncio.sleep(0)  # a large range does not hold the loop
        return found

    async def query_directory(
        self, ad_query: str, credentials_ref: str, *, rule_id: int
    ) -> list[FoundHost]:
        self._check_credentials(credentials_ref)
        h = _hash("ldap", rule_id, ad_query)
        count = 3 + h % 8
        found = []
        for i in range(count):
            family, os_name = OS_CHOICES[_hash("ldap-os", rule_id, i) % 2]  # domain: Windows
            name = f"WS{rule_id}-{i:03d}"
            found.append(
                FoundHost(
                    address="",
                    hostname=f"{name.lower()}.corp.example",
                    os_family=family,
                    os_name=os_name,
                    dn=f"CN={name},OU=Computers,DC=corp,DC=example",
                )
            )
        return found

    async def restore_files(
        self,
        computer: ComputerRef,
        restore_point: RestorePointRef,
        paths: Sequence[str],
        destination: str,
        overwrite: bool,
        progress: RestoreProgress,
    ) -> list[RestoredPath]:
        done: list[RestoredPath] = []
        per_path = self.restore_seconds / max(1, len(paths))
        for index, path in enumerate(paths):
            if per_path:
                await asyncio.sleep(per_path)
            if self.fail_pattern and fnmatchcase(path, self.fail_pattern):
                raise DriverFailed(f"access denied restoring {path} on {computer.hostname}")
            h = _hash("restore", computer.id, restore_point.id, path)
            files = 1 if not path.endswith("/") else 1 + h % 200
            restored = RestoredPath(path, files, files * (4096 + h % (64 * 2**20)))
            done.append(restored)
            await progress(index + 1, len(paths), restored)
        return done
