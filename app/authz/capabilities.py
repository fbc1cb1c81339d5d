"""What each kind of object is governed by, per portal. Fields and mutations name these.

A kind absent from a portal's mapping is out of reach for that portal's roles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.authz.matrix import Action, Portal
from app.authz.matrix import Functionality as F
from app.models.tenancy import OrgKind

if TYPE_CHECKING:
    from app.authz.principal import Principal

ALL_ACTIONS = frozenset(Action)


@dataclass(frozen=True)
class Capability:
    """An object kind, the functionality that governs it in each portal, the actions the
    object supports in each portal (a client's "company info" can be read and edited, not
    created), and the tree's own constraint (only the provider registers resellers)."""

    kind: str
    label: str
    functionality: dict[Portal, F]
    actions: dict[Portal, frozenset[Action]] = field(default_factory=dict)
    structure: Callable[[Principal, Action], bool] | None = None

    def functionality_for(self, portal: Portal) -> F | None:
        return self.functionality.get(portal)

    def supports(self, principal: Principal, action: Action) -> bool:
        if action not in self.actions.get(principal.portal, ALL_ACTIONS):
            return False
        return self.structure is None or self.structure(principal, action)


def _resellers_hang_under_the_provider(p: Principal, action: Action) -> bool:
    # The tree is provider → resellers → companies: registering or removing a reseller is
    # the provider's business; reseller staff read and edit their own reseller only.
    if action in {Action.CREATE, Action.DELETE}:
        return p.organization_kind is OrgKind.PROVIDER and p.company_ids is None
    return True


INFO_ONLY = frozenset({Action.READ, Action.UPDATE})
READ_ONLY = frozenset({Action.READ})

PROVIDER = Capability(
    "provider",
    "the service provider",
    {Portal.RESELLER: F.CLIENT_COMPANIES},
    # The root is created by `tenantry bootstrap`; through the API it is only read.
    actions={Portal.RESELLER: frozenset({Action.READ})},
)
RESELLERS = Capability(
    "reseller",
    "resellers",
    {Portal.RESELLER: F.CLIENT_COMPANIES},
    structure=_resellers_hang_under_the_provider,
)
COMPANIES = Capability(
    "company",
    "companies",
    {
        Portal.RESELLER: F.CLIENT_COMPANIES,
        Portal.CLIENT: F.CONFIGURATION,
        Portal.ENTERPRISE: F.CONFIGURATION,
    },
    # Company users keep their company's info; companies are registered by provider/reseller.
    actions={Portal.CLIENT: INFO_ONLY, Portal.ENTERPRISE: INFO_ONLY},
)
LOCATIONS = Capability(
    "location",
    "locations",
    {
        Portal.RESELLER: F.CLIENT_COMPANIES,
        Portal.CLIENT: F.CONFIGURATION,
        Portal.ENTERPRISE: F.CONFIGURATION,
    },
)
USERS = Capability(
    "user",
    "portal users",
    {
        Portal.RESELLER: F.CONFIGURATION,
        Portal.CLIENT: F.CONFIGURATION,
        Portal.ENTERPRISE: F.CONFIGURATION,
    },
)
AUDIT_LOG = Capability("audit_entry", "logs", {Portal.RESELLER: F.LOGS})


def _provider_staff_only(p: Principal, action: Action) -> bool:
    # Cloud Connect infrastructure (repositories, gateways, certificates, VLANs, IP pools,
    # hardware plan definitions) belongs to the provider: its unrestricted staff only.
    return p.organization_kind is OrgKind.PROVIDER and p.company_ids is None


CLOUD_INFRASTRUCTURE = Capability(
    "cloud_infrastructure",
    "Cloud Connect infrastructure",
    {Portal.RESELLER: F.CONFIGURATION},
    structure=_provider_staff_only,
)
TENANT_ACCOUNTS = Capability(
    "tenant_account",
    "tenant accounts and their resources",
    {
        Portal.RESELLER: F.CLIENT_COMPANIES,
        Portal.CLIENT: F.CONFIGURATION,
        Portal.ENTERPRISE: F.CONFIGURATION,
    },
    # Settings, credentials and quotas are the provider's or reseller's to set; companies
    # see their accounts, quotas and usage.
    actions={Portal.CLIENT: READ_ONLY, Portal.ENTERPRISE: READ_ONLY},
)
TENANT_CONSENT = Capability(
    "tenant_consent",
    "whether the provider may manage the tenant's backup server",
    {
        Portal.RESELLER: F.CLIENT_COMPANIES,
        Portal.CLIENT: F.CONFIGURATION,
        Portal.ENTERPRISE: F.CONFIGURATION,
    },
    # The company's own choice (seed 001); staff set it only for a BaaS company.
    actions={portal: INFO_ONLY for portal in Portal},
)
COMPANY_SERVICE = Capability(
    "company_service",
    "a company's service terms (Backup as a Service)",
    {Portal.RESELLER: F.CLIENT_COMPANIES},
    actions={Portal.RESELLER: INFO_ONLY},
)
SUBTENANTS = Capability(
    "subtenant",
    "subtenants",
    {
        Portal.RESELLER: F.CLIENT_COMPANIES,
        Portal.CLIENT: F.CONFIGURATION,
        Portal.ENTERPRISE: F.CONFIGURATION,
    },
)
REPLICAS = Capability(
    "vm_replica",
    "VM replicas",
    {
        Portal.RESELLER: F.FAILOVER_PLANS,
        Portal.CLIENT: F.FAILOVER_PLANS,
        Portal.ENTERPRISE: F.FAILOVER_PLANS,
    },
)
REMOTE_CONNECTIONS = Capability(
    "remote_connection",
    "remote connections to tenant backup servers",
    {Portal.RESELLER: F.BACKUP_AND_REPLICATION},
)

ALL: tuple[Capability, ...] = (
    PROVIDER,
    RESELLERS,
    COMPANIES,
    LOCATIONS,
    USERS,
    AUDIT_LOG,
    CLOUD_INFRASTRUCTURE,
    TENANT_ACCOUNTS,
    TENANT_CONSENT,
    COMPANY_SERVICE,
    SUBTENANTS,
    REPLICAS,
    REMOTE_CONNECTIONS,
)
