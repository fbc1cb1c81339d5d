"""Query fields of managed workloads: computers, agents, backup servers, backup jobs, job
sessions and restore points, each a keyset-paginated connection over a scoped queryset.

Servers and jobs are governed per kind: their fields pass when some kind of the family is
readable (`guard_any`), and the rows are narrowed in SQL to the readable kinds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from tortoise.expressions import Subquery

from app.authz import capabilities
from app.authz.capabilities import BACKUP_AGENTS, MANAGED_COMPUTERS, PROTECTED_DATA
from app.authz.matrix import Action
from app.graphql.common import principal
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard, guard_any
from app.graphql.workloads.types import (
    AgentStatusEnum,
    BackupAgentType,
    BackupJobKindEnum,
    BackupJobSessionType,
    BackupJobType,
    BackupServerType,
    ManagedComputerType,
    RestorePointType,
    ServerKindEnum,
    SessionResultEnum,
)
from app.models.backups import BackupJob, BackupJobSession, RestorePoint
from app.models.inventory import BackupAgent, BackupServer, ManagedComputer
from app.services import workloads

Info = strawberry.Info[Context, Any]

READ_JOBS = guard_any(capabilities.BACKUP_JOBS.values(), Action.READ, "backup jobs")
READ_SERVERS = guard_any(capabilities.SERVER_CAPABILITIES.values(), Action.READ, "backup servers")


@strawberry.input
class ManagedComputerFilter:
    company_id: strawberry.ID | None = None
    location_id: strawberry.ID | None = None
    agent_status: AgentStatusEnum | None = None  # type: ignore[valid-type]
    search: str | None = strawberry.field(
        default=None, description="Part of the hostname, case-insensitive."
    )


@strawberry.input
class BackupAgentFilter:
    company_id: strawberry.ID | None = None
    location_id: strawberry.ID | None = None
    status: AgentStatusEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class BackupServerFilter:
    kind: ServerKindEnum | None = None  # type: ignore[valid-type]
    company_id: strawberry.ID | None = None


@strawberry.input
class BackupJobFilter:
    company_id: strawberry.ID | None = None
    kind: BackupJobKindEnum | None = None  # type: ignore[valid-type]
    computer_id: strawberry.ID | None = None
    assigned_by_provider: bool | None = None
    last_result: SessionResultEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class BackupJobSessionFilter:
    job_id: strawberry.ID | None = None
    company_id: strawberry.ID | None = None
    computer_id: strawberry.ID | None = None
    result: SessionResultEnum | None = None  # type: ignore[valid-type]
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Sessions started at or after this time."
    )
    to: datetime | None = strawberry.field(
        default=None, description="Sessions started before this time."
    )


def _company(value: strawberry.ID, field: str) -> int:
    return pk_of(value, "Company", field)


def computer_filter(query: Any, f: ManagedComputerFilter | None) -> Any:
    if f is None:
        return query
    if f.company_id:
        query = query.filter(company_id=_company(f.company_id, "filter.companyId"))
    if f.location_id:
        query = query.filter(location_id=pk_of(f.location_id, "Location", "filter.locationId"))
    if f.agent_status is not None:
        query = query.filter(agent_status=f.agent_status)
    if f.search:
        query = query.filter(hostname__icontains=f.search.strip())
    return query


@strawberry.type
class WorkloadQuery:
    @strawberry.field(extensions=guard(MANAGED_COMPUTERS, Action.READ))
    async def managed_computers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: ManagedComputerFilter | None = None,
    ) -> Connection[ManagedComputerType] | None:
        query = ManagedComputer.filter(workloads.computer_q(principal(info)))
        return await paginate(
            computer_filter(query, filter), first, after, ManagedComputerType.from_row
        )

    @strawberry.field(extensions=guard(MANAGED_COMPUTERS, Action.READ))
    async def managed_computer(self, info: Info, id: strawberry.ID) -> ManagedComputerType | None:
        row = await workloads.computer_in_scope(principal(info), pk_of(id, "ManagedComputer"))
        return ManagedComputerType.from_row(row)

    @strawberry.field(extensions=guard(BACKUP_AGENTS, Action.READ))
    async def backup_agents(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: BackupAgentFilter | None = None,
    ) -> Connection[BackupAgentType] | None:
        computers = ManagedComputer.filter(workloads.computer_q(principal(info)))
        query = BackupAgent.all()
        if filter is not None:
            computers = computer_filter(
                computers,
                ManagedComputerFilter(company_id=filter.company_id, location_id=filter.location_id),
            )
            if filter.status is not None:
                query = query.filter(status=filter.status)
        query = query.filter(computer_id__in=Subquery(computers.values("id")))
        return await paginate(query, first, after, BackupAgentType.from_row)

    @strawberry.field(extensions=READ_SERVERS)
    async def backup_servers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: BackupServerFilter | None = None,
    ) -> Connection[BackupServerType] | None:
        query = BackupServer.filter(workloads.server_q(principal(info)))
        if filter is not None:
            if filter.kind is not None:
                query = query.filter(kind=filter.kind)
            if filter.company_id:
                query = query.filter(company_id=_company(filter.company_id, "filter.companyId"))
        return await paginate(query, first, after, BackupServerType.from_row)

    @strawberry.field(extensions=READ_SERVERS)
    async def backup_server(self, info: Info, id: strawberry.ID) -> BackupServerType | None:
        row = await workloads.server_in_scope(principal(info), pk_of(id, "BackupServer"))
        return BackupServerType.from_row(row)

    @strawberry.field(extensions=READ_JOBS)
    async def backup_jobs(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: BackupJobFilter | None = None,
    ) -> Connection[BackupJobType] | None:
        query = BackupJob.filter(workloads.job_q(principal(info)))
        if filter is not None:
            if filter.company_id:
                query = query.filter(company_id=_company(filter.company_id, "filter.companyId"))
            if filter.kind is not None:
                query = query.filter(kind=filter.kind)
            if filter.computer_id:
                query = query.filter(
                    computer_id=pk_of(filter.computer_id, "ManagedComputer", "filter.computerId")
                )
            if filter.assigned_by_provider is not None:
                query = query.filter(assigned_by_provider=filter.assigned_by_provider)
            if filter.last_result is not None:
                query = query.filter(last_result=filter.last_result)
        return await paginate(query, first, after, BackupJobType.from_row)

    @strawberry.field(extensions=READ_JOBS)
    async def backup_job(self, info: Info, id: strawberry.ID) -> BackupJobType | None:
        row = await workloads.job_in_scope(principal(info), pk_of(id, "BackupJob"))
        return BackupJobType.from_row(row)

    @strawberry.field(
        extensions=READ_JOBS,
        description="Sessions of the backup jobs you may read, newest first unless "
        "`descending: false`.",
    )
    async def backup_job_sessions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: BackupJobSessionFilter | None = None,
        descending: bool = True,
    ) -> Connection[BackupJobSessionType] | None:
        query = BackupJobSession.filter(workloads.session_q(principal(info)))
        if filter is not None:
            if filter.job_id:
                query = query.filter(job_id=pk_of(filter.job_id, "BackupJob", "filter.jobId"))
            if filter.company_id:
                query = query.filter(company_id=_company(filter.company_id, "filter.companyId"))
            if filter.computer_id:
                query = query.filter(
                    computer_id=pk_of(filter.computer_id, "ManagedComputer", "filter.computerId")
                )
            if filter.result is not None:
                query = query.filter(result=filter.result)
            if filter.from_ is not None:
                query = query.filter(started_at__gte=filter.from_)
            if filter.to is not None:
                query = query.filter(started_at__lt=filter.to)
        return await paginate(
            query, first, after, BackupJobSessionType.from_row, descending=descending
        )

    @strawberry.field(
        extensions=guard(PROTECTED_DATA, Action.READ),
        description="Restore points of one computer, newest first; NOT_FOUND outside scope.",
    )
    async def restore_points(
        self,
        info: Info,
        computer_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[RestorePointType] | None:
        p = principal(info)
        computer = await workloads.computer_in_scope(
            p, pk_of(computer_id, "ManagedComputer", "computerId")
        )
        query = RestorePoint.filter(computer_id=computer.id)
        return await paginate(query, first, after, RestorePointType.from_row, descending=True)
