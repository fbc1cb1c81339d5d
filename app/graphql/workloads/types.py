"""GraphQL types of managed workloads: managed computers, backup agents, backup servers,
backup jobs, their sessions and restore points.

Nested relations come through the per-request loaders (`Loaders.workloads`), one query per
relation whatever the page size, and each is guarded by its own capability: a relation the
viewer may not read is null (the fields are nullable), never an error that drops the page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NewType

import strawberry

from app.authz import capabilities
from app.authz.capabilities import BACKUP_AGENTS, MANAGED_COMPUTERS, PROTECTED_DATA
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import BadInput
from app.graphql.common import Node, register_node, viewer_allows
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.models.backups import (
    BackupJob,
    BackupJobKind,
    BackupJobSession,
    JobRunState,
    PendingCommand,
    RestorePoint,
    SessionResult,
    TargetKind,
)
from app.models.inventory import (
    AgentEdition,
    AgentPlatform,
    AgentStatus,
    BackupAgent,
    BackupServer,
    ManagedComputer,
    OsFamily,
    ServerKind,
)
from app.services import workloads

Info = strawberry.Info[Context, Any]

Long = strawberry.scalar(
    NewType("Long", int),
    description="A 64-bit integer (byte counts), serialised as a JSON number.",
    serialize=int,
    parse_value=int,
)

OsFamilyEnum = strawberry.enum(OsFamily, name="OsFamily")
AgentStatusEnum = strawberry.enum(AgentStatus, name="AgentStatus")
AgentPlatformEnum = strawberry.enum(AgentPlatform, name="AgentPlatform")
AgentEditionEnum = strawberry.enum(AgentEdition, name="AgentEdition")
ServerKindEnum = strawberry.enum(ServerKind, name="BackupServerKind")
BackupJobKindEnum = strawberry.enum(BackupJobKind, name="BackupJobKind")
TargetKindEnum = strawberry.enum(TargetKind, name="BackupTargetKind")
JobRunStateEnum = strawberry.enum(JobRunState, name="BackupJobRunState")
SessionResultEnum = strawberry.enum(SessionResult, name="BackupSessionResult")
PendingCommandEnum = strawberry.enum(PendingCommand, name="BackupJobCommand")

LATEST_MAX = 100


def gid(type_name: str, pk: int | None) -> strawberry.ID | None:
    return None if pk is None else strawberry.ID(to_global_id(type_name, pk))


def _latest(value: int, field: str = "latest") -> int:
    if value < 1 or value > LATEST_MAX:
        raise BadInput(f"'{field}' must be between 1 and {LATEST_MAX}", field=field)
    return value


@strawberry.type(name="BackupAgent", description="A Veeam backup agent on a managed computer.")
class BackupAgentType(Node):
    id: strawberry.ID
    computer_id: strawberry.ID
    platform: AgentPlatformEnum  # type: ignore[valid-type]
    edition: AgentEditionEnum  # type: ignore[valid-type]
    version: str
    policy: str
    status: AgentStatusEnum  # type: ignore[valid-type]
    updated_at: datetime

    @classmethod
    def from_row(cls, row: BackupAgent) -> BackupAgentType:
        return cls(
            id=strawberry.ID(to_global_id("BackupAgent", row.id)),
            computer_id=strawberry.ID(to_global_id("ManagedComputer", row.computer_id)),  # type: ignore[attr-defined]
            platform=row.platform,
            edition=row.edition,
            version=row.version,
            policy=row.policy,
            status=row.status,
            updated_at=row.updated_at,
        )

    @strawberry.field(description="You may change the agent's policy or settings.")
    def viewer_can_update(self, info: Info) -> bool:
        return viewer_allows(info, BACKUP_AGENTS, Action.UPDATE)


@strawberry.type(name="BackupServer", description="A backup server or appliance of a company.")
class BackupServerType(Node):
    id: strawberry.ID
    company_id: strawberry.ID
    location_id: strawberry.ID
    uid: str
    kind: ServerKindEnum  # type: ignore[valid-type]
    name: str
    version: str
    status: AgentStatusEnum  # type: ignore[valid-type]
    last_heartbeat_at: datetime | None

    @classmethod
    def from_row(cls, row: BackupServer) -> BackupServerType:
        return cls(
            id=strawberry.ID(to_global_id("BackupServer", row.id)),
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            location_id=strawberry.ID(to_global_id("Location", row.location_id)),  # type: ignore[attr-defined]
            uid=row.uid,
            kind=row.kind,
            name=row.name,
            version=row.version,
            status=row.status,
            last_heartbeat_at=row.last_heartbeat_at,
        )

    @strawberry.field(description="You may change this server's settings.")
    def viewer_can_update(self, info: Info) -> bool:
        return viewer_allows(info, capabilities.backup_server(self.kind), Action.UPDATE)


@strawberry.type(name="BackupJobSession", description="One run of a backup job.")
class BackupJobSessionType(Node):
    id: strawberry.ID
    job_id: strawberry.ID
    uid: str
    company_id: strawberry.ID
    location_id: strawberry.ID
    computer_id: strawberry.ID | None
    result: SessionResultEnum  # type: ignore[valid-type]
    started_at: datetime
    ended_at: datetime | None
    processed_bytes: Long  # type: ignore[valid-type]
    transferred_bytes: Long  # type: ignore[valid-type]
    warnings: int
    messages: list[str]

    @classmethod
    def from_row(cls, row: BackupJobSession) -> BackupJobSessionType:
        return cls(
            id=strawberry.ID(to_global_id("BackupJobSession", row.id)),
            job_id=strawberry.ID(to_global_id("BackupJob", row.job_id)),  # type: ignore[attr-defined]
            uid=row.uid,
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),
            location_id=strawberry.ID(to_global_id("Location", row.location_id)),
            computer_id=gid("ManagedComputer", row.computer_id),
            result=row.result,
            started_at=row.started_at,
            ended_at=row.ended_at,
            processed_bytes=row.processed_bytes,
            transferred_bytes=row.transferred_bytes,
            warnings=row.warnings,
            messages=[str(m) for m in row.messages or []],
        )


@strawberry.type(name="RestorePoint", description="A restore point of a managed computer.")
class RestorePointType(Node):
    id: strawberry.ID
    computer_id: strawberry.ID
    job_id: strawberry.ID | None
    uid: str
    created_at: datetime
    size_bytes: Long  # type: ignore[valid-type]
    target_kind: TargetKindEnum  # type: ignore[valid-type]

    @classmethod
    def from_row(cls, row: RestorePoint) -> RestorePointType:
        return cls(
            id=strawberry.ID(to_global_id("RestorePoint", row.id)),
            computer_id=strawberry.ID(to_global_id("ManagedComputer", row.computer_id)),  # type: ignore[attr-defined]
            job_id=gid("BackupJob", row.job_id),  # type: ignore[attr-defined]
            uid=row.uid,
            created_at=row.created_at,
            size_bytes=row.size_bytes,
            target_kind=row.target_kind,
        )


@strawberry.type(name="BackupJob", description="A backup job of a managed workload.")
class BackupJobType(Node):
    id: strawberry.ID
    company_id: strawberry.ID
    location_id: strawberry.ID
    uid: str
    name: str
    kind: BackupJobKindEnum  # type: ignore[valid-type]
    functionality: str
    computer_id: strawberry.ID | None
    server_id: strawberry.ID | None
    target_kind: TargetKindEnum  # type: ignore[valid-type]
    target_name: str
    assigned_by_provider: bool
    schedule: str = strawberry.field(description="Cron expression; empty: manual only.")
    enabled: bool
    run_state: JobRunStateEnum  # type: ignore[valid-type]
    pending_command: PendingCommandEnum | None  # type: ignore[valid-type]
    last_result: SessionResultEnum  # type: ignore[valid-type]
    last_run_at: datetime | None
    _row: strawberry.Private[BackupJob]

    @classmethod
    def from_row(cls, row: BackupJob) -> BackupJobType:
        return cls(
            id=strawberry.ID(to_global_id("BackupJob", row.id)),
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            location_id=strawberry.ID(to_global_id("Location", row.location_id)),  # type: ignore[attr-defined]
            uid=row.uid,
            name=row.name,
            kind=row.kind,
            functionality=row.functionality,
            computer_id=gid("ManagedComputer", row.computer_id),  # type: ignore[attr-defined]
            server_id=gid("BackupServer", row.server_id),  # type: ignore[attr-defined]
            target_kind=row.target_kind,
            target_name=row.target_name,
            assigned_by_provider=row.assigned_by_provider,
            schedule=row.schedule,
            enabled=row.enabled,
            run_state=row.run_state,
            pending_command=row.pending_command,
            last_result=row.last_result,
            last_run_at=row.last_run_at,
            _row=row,
        )

    @strawberry.field(description="You may start, stop, retry, enable and disable this job.")
    def viewer_can_operate(self, info: Info) -> bool:
        cap = capabilities.backup_job(self._row.kind, self._row.assigned_by_provider)
        return viewer_allows(info, cap, Action.UPDATE)

    @strawberry.field(description="You may change this job's settings (schedule, target).")
    def viewer_can_configure(self, info: Info) -> bool:
        cap = capabilities.backup_job(self._row.kind, self._row.assigned_by_provider, settings=True)
        return viewer_allows(info, cap, Action.UPDATE)

    @strawberry.field(description="The job's latest sessions, newest first.")
    async def sessions(self, info: Info, latest: int = 10) -> list[BackupJobSessionType]:
        rows = await info.context.loaders.workloads.sessions_by_job.load(
            (self._row.id, _latest(latest))
        )
        return [BackupJobSessionType.from_row(r) for r in rows]

    @strawberry.field(description="The computer an agent job protects; null if not readable.")
    async def computer(self, info: Info) -> ManagedComputerType | None:
        computer_id = self._row.computer_id  # type: ignore[attr-defined]
        if computer_id is None or not viewer_allows(info, MANAGED_COMPUTERS, Action.READ):
            return None
        row = await info.context.loaders.workloads.computer.load(computer_id)
        return ManagedComputerType.from_row(row) if row is not None else None


@strawberry.type(name="ManagedComputer", description="A computer with a management agent.")
class ManagedComputerType(Node):
    id: strawberry.ID
    company_id: strawberry.ID
    location_id: strawberry.ID
    uid: str
    hostname: str
    os_family: OsFamilyEnum  # type: ignore[valid-type]
    os_name: str
    ip_addresses: list[str]
    agent_status: AgentStatusEnum  # type: ignore[valid-type]
    last_heartbeat_at: datetime | None
    subtenant_id: strawberry.ID | None = strawberry.field(
        description="The Subtenant account its backups go to, if any."
    )
    last_restore_point_at: datetime | None
    restore_point_count: int
    _row: strawberry.Private[ManagedComputer]

    @classmethod
    def from_row(cls, row: ManagedComputer) -> ManagedComputerType:
        return cls(
            id=strawberry.ID(to_global_id("ManagedComputer", row.id)),
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            location_id=strawberry.ID(to_global_id("Location", row.location_id)),  # type: ignore[attr-defined]
            uid=row.uid,
            hostname=row.hostname,
            os_family=row.os_family,
            os_name=row.os_name,
            ip_addresses=[str(a) for a in row.ip_addresses or []],
            agent_status=row.agent_status,
            last_heartbeat_at=row.last_heartbeat_at,
            subtenant_id=gid("Subtenant", row.subtenant_id),  # type: ignore[attr-defined]
            last_restore_point_at=row.last_restore_point_at,
            restore_point_count=row.restore_point_count,
            _row=row,
        )

    @strawberry.field(description="You may change this computer (location, settings).")
    def viewer_can_update(self, info: Info) -> bool:
        return viewer_allows(info, MANAGED_COMPUTERS, Action.UPDATE)

    @strawberry.field(description="You may remove this computer from management.")
    def viewer_can_delete(self, info: Info) -> bool:
        return viewer_allows(info, MANAGED_COMPUTERS, Action.DELETE)

    @strawberry.field(description="Its Veeam backup agent; null if none or not readable.")
    async def agent(self, info: Info) -> BackupAgentType | None:
        if not viewer_allows(info, BACKUP_AGENTS, Action.READ):
            return None
        row = await info.context.loaders.workloads.agent_by_computer.load(self._row.id)
        return BackupAgentType.from_row(row) if row is not None else None

    @strawberry.field(
        description="Its agent jobs of the kinds you may read; null if you may read none."
    )
    async def backup_jobs(self, info: Info) -> list[BackupJobType] | None:
        if not workloads.readable_job_kinds(info.context.require_principal()):
            return None
        rows = await info.context.loaders.workloads.jobs_by_computer.load(self._row.id)
        return [BackupJobType.from_row(r) for r in rows]

    @strawberry.field(description="Its latest restore points, newest first; null if not readable.")
    async def restore_points(self, info: Info, latest: int = 10) -> list[RestorePointType] | None:
        if not viewer_allows(info, PROTECTED_DATA, Action.READ):
            return None
        rows = await info.context.loaders.workloads.restore_points_by_computer.load(
            (self._row.id, _latest(latest))
        )
        return [RestorePointType.from_row(r) for r in rows]


async def _computer(p: Principal, pk: int) -> ManagedComputerType:
    return ManagedComputerType.from_row(await workloads.computer_in_scope(p, pk))


async def _agent(p: Principal, pk: int) -> BackupAgentType:
    return BackupAgentType.from_row(await workloads.agent_in_scope(p, pk))


async def _server(p: Principal, pk: int) -> BackupServerType:
    return BackupServerType.from_row(await workloads.server_in_scope(p, pk))


async def _job(p: Principal, pk: int) -> BackupJobType:
    return BackupJobType.from_row(await workloads.job_in_scope(p, pk))


async def _session(p: Principal, pk: int) -> BackupJobSessionType:
    return BackupJobSessionType.from_row(await workloads.session_in_scope(p, pk))


async def _restore_point(p: Principal, pk: int) -> RestorePointType:
    return RestorePointType.from_row(await workloads.restore_point_in_scope(p, pk))


register_node("ManagedComputer", MANAGED_COMPUTERS, _computer)
register_node("BackupAgent", BACKUP_AGENTS, _agent)
# Servers and jobs: the capability depends on the row's kind; the fetch filters by the kinds
# the principal may read (FORBIDDEN when none).
register_node("BackupServer", None, _server)
register_node("BackupJob", None, _job)
register_node("BackupJobSession", None, _session)
register_node("RestorePoint", PROTECTED_DATA, _restore_point)

NODE_TYPES = [
    ManagedComputerType,
    BackupAgentType,
    BackupServerType,
    BackupJobType,
    BackupJobSessionType,
    RestorePointType,
]
