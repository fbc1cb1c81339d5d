"""Loaders of the failover session types, one set per request (hung on the request's Loaders):
a page of sessions costs one query per level (steps with their replicas' names, log pages,
log counts), whatever the page's size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

import strawberry
from strawberry.dataloader import DataLoader
from tortoise.functions import Count

from app.db import first_ids_per_parent
from app.graphql.context import Context
from app.graphql.loaders import Loaders
from app.models.cloud import VmReplica
from app.models.failover import FailoverLogEntry, FailoverStep

Info = strawberry.Info[Context, Any]
LogKey = tuple[int, int, int | None]  # (session id, page size, after id)


class SessionLoaders:
    def __init__(self) -> None:
        self.steps: DataLoader[int, list[FailoverStep]] = DataLoader(self._steps)
        self.log: DataLoader[LogKey, list[FailoverLogEntry]] = DataLoader(self._log)
        self.log_count: DataLoader[int, int] = DataLoader(self._log_count)
        self.replica_names: dict[int, str] = {}

    async def _steps(self, session_ids: Sequence[int]) -> list[list[FailoverStep]]:
        grouped: dict[int, list[FailoverStep]] = defaultdict(list)
        rows = await FailoverStep.filter(session_id__in=list(session_ids)).order_by(
            "session_id", "seq"
        )
        for step in rows:
            grouped[step.session_id].append(step)  # type: ignore[attr-defined]
        wanted = {s.replica_id for s in rows if s.replica_id} - set(self.replica_names)
        if wanted:
            names = await VmReplica.filter(id__in=list(wanted)).values_list("id", "name")
            self.replica_names.update({int(pk): str(name) for pk, name in names})
        return [grouped.get(pk, []) for pk in session_ids]

    async def _log(self, keys: Sequence[LogKey]) -> list[list[FailoverLogEntry]]:
        # First pages of the page's sessions in one windowed statement (a 1,000-VM run logs
        # thousands of lines: never load them all); later pages are asked one at a time.
        firsts = [k for k in keys if k[2] is None]
        ids: dict[int, list[int]] = {}
        if firsts:
            size = max(k[1] for k in firsts) + 1
            ids = await first_ids_per_parent(
                FailoverLogEntry, "session_id", "id", [k[0] for k in firsts], size, descending=False
            )
        wanted = [pk for found in ids.values() for pk in found]
        rows = {r.id: r for r in await FailoverLogEntry.filter(id__in=wanted)} if wanted else {}
        out = []
        for session_id, size, after in keys:
            if after is None:
                out.append([rows[pk] for pk in ids.get(session_id, [])][: size + 1])
            else:
                out.append(
                    await FailoverLogEntry.filter(session_id=session_id, id__gt=after)
                    .order_by("id")
                    .limit(size + 1)
                )
        return out

    async def _log_count(self, session_ids: Sequence[int]) -> list[int]:
        counts = dict(
            await FailoverLogEntry.filter(session_id__in=list(session_ids))
            .annotate(n=Count("id"))
            .group_by("session_id")
            .values_list("session_id", "n")
        )
        return [int(counts.get(pk, 0)) for pk in session_ids]


_LOADERS: WeakKeyDictionary[Loaders, SessionLoaders] = WeakKeyDictionary()


def loaders(info: Info) -> SessionLoaders:
    found = _LOADERS.get(info.context.loaders)
    if found is None:
        found = _LOADERS[info.context.loaders] = SessionLoaders()
    return found
