"""Templates as the engine reads them: `Spec` (the columns it uses, read with `.values()`),
`Item` (one template's conditions of one evaluation) and `ensure_templates` (every
organization's configurable copy of the catalogue)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.functions import Count

from app.alarms.catalogue import CATALOGUE, Condition
from app.alarms.rows import CHUNK, chunks
from app.alarms.watch import Tree, Watch, watch_of
from app.models.alarms import AlarmSeverity, AlarmTemplate


@dataclass(frozen=True)
class Spec:
    """The columns of a template the engine uses (read with `.values()`: a sweep reads every
    organization's templates)."""

    id: int
    owner_id: int
    catalogue_key: str
    enabled: bool
    severity: AlarmSeverity
    thresholds: dict[str, Any]
    trigger_after: int
    suppress_after: int
    name_include: list[str]
    name_exclude: list[str]
    assignment: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> Spec:
        get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
        values: dict[str, Any] = {name: get(name) for name in SPEC_FIELDS}
        return cls(**values)

    def model(self) -> AlarmTemplate:
        """An unsaved template carrying what evaluators read (thresholds, severity)."""
        return AlarmTemplate(
            id=self.id,
            owner_id=self.owner_id,
            catalogue_key=self.catalogue_key,
            severity=self.severity,
            thresholds=self.thresholds,
        )

    def watch(self, tree: Tree) -> Watch:
        return watch_of(
            self.owner_id,
            self.assignment,
            self.name_include,
            self.name_exclude,
            self.created_at,
            tree,
        )


SPEC_FIELDS = tuple(Spec.__dataclass_fields__)


@dataclass
class Item:
    spec: Spec
    watch: Watch
    conditions: list[Condition]


async def ensure_templates(org_ids: Iterable[int]) -> int:
    """Give every organization a configurable row of each catalogue template it lacks (bulk,
    idempotent: a concurrent creator's rows are skipped by the unique (owner, name)). Returns
    the rows created. Organizations that have them all cost one grouped count."""
    ids = sorted({int(i) for i in org_ids})
    keys = sorted(CATALOGUE)
    created = 0
    for chunk in chunks(ids):
        counts = dict(
            await AlarmTemplate.filter(
                owner_id__in=list(chunk), custom=False, catalogue_key__in=keys
            )
            .annotate(n=Count("id"))
            .group_by("owner_id")
            .values_list("owner_id", "n")
        )
        lacking = [o for o in chunk if counts.get(o, 0) < len(keys)]
        if not lacking:
            continue
        have = set(
            await AlarmTemplate.filter(owner_id__in=lacking, custom=False).values_list(
                "owner_id", "catalogue_key"
            )
        )
        rows = [
            AlarmTemplate(
                owner_id=owner,
                catalogue_key=key,
                name=d.name,
                description=d.description,
                kind=d.kind,
                severity=d.default_severity,
                thresholds=dict(d.default_thresholds),
            )
            for owner in lacking
            for key, d in CATALOGUE.items()
            if (owner, key) not in have
        ]
        await AlarmTemplate.bulk_create(rows, batch_size=CHUNK, ignore_conflicts=True)
        created += len(rows)
    return created
