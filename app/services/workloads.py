"""Reading managed workloads in scope: computers, agents, backup servers, backup jobs, job
sessions and restore points.

Every list starts from one of the `*_q(p)` filters here (SQL, from `app.authz.scope`), and
every single fetch is `*_in_scope(p, pk)`: an object outside the caller's scope is NOT_FOUND.
Server and job kinds are governed by per-kind capabilities: the kinds the principal may read
are a SQL filter too, and a principal who may read no kind of the family is FORBIDDEN.
"""

from __future__ import annotations

from typing import Any

from tortoise.expressions import Q, Subquery

from app.authz import capabilities, engine, scope
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import Forbidden, NotFound
from app.models.backups import BackupJob, BackupJobSession, RestorePoint
from app.models.inventory import BackupAgent, BackupServer, ManagedComputer
from app.models.operations import DiscoveryRule
from app.models.tenancy import Location
from app.services import tenancy

NOTHING = Q(id__in=[])


# --- row scope -------------------------------------------------------------------------


def computer_q(p: Principal) -> Q:
    return scope.workload_q(p)


def flat_workload_q(p: Principal) -> Q:
    """`scope.workload_q` for rows that carry company, location and subtenant as plain
    integers (sessions, rollups)."""
    return scope.workload_q(p, flat=True)


def computers_in_scope(p: Principal) -> Subquery:
    """The ids of the computers in scope, for rows that hang under a computer."""
    return Subquery(ManagedComputer.filter(computer_q(p)).values("id"))


def agent_q(p: Principal) -> Q:
    return Q(computer_id__in=computers_in_scope(p))


def readable_server_kinds(p: Principal) -> list[str]:
    return [
        kind
        for kind, cap in capabilities.SERVER_CAPABILITIES.items()
        if engine.allows(p, cap, Action.READ)
    ]


def server_q(p: Principal) -> Q:
    """Servers of a kind the principal may read, in scope. Servers back up no Subtenant's
    computers: a principal limited to their own computers has none."""
    kinds = readable_server_kinds(p)
    if not kinds:
        return NOTHING
    return scope.workload_q(p, subtenant=None) & Q(kind__in=kinds)


def readable_job_kinds(p: Principal) -> list[tuple[str, bool]]:
    """(kind, assigned by the provider) pairs whose capability lets the principal read."""
    return [
        pair for pair, cap in capabilities.BACKUP_JOBS.items() if engine.allows(p, cap, Action.READ)
    ]


def job_q(p: Principal) -> Q:
    return scope.workload_q(p, subtenant="target_subtenant_id") & scope.backup_job_q(p)


def session_kind_q(p: Principal) -> Q:
    """Sessions of the jobs `backup_job_q` lets the principal read. A session carries its
    job's functionality but not whether the provider assigned the job, so when only some
    (kind, assigned) pairs are readable the filter goes through the job (one join); when all
    are, there is no filter at all."""
    readable = readable_job_kinds(p)
    if not readable:
        return NOTHING
    if len(readable) == len(capabilities.BACKUP_JOBS):
        return Q()
    return scope.backup_job_q(p, kind="job__kind", assigned="job__assigned_by_provider")


def session_q(p: Principal) -> Q:
    return flat_workload_q(p) & session_kind_q(p)


def restore_point_q(p: Principal) -> Q:
    return Q(computer_id__in=computers_in_scope(p))


def require_some_job_kind(p: Principal) -> None:
    if not readable_job_kinds(p):
        raise Forbidden(
            f"your role ({p.role.name}) may not read backup jobs: "
            "no capability in this family allows READ"
        )


def require_some_server_kind(p: Principal) -> None:
    if not readable_server_kinds(p):
        raise Forbidden(
            f"your role ({p.role.name}) may not read backup servers: "
            "no capability in this family allows READ"
        )


# --- single objects in scope ------------------------------------------------------------


async def _one(query: Any, what: str) -> Any:
    row = await query.first()
    if row is None:
        raise NotFound(what)
    return row


async def computer_in_scope(p: Principal, pk: int) -> ManagedComputer:
    return await _one(ManagedComputer.filter(computer_q(p), id=pk), "managed computer")


async def agent_in_scope(p: Principal, pk: int) -> BackupAgent:
    return await _one(BackupAgent.filter(agent_q(p), id=pk), "backup agent")


async def server_in_scope(p: Principal, pk: int) -> BackupServer:
    require_some_server_kind(p)
    return await _one(BackupServer.filter(server_q(p), id=pk), "backup server")


async def job_in_scope(p: Principal, pk: int) -> BackupJob:
    require_some_job_kind(p)
    return await _one(BackupJob.filter(job_q(p), id=pk), "backup job")


async def session_in_scope(p: Principal, pk: int) -> BackupJobSession:
    require_some_job_kind(p)
    return await _one(BackupJobSession.filter(session_q(p), id=pk), "backup job session")


async def restore_point_in_scope(p: Principal, pk: int) -> RestorePoint:
    return await _one(RestorePoint.filter(restore_point_q(p), id=pk), "restore point")


# --- removal refusal: a location that still holds workloads -------------------------------


async def location_workloads(location: Location) -> str | None:
    """A location that still has computers, servers, jobs or discovery rules stays."""
    location_id = location.id
    counts = {
        "managed computers": await ManagedComputer.filter(location_id=location_id).count(),
        "backup servers": await BackupServer.filter(location_id=location_id).count(),
        "backup jobs": await BackupJob.filter(location_id=location_id).count(),
        "discovery rules": await DiscoveryRule.filter(location_id=location_id).count(),
    }
    held = [f"{n} {what}" for what, n in counts.items() if n]
    if not held:
        return None
    return "the location still holds " + ", ".join(held) + ": move or remove them first"


if location_workloads not in tenancy.LOCATION_IN_USE_CHECKS:
    tenancy.LOCATION_IN_USE_CHECKS.append(location_workloads)
