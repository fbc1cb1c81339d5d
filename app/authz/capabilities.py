"""What each kind of object is governed by, per portal. Fields and mutations name these.

A kind absent from a portal's mapping is out of reach for that portal's roles.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.authz.matrix import Functionality as F
from app.authz.matrix import Portal


@dataclass(frozen=True)
class Capability:
    kind: str
    label: str
    functionality: dict[Portal, F]

    def functionality_for(self, portal: Portal) -> F | None:
        return self.functionality.get(portal)


RESELLERS = Capability("reseller", "resellers", {Portal.RESELLER: F.CLIENT_COMPANIES})
COMPANIES = Capability(
    "company",
    "companies",
    {Portal.RESELLER: F.CLIENT_COMPANIES, Portal.CLIENT: F.CONFIGURATION, Portal.ENTERPRISE: F.CONFIGURATION},
)
LOCATIONS = Capability(
    "location",
    "locations",
    {Portal.RESELLER: F.CLIENT_COMPANIES, Portal.CLIENT: F.CONFIGURATION, Portal.ENTERPRISE: F.CONFIGURATION},
)
USERS = Capability(
    "user",
    "portal users",
    {Portal.RESELLER: F.CONFIGURATION, Portal.CLIENT: F.CONFIGURATION, Portal.ENTERPRISE: F.CONFIGURATION},
)
AUDIT_LOG = Capability("audit_entry", "logs", {Portal.RESELLER: F.LOGS})

ALL: tuple[Capability, ...] = (RESELLERS, COMPANIES, LOCATIONS, USERS, AUDIT_LOG)
