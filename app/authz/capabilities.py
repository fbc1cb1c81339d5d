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


def _everywhere(functionality: F) -> dict[Portal, F]:
    return {portal: functionality for portal in Portal}


def _staff_and_client(functionality: F) -> dict[Portal, F]:
    # Rows the Department Portal (seed 002) does not have: out of reach there.
    return {Portal.RESELLER: functionality, Portal.CLIENT: functionality}


# Managed workloads (the workloads issue). Rows are scoped by `scope.workload_q`.
MANAGED_COMPUTERS = Capability(
    "managed_computer", "managed computers", _everywhere(F.MANAGED_COMPUTERS)
)
AGENT_KEYS = Capability(
    "agent_key",
    "keys that backup servers and agents report in with",
    _everywhere(F.MANAGED_COMPUTERS),
    # A key is issued and revoked, never edited.
    actions={portal: frozenset({Action.READ, Action.CREATE, Action.DELETE}) for portal in Portal},
)
BACKUP_AGENTS = Capability("backup_agent", "Veeam backup agents", _everywhere(F.BACKUP_AGENTS))
DISCOVERY_RULES = Capability("discovery_rule", "discovery rules", _everywhere(F.DISCOVERY_RULES))
FILE_RESTORES = Capability(
    "file_restore", "file-level restores", _staff_and_client(F.FILE_LEVEL_RESTORE)
)
PROTECTED_DATA = Capability(
    "protected_data",
    "protected data",
    _everywhere(F.PROTECTED_DATA),
    actions={portal: READ_ONLY for portal in Portal},
)
MONITORING = Capability(
    "monitoring",
    "the monitoring summary",
    _everywhere(F.MONITORING),
    actions={portal: READ_ONLY for portal in Portal},
)
BACKUP_REPORTS = Capability(
    "backup_report",
    "backup reports",
    _everywhere(F.BACKUP_REPORTS),
    # Generated (created) and removed; a report's content is the job's, never edited.
    actions={portal: frozenset({Action.READ, Action.CREATE, Action.DELETE}) for portal in Portal},
)
LICENSING = Capability("license_usage", "license usage", {Portal.RESELLER: F.LICENSING})


def _library_is_the_providers(p: Principal, action: Action) -> bool:
    # The library's entries are installed, edited and removed by the provider; resellers and
    # companies switch them on and off (PLUGINS).
    if action is Action.READ:
        return True
    return p.organization_kind is OrgKind.PROVIDER and p.company_ids is None


PLUGIN_ENTRIES = Capability(
    "plugin_entry",
    "the entries of the plugin library",
    {Portal.RESELLER: F.PLUGIN_LIBRARY},
    structure=_library_is_the_providers,
)
PLUGINS = Capability(
    "plugin",
    "plugins switched on and off for organizations",
    {Portal.RESELLER: F.PLUGIN_LIBRARY, Portal.CLIENT: F.CONFIGURATION},
    # Companies switch the library's plugins on and off for themselves (seed 003 lists the
    # plugin library among a company's configuration tasks); the Department Portal has none.
    actions={portal: INFO_ONLY for portal in Portal},
)
VEEAM_ONE = Capability(
    "veeam_one",
    "Veeam ONE monitoring data",
    _staff_and_client(F.VEEAM_ONE),
    actions={portal: READ_ONLY for portal in Portal},
)

# Backup servers and appliances, one capability per product row of the matrices.
SERVER_CAPABILITIES: dict[str, Capability] = {
    "BACKUP_AND_REPLICATION": Capability(
        "backup_server", "Veeam Backup & Replication servers", _everywhere(F.BACKUP_AND_REPLICATION)
    ),
    "MICROSOFT_365": Capability(
        "backup_server",
        "Veeam Backup for Microsoft 365 servers",
        _staff_and_client(F.MICROSOFT_365),
    ),
    "PUBLIC_CLOUDS": Capability(
        "backup_server",
        "Veeam Backup for Public Clouds appliances",
        _staff_and_client(F.PUBLIC_CLOUDS),
    ),
    "VEEAM_ONE": Capability(
        "backup_server",
        "Veeam ONE servers",
        _staff_and_client(F.VEEAM_ONE),
        actions={portal: READ_ONLY for portal in Portal},
    ),
}

# Backup jobs by kind: the product row that governs them.
JOB_FUNCTIONALITY: dict[str, F] = {
    "AGENT": F.BACKUP_AGENTS,
    "VBR_BACKUP": F.BACKUP_AND_REPLICATION,
    "BACKUP_COPY": F.BACKUP_AND_REPLICATION,
    "REPLICATION": F.BACKUP_AND_REPLICATION,
    "PUBLIC_CLOUD_POLICY": F.PUBLIC_CLOUDS,
    "MICROSOFT_365": F.MICROSOFT_365,
}
_ENTERPRISE_JOB_ROWS = frozenset({F.BACKUP_AGENTS, F.BACKUP_AND_REPLICATION})


def _job_rows(functionality: F, assigned: bool) -> dict[Portal, F]:
    rows = {Portal.RESELLER: functionality, Portal.CLIENT: functionality}
    if assigned:
        # "Jobs assigned by service provider" (seed 003) governs them in the Client Portal.
        rows[Portal.CLIENT] = F.PROVIDER_ASSIGNED_JOBS
    if functionality in _ENTERPRISE_JOB_ROWS:
        rows[Portal.ENTERPRISE] = functionality
    return rows


def _job_capabilities(configure: bool) -> dict[tuple[str, bool], Capability]:
    out: dict[tuple[str, bool], Capability] = {}
    for kind, functionality in JOB_FUNCTIONALITY.items():
        for assigned in (False, True):
            actions: dict[Portal, frozenset[Action]] = {}
            if assigned and configure:
                # Configured by the provider: the company sees the settings, does not edit.
                actions[Portal.CLIENT] = READ_ONLY
            label = "jobs assigned by the service provider" if assigned else "backup jobs"
            verb = "settings of " if configure else ""
            out[(kind, assigned)] = Capability(
                "backup_job", f"{verb}{label} ({kind})", _job_rows(functionality, assigned), actions
            )
    return out


# Operating a job: start, stop, retry, enable, disable (UPDATE); reading it, its sessions.
BACKUP_JOBS: dict[tuple[str, bool], Capability] = _job_capabilities(configure=False)
# Its settings: schedule, target, create, delete.
BACKUP_JOB_SETTINGS: dict[tuple[str, bool], Capability] = _job_capabilities(configure=True)


def backup_job(kind: str, assigned: bool, *, settings: bool = False) -> Capability:
    return (BACKUP_JOB_SETTINGS if settings else BACKUP_JOBS)[(str(kind), bool(assigned))]


def backup_server(kind: str) -> Capability:
    return SERVER_CAPABILITIES[str(kind)]


# Cloud failover plans (the failover issue): the Failover plans row of each matrix.
FAILOVER_PLANS = Capability("failover_plan", "cloud failover plans", _everywhere(F.FAILOVER_PLANS))
FAILOVER_SESSIONS = Capability(
    "failover_session",
    "failover plan runs (start, test, undo, retry) and their logs",
    _everywhere(F.FAILOVER_PLANS),
    # CREATE starts a run, UPDATE cancels one; runs are never edited or removed.
    actions={portal: frozenset({Action.READ, Action.CREATE, Action.UPDATE}) for portal in Portal},
)
FAILOVER_SCRIPTS = Capability(
    "failover_script",
    "pre- and post-failover scripts",
    # Seed 000: the provider runs the plans on the cloud host; tenants cannot add scripts.
    {Portal.RESELLER: F.FAILOVER_PLANS},
)


# Billing (the billing issue): the Invoices row (Chargeback Reports in the Department Portal).
INVOICES = Capability(
    "invoice",
    "invoices, credit notes and chargeback reports",
    _everywhere(F.INVOICES),
    # Generated (CREATE), marked paid or unpaid, resent, corrected (UPDATE); never removed.
    actions={portal: frozenset({Action.READ, Action.CREATE, Action.UPDATE}) for portal in Portal},
)
SUBSCRIPTION_PLANS = Capability(
    "subscription_plan",
    "subscription plans and which plan bills which customer",
    # Configuring what customers pay is a configuration task of the provider or reseller
    # (invoice auditors act on invoices, not on plans).
    {Portal.RESELLER: F.CONFIGURATION},
)


# Alarms (the alarms issue): the Active alarms row; configuring them is a configuration task of
# a company (seed 003 and 002 list alarms among the configuration tasks) and an Active alarms
# task of the provider's and resellers' staff (whose Configuration row does not list them).
ALARMS = Capability(
    "alarm",
    "triggered alarms and their history",
    _everywhere(F.ACTIVE_ALARMS),
    # Acknowledged and resolved (UPDATE); raised and removed only by the evaluation.
    actions={portal: frozenset({Action.READ, Action.UPDATE}) for portal in Portal},
)
ALARM_SETTINGS = Capability(
    "alarm_settings",
    "alarm templates, notification settings, webhooks and maintenance windows",
    {
        Portal.RESELLER: F.ACTIVE_ALARMS,
        Portal.CLIENT: F.CONFIGURATION,
        Portal.ENTERPRISE: F.CONFIGURATION,
    },
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
    MANAGED_COMPUTERS,
    AGENT_KEYS,
    BACKUP_AGENTS,
    DISCOVERY_RULES,
    FILE_RESTORES,
    PROTECTED_DATA,
    MONITORING,
    BACKUP_REPORTS,
    LICENSING,
    PLUGIN_ENTRIES,
    PLUGINS,
    VEEAM_ONE,
    FAILOVER_PLANS,
    FAILOVER_SESSIONS,
    FAILOVER_SCRIPTS,
    INVOICES,
    SUBSCRIPTION_PLANS,
    ALARMS,
    ALARM_SETTINGS,
    *SERVER_CAPABILITIES.values(),
    *BACKUP_JOBS.values(),
    *BACKUP_JOB_SETTINGS.values(),
)
