"""DataLoaders for managed workloads, built per request for one principal (hung on
`Loaders.workloads`): a page of computers with their agents, jobs, the jobs' latest sessions
and the computers' latest restore points costs one query per relation, whatever the page
size. Every query carries the principal's row scope (`app.services.workloads`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from strawberry.dataloader import DataLoader

from app.authz.principal import Principal
from app.db import first_ids_per_parent
from app.models.backups import BackupJob, BackupJobSession, RestorePoint
from app.models.inventory import BackupAgent, ManagedComputer
from app.services import workloads

# (parent id, how many) → the parent's latest children.
LatestKey = tuple[int, int]


async def latest_ids(
    model: Any, parent: str, order: str, keys: Sequence[LatestKey]
) -> dict[int, list[int]]:
    """The ids of the newest `n` rows of `model` per parent id, in one statement."""
    if not keys:
        return {}
    limit = max(n for _, n in keys)
    return await first_ids_per_parent(model, parent, order, [pk for pk, _ in keys], limit)


class WorkloadLoaders:
    def __init__(self, principal: Principal | None) -> None:
        self.principal = principal
        self.computer: DataLoader[int, ManagedComputer | None] = DataLoader(self._computer)
        self.agent_by_computer: DataLoader[int, BackupAgent | None] = DataLoader(
            self._agent_by_computer
        )
        self.jobs_by_computer: DataLoader[int, list[BackupJob]] = DataLoader(self._jobs_by_computer)
        self.sessions_by_job: DataLoader[LatestKey, list[BackupJobSession]] = DataLoader(
            self._sessions_by_job
        )
        self.restore_points_by_computer: DataLoader[LatestKey, list[RestorePoint]] = DataLoader(
            self._restore_points_by_computer
        )

    def _p(self) -> Principal:
        assert self.principal is not None, "workload loaders need a principal"
        return self.principal

    async def _computer(self, ids: Sequence[int]) -> list[ManagedComputer | None]:
        rows = await ManagedComputer.filter(workloads.computer_q(self._p()), id__in=list(ids))
        found = {r.id: r for r in rows}
        return [found.get(pk) for pk in ids]

    async def _agent_by_computer(self, ids: Sequence[int]) -> list[BackupAgent | None]:
        rows = await BackupAgent.filter(workloads.agent_q(self._p()), computer_id__in=list(ids))
        found = {r.computer_id: r for r in rows}  # type: ignore[attr-defined]
        return [found.get(pk) for pk in ids]

    async def _jobs_by_computer(self, ids: Sequence[int]) -> list[list[BackupJob]]:
        grouped: dict[int, list[BackupJob]] = defaultdict(list)
        query = BackupJob.filter(workloads.job_q(self._p()), computer_id__in=list(ids))
        for job in await query.order_by("id"):
            grouped[job.computer_id].append(job)  # type: ignore[attr-defined]
        return [grouped.get(pk, []) for pk in ids]

    async def _sessions_by_job(self, keys: Sequence[LatestKey]) -> list[list[BackupJobSession]]:
        ids = await latest_ids(BackupJobSession, "job_id", "started_at", keys)
        wanted = [pk for group in ids.values() for pk in group]
        rows = await BackupJobSession.filter(workloads.session_q(self._p()), id__in=wanted)
        return _grouped(rows, "job_id", "started_at", keys)

    async def _restore_points_by_computer(
        self, keys: Sequence[LatestKey]
    ) -> list[list[RestorePoint]]:
        ids = await latest_ids(RestorePoint, "computer_id", "created_at", keys)
        wanted = [pk for group in ids.values() for pk in group]
        rows = await RestorePoint.filter(workloads.restore_point_q(self._p()), id__in=wanted)
        return _grouped(rows, "computer_id", "created_at", keys)


def _grouped(rows: list[Any], parent: str, order: str, keys: Sequence[LatestKey]) -> list[Any]:
    by_parent: dict[int, list[Any]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (getattr(r, order), r.id), reverse=True):
        by_parent[getattr(row, parent)].append(row)
    return [by_parent.get(pk, [])[:n] for pk, n in keys]
