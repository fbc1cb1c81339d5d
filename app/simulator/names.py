"""Realistic names for simulated machines: host names by role, operating systems and agent
versions in the proportions a typical small or mid-sized company has."""

from __future__ import annotations

import random
import re

# (share, OS family, edition, OS names, agent versions)
OS_MIX: tuple[tuple[float, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        0.42,
        "WINDOWS",
        "WORKSTATION",
        ("Windows 11 Pro", "Windows 11 Enterprise", "Windows 10 Pro", "Windows 10 Enterprise"),
        ("6.1.2.134", "6.2.0.121", "6.3.0.177"),
    ),
    (
        0.22,
        "WINDOWS",
        "SERVER",
        ("Windows Server 2022", "Windows Server 2019", "Windows Server 2016"),
        ("6.1.2.134", "6.2.0.121", "6.3.0.177"),
    ),
    (
        0.20,
        "LINUX",
        "SERVER",
        ("Ubuntu 22.04 LTS", "Ubuntu 24.04 LTS", "Red Hat Enterprise Linux 9", "Debian 12"),
        ("6.1.0.1498", "6.2.0.101", "6.3.0.42"),
    ),
    (
        0.04,
        "LINUX",
        "WORKSTATION",
        ("Ubuntu 24.04 LTS Desktop", "Fedora 40 Workstation"),
        ("6.2.0.101", "6.3.0.42"),
    ),
    (
        0.12,
        "MAC",
        "WORKSTATION",
        ("macOS 14 Sonoma", "macOS 15 Sequoia", "macOS 13 Ventura"),
        ("2.1.0.452", "2.2.0.118"),
    ),
)
SERVER_ROLES = ("dc", "sql", "app", "web", "file", "db", "print", "erp", "crm", "git", "mail")
FIRST_NAMES = (
    "anna", "ben", "chloe", "david", "emma", "felix", "grace", "hugo", "ines", "jack",
    "kate", "liam", "mia", "noah", "olga", "paul", "rosa", "sam", "tara", "victor",
)  # fmt: skip
SERVER_VERSIONS = {
    "BACKUP_AND_REPLICATION": ("12.1.2.172", "12.2.0.334", "12.3.0.310"),
    "MICROSOFT_365": ("8.0.3.1044", "8.1.0.305"),
    "PUBLIC_CLOUDS": ("7.0.0.281", "7.1.0.22"),
    "VEEAM_ONE": ("12.2.0.4093", "12.3.0.4670"),
}
SERVER_NAMES = {
    "BACKUP_AND_REPLICATION": "vbr01",
    "MICROSOFT_365": "vb365",
    "PUBLIC_CLOUDS": "vbaws",
    "VEEAM_ONE": "vone01",
}


def company_prefix(name: str) -> str:
    """ "Acme Corp" -> "acme", "Stark Industries" -> "stark"."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    return (words[0] if words else "host")[:10]


def _pick_os(rng: random.Random) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    x = rng.random()
    for share, family, edition, names, versions in OS_MIX:
        if x < share:
            return family, edition, names, versions
        x -= share
    _, family, edition, names, versions = OS_MIX[0]
    return family, edition, names, versions


def computer_identity(rng: random.Random, prefix: str, number: int) -> dict[str, str]:
    family, edition, names, versions = _pick_os(rng)
    if edition == "SERVER":
        role = rng.choice(SERVER_ROLES)
        hostname = f"{prefix}-{role}{number:03d}"
        hostname = hostname.upper() if family == "WINDOWS" else hostname
    elif family == "MAC":
        hostname = f"{rng.choice(FIRST_NAMES)}-macbook-{number:03d}"
    elif family == "WINDOWS":
        hostname = f"{prefix.upper()}-WS-{number:04d}"
    else:
        hostname = f"{prefix}-dev{number:03d}"
    return {
        "hostname": hostname,
        "osFamily": family,
        "edition": edition,
        "osName": rng.choice(names),
        "agentVersion": rng.choice(versions),
    }


def server_name(rng: random.Random, prefix: str, kind: str) -> tuple[str, str]:
    return f"{prefix}-{SERVER_NAMES[kind]}", rng.choice(SERVER_VERSIONS[kind])
