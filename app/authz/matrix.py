"""The three role × functionality matrices of the seeds, loaded from `matrix.json` and validated.

The JSON file keeps the seeds' words as labels; the code refers to functionalities by stable keys
(`CLIENT_COMPANIES`, `CONFIGURATION`...), since the same functionality has other words in other
portals ("Monitoring" / "Summary", "Invoices" / "Chargeback Reports").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

MATRIX_FILE = Path(__file__).with_name("matrix.json")


class Portal(StrEnum):
    RESELLER = "RESELLER"  # provider and reseller staff (seed 004)
    CLIENT = "CLIENT"  # company users (seed 003)
    ENTERPRISE = "ENTERPRISE"  # department users (seed 002)


class Action(StrEnum):
    READ = "READ"
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class Functionality(StrEnum):
    CONFIGURATION = "CONFIGURATION"
    PLUGIN_LIBRARY = "PLUGIN_LIBRARY"
    CLIENT_COMPANIES = "CLIENT_COMPANIES"
    MANAGED_COMPUTERS = "MANAGED_COMPUTERS"
    DISCOVERY_RULES = "DISCOVERY_RULES"
    BACKUP_AGENTS = "BACKUP_AGENTS"
    FILE_LEVEL_RESTORE = "FILE_LEVEL_RESTORE"
    BACKUP_AND_REPLICATION = "BACKUP_AND_REPLICATION"
    PROVIDER_ASSIGNED_JOBS = "PROVIDER_ASSIGNED_JOBS"
    PUBLIC_CLOUDS = "PUBLIC_CLOUDS"
    FAILOVER_PLANS = "FAILOVER_PLANS"
    MICROSOFT_365 = "MICROSOFT_365"
    VEEAM_ONE = "VEEAM_ONE"
    LICENSING = "LICENSING"
    INVOICES = "INVOICES"
    BACKUP_REPORTS = "BACKUP_REPORTS"
    MONITORING = "MONITORING"
    ACTIVE_ALARMS = "ACTIVE_ALARMS"
    PROTECTED_DATA = "PROTECTED_DATA"
    LOGS = "LOGS"


class RoleScope(StrEnum):
    ORGANIZATION = "organization"  # the whole organization's tree
    COMPANIES = "companies"  # may be limited to selected companies
    LOCATIONS = "locations"  # may be limited to selected locations
    OWN_COMPUTERS = "own_computers"  # a Subtenant: their own computers only


@dataclass(frozen=True)
class Cell:
    """One cell of a matrix: the seed's text, the actions it grants, and its named rule if any."""

    text: str
    actions: frozenset[Action]
    rule: str | None


@dataclass(frozen=True)
class Role:
    portal: Portal
    name: str
    primary: bool
    scope: RoleScope


@dataclass(frozen=True)
class Row:
    key: Functionality
    functionality: str
    cells: dict[str, Cell]


@dataclass(frozen=True)
class PortalMatrix:
    portal: Portal
    label: str
    source: str
    footnote: str | None
    roles: tuple[Role, ...]
    rows: tuple[Row, ...]

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(name)

    def grants(self, role: str) -> dict[Functionality, Cell]:
        return {row.key: row.cells[role] for row in self.rows}


@dataclass(frozen=True)
class Matrix:
    portals: dict[Portal, PortalMatrix]

    def role(self, portal: Portal, name: str) -> Role:
        return self.portals[portal].role(name)

    def cell(self, portal: Portal, role: str, functionality: Functionality) -> Cell | None:
        """None where the portal has no row for the functionality (nobody there has it)."""
        for row in self.portals[portal].rows:
            if row.key == functionality:
                return row.cells[role]
        return None


class MatrixError(ValueError):
    """The matrix file is inconsistent; the application refuses to start."""


def parse(data: dict, known_rules: frozenset[str]) -> Matrix:
    cells: dict[str, Cell] = {}
    for text, spec in data["cells"].items():
        try:
            actions = frozenset(Action(a) for a in spec["actions"])
        except ValueError as exc:
            raise MatrixError(f"cell {text!r}: {exc}") from exc
        rule = spec.get("rule")
        if rule is not None and rule not in known_rules:
            raise MatrixError(f"cell {text!r} names rule {rule!r}, which is not registered")
        cells[text] = Cell(text, actions, rule)
    portals: dict[Portal, PortalMatrix] = {}
    for p in data["portals"]:
        portal = Portal(p["key"])
        roles = tuple(
            Role(portal, r["name"], bool(r.get("primary", False)), RoleScope(r["scope"]))
            for r in p["roles"]
        )
        names = [r.name for r in roles]
        if len(set(names)) != len(names):
            raise MatrixError(f"{portal}: duplicate role names")
        if sum(r.primary for r in roles) != 1:
            raise MatrixError(f"{portal}: exactly one primary role (owner) is required")
        rows = []
        seen: set[Functionality] = set()
        for row in p["rows"]:
            try:
                key = Functionality(row["key"])
            except ValueError as exc:
                raise MatrixError(f"{portal}: unknown functionality key {row['key']!r}") from exc
            if key in seen:
                raise MatrixError(f"{portal}: functionality {key} twice")
            seen.add(key)
            if set(row["cells"]) != set(names):
                raise MatrixError(f"{portal}/{row['functionality']}: cells must name every role")
            unknown = [t for t in row["cells"].values() if t not in cells]
            if unknown:
                raise MatrixError(f"{portal}/{row['functionality']}: unknown cell text {unknown}")
            rows.append(
                Row(key, row["functionality"], {r: cells[t] for r, t in row["cells"].items()})
            )
        portals[portal] = PortalMatrix(
            portal, p["label"], p["source"], p.get("footnote"), roles, tuple(rows)
        )
    if set(portals) != set(Portal):
        raise MatrixError("the matrix file must describe all three portals")
    return Matrix(portals)


@cache
def load_matrix() -> Matrix:
    from app.authz.rules import RULES

    return parse(json.loads(MATRIX_FILE.read_text(encoding="utf-8")), frozenset(RULES))
