"""A small managed fleet on top of the `world`: in every company, for every location, one
computer with an agent; jobs of every kind (one assigned by the provider); sessions and restore
points; a backup server of every kind; and, for the company's Subtenant user, a Subtenant
account with one computer of its own. Rows are written with the models (as ingestion would
fill them) so the permission and cross-tenant suites have an object of each type everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.authz.capabilities import JOB_FUNCTIONALITY
from app.authz.engine import portal_for
from app.authz.matrix import RoleScope, load_matrix
from app.models import (
    AgentEdition,
    AgentKey,
    AgentPlatform,
    AgentStatus,
    BackupAgent,
    BackupJob,
    BackupJobKind,
    BackupJobSession,
    BackupReport,
    BackupResource,
    BackupServer,
    CloudRepository,
    DiscoveryKind,
    DiscoveryRule,
    FileRestoreRequest,
    LicensedProduct,
    LicenseUsage,
    ManagedComputer,
    Organization,
    OrgKind,
    OsFamily,
    Plugin,
    RestorePoint,
    ServerKind,
    SessionResult,
    Severity,
    Subtenant,
    TargetKind,
    TenantAccount,
    TenantAccountType,
    VeeamOneRecord,
)
from app.settings import get_settings
from tests.factories import World, password_hash

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class Fleet:
    # key "<org>-<location name>" (world location key) → computer
    computers: dict[str, ManagedComputer] = field(default_factory=dict)
    # key "<org>:own" → the Subtenant's own computer
    subtenant_computers: dict[str, ManagedComputer] = field(default_factory=dict)
    subtenants: dict[str, Subtenant] = field(default_factory=dict)
    servers: dict[tuple[str, ServerKind], BackupServer] = field(default_factory=dict)
    # (org, kind, assigned) → job
    jobs: dict[tuple[str, BackupJobKind, bool], BackupJob] = field(default_factory=dict)
    sessions: dict[str, BackupJobSession] = field(default_factory=dict)  # org → an agent session
    restore_points: dict[str, RestorePoint] = field(default_factory=dict)  # location key → point
    # Filled by `add_operations` (location key, or "<org>:own" for a Subtenant's computer):
    agent_keys: dict[str, AgentKey] = field(default_factory=dict)
    discovery_rules: dict[str, DiscoveryRule] = field(default_factory=dict)
    veeam_one: dict[str, VeeamOneRecord] = field(default_factory=dict)
    file_restores: dict[str, FileRestoreRequest] = field(default_factory=dict)
    # "<org>" (company-wide, asked by nobody) or a world user key (asked by that user)
    reports: dict[str, BackupReport] = field(default_factory=dict)
    license_usage: dict[str, LicenseUsage] = field(default_factory=dict)  # org → a row
    plugins: list[Plugin] = field(default_factory=list)

    def computer(self, location_key: str) -> ManagedComputer:
        return self.computers[location_key]


def _subtenant_role() -> str:
    """The company portal's role whose scope is its own computers (from the matrix data)."""
    portal = portal_for(OrgKind.COMPANY, get_settings().enterprise)
    return next(
        r.name for r in load_matrix().portals[portal].roles if r.scope is RoleScope.OWN_COMPUTERS
    )


async def _computer(
    company: Organization, location_id: int, uid: str, subtenant: Subtenant | None = None
) -> ManagedComputer:
    computer = await ManagedComputer.create(
        company=company,
        location_id=location_id,
        uid=uid,
        hostname=f"{uid}.example.test",
        os_family=OsFamily.WINDOWS,
        os_name="Windows Server 2022",
        agent_status=AgentStatus.HEALTHY,
        last_heartbeat_at=NOW,
        subtenant=subtenant,
        last_restore_point_at=NOW - timedelta(hours=2),
        restore_point_count=1,
    )
    await BackupAgent.create(
        computer=computer,
        platform=AgentPlatform.WINDOWS,
        edition=AgentEdition.SERVER,
        version="6.3.0",
        policy="Daily",
        status=AgentStatus.HEALTHY,
    )
    return computer


async def _job(
    company: Organization,
    location_id: int,
    uid: str,
    kind: BackupJobKind,
    *,
    computer: ManagedComputer | None = None,
    server: BackupServer | None = None,
    assigned: bool = False,
) -> BackupJob:
    return await BackupJob.create(
        company=company,
        location_id=location_id,
        uid=uid,
        name=uid,
        kind=kind,
        functionality=JOB_FUNCTIONALITY[kind.value].value,
        computer=computer,
        server=server,
        assigned_by_provider=assigned,
        schedule="0 22 * * *",
        last_result=SessionResult.SUCCESS,
        last_run_at=NOW - timedelta(hours=2),
    )


async def _session(job: BackupJob, subtenant_id: int | None = None) -> BackupJobSession:
    return await BackupJobSession.create(
        job=job,
        uid=f"{job.uid}-s1",
        company_id=job.company_id,  # type: ignore[attr-defined]
        location_id=job.location_id,  # type: ignore[attr-defined]
        computer_id=job.computer_id,  # type: ignore[attr-defined]
        subtenant_id=subtenant_id,
        functionality=job.functionality,
        result=SessionResult.SUCCESS,
        started_at=NOW - timedelta(hours=2, minutes=30),
        ended_at=NOW - timedelta(hours=2),
        processed_bytes=10 * 2**30,
        transferred_bytes=2 * 2**30,
    )


async def build_fleet(world: World) -> Fleet:
    fleet = Fleet()
    repo = await CloudRepository.create(name="fleet-repo", capacity_gb=100_000)
    subtenant_role = _subtenant_role()
    for org_key, company in world.orgs.items():
        if company.kind is not OrgKind.COMPANY:
            continue
        locations = [(k, loc) for k, loc in world.locations.items() if loc.company_id == company.id]  # type: ignore[attr-defined]
        default_id = next(loc.id for _, loc in locations if loc.is_default)
        for loc_key, loc in locations:
            computer = await _computer(company, loc.id, f"{org_key}-{loc.name}".replace(" ", "-"))
            fleet.computers[loc_key] = computer
            fleet.restore_points[loc_key] = await RestorePoint.create(
                computer=computer,
                uid=f"{computer.uid}-rp1",
                company_id=company.id,
                created_at=NOW - timedelta(hours=2),
                size_bytes=2**30,
                target_kind=TargetKind.LOCAL,
            )
            job = await _job(
                company, loc.id, f"{computer.uid}-agent", BackupJobKind.AGENT, computer=computer
            )
            fleet.jobs.setdefault((org_key, BackupJobKind.AGENT, False), job)
            fleet.sessions.setdefault(org_key, await _session(job))
        for kind in ServerKind:
            fleet.servers[(org_key, kind)] = await BackupServer.create(
                company=company,
                location_id=default_id,
                uid=f"{org_key}-{kind.value}",
                kind=kind,
                name=f"{org_key} {kind.value}",
                version="12.3",
                status=AgentStatus.HEALTHY,
                last_heartbeat_at=NOW,
            )
        server_for = {
            BackupJobKind.VBR_BACKUP: ServerKind.BACKUP_AND_REPLICATION,
            BackupJobKind.BACKUP_COPY: ServerKind.BACKUP_AND_REPLICATION,
            BackupJobKind.REPLICATION: ServerKind.BACKUP_AND_REPLICATION,
            BackupJobKind.PUBLIC_CLOUD_POLICY: ServerKind.PUBLIC_CLOUDS,
            BackupJobKind.MICROSOFT_365: ServerKind.MICROSOFT_365,
        }
        for kind, server_kind in server_for.items():
            job = await _job(
                company,
                default_id,
                f"{org_key}-{kind.value}",
                kind,
                server=fleet.servers[(org_key, server_kind)],
            )
            fleet.jobs[(org_key, kind, False)] = job
            await _session(job)
        default_computer = fleet.computers[f"{org_key}-Default"]
        fleet.jobs[(org_key, BackupJobKind.AGENT, True)] = await _job(
            company,
            default_id,
            f"{org_key}-assigned",
            BackupJobKind.AGENT,
            computer=default_computer,
            assigned=True,
        )
        if f"{org_key}:{subtenant_role}" in world.users:
            account = await TenantAccount.create(
                company=company,
                name=f"{org_key}-tenant",
                type=TenantAccountType.STANDALONE,
                password_hash=password_hash(),
            )
            resource = await BackupResource.create(
                tenant_account=account, repository=repo, quota_gb=1000
            )
            subtenant = await Subtenant.create(
                user=world.users[f"{org_key}:{subtenant_role}"], resource=resource
            )
            fleet.subtenants[org_key] = subtenant
            own = await _computer(company, default_id, f"{org_key}-own", subtenant)
            fleet.subtenant_computers[f"{org_key}:own"] = own
            job = await _job(
                company, default_id, f"{org_key}-own-agent", BackupJobKind.AGENT, computer=own
            )
            job.target_kind = TargetKind.CLOUD
            job.target_resource = resource
            job.target_subtenant = subtenant
            await job.save()
            await _session(job, subtenant.id)
    return fleet


async def _restore(computer: ManagedComputer, point: RestorePoint) -> FileRestoreRequest:
    return await FileRestoreRequest.create(
        company_id=computer.company_id,  # type: ignore[attr-defined]
        computer=computer,
        restore_point=point,
        paths=["/etc/hosts"],
        destination="/tmp/restored",
    )


async def add_operations(world: World, fleet: Fleet) -> Fleet:
    """The objects of the console's operations on top of a fleet, for the permission suites:
    per location an agent key, a discovery rule, a Veeam ONE record and a requested file
    restore; per Subtenant computer a restore point and a requested file restore; per company
    a report nobody asked for, one per user limited to locations (asked by them) and a
    license usage row; one plugin in the library."""
    for loc_key, computer in fleet.computers.items():
        org_key = loc_key.split("-", 1)[0]
        company_id = computer.company_id  # type: ignore[attr-defined]
        location_id = computer.location_id  # type: ignore[attr-defined]
        fleet.agent_keys[loc_key] = await AgentKey.create(
            company_id=company_id,
            location_id=location_id,
            name=f"{loc_key} key",
            prefix=f"f{computer.id:06d}"[:16],
            key_hash="0" * 64,
        )
        fleet.discovery_rules[loc_key] = await DiscoveryRule.create(
            company_id=company_id,
            location_id=location_id,
            name=f"{loc_key} scan",
            kind=DiscoveryKind.NETWORK_SCAN,
            ranges=["10.0.0.0/30"],
        )
        fleet.veeam_one[loc_key] = await VeeamOneRecord.create(
            company_id=company_id,
            location_id=location_id,
            server=fleet.servers[(org_key, ServerKind.VEEAM_ONE)],
            uid=f"{loc_key}-v1",
            object_name=computer.hostname,
            metric="cpu",
            value=42.0,
            severity=Severity.WARNING,
            recorded_at=NOW,
        )
        fleet.file_restores[loc_key] = await _restore(computer, fleet.restore_points[loc_key])
    for own_key, computer in fleet.subtenant_computers.items():
        point = await RestorePoint.create(
            computer=computer,
            uid=f"{computer.uid}-rp1",
            company_id=computer.company_id,  # type: ignore[attr-defined]
            created_at=NOW - timedelta(hours=2),
            size_bytes=2**30,
            target_kind=TargetKind.CLOUD,
        )
        fleet.restore_points[own_key] = point
        fleet.file_restores[own_key] = await _restore(computer, point)
    for org_key, company in world.orgs.items():
        if company.kind is not OrgKind.COMPANY:
            continue
        period = {"period_start": NOW.date().replace(day=1), "period_end": NOW.date()}
        fleet.reports[org_key] = await BackupReport.create(company=company, **period)
        for user_key, user in world.users.items():
            if user.organization_id == company.id and user.scope_restricted:  # type: ignore[attr-defined]
                fleet.reports[user_key] = await BackupReport.create(
                    company=company, requested_by=user, **period
                )
        fleet.license_usage[org_key] = await LicenseUsage.create(
            company=company,
            product=LicensedProduct.AGENT_SERVER,
            month=NOW.date().replace(day=1),
            units=2,
        )
    fleet.plugins.append(await Plugin.create(name="Fleet plugin", version="1.0"))
    return fleet
