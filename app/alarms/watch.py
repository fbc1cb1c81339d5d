"""Which objects a template watches: the organization tree below its owner, narrowed by the
template's assignment and its object-name masks.

A template owned by organization O watches the objects of O and of the enabled organizations
below it (a reseller's companies, all of them for the provider). Its `assignment` narrows that:

    {"all": true}  (or no assignment)   everything below O, minus the exclusions
    {"all": false, "resellers": [..], "companies": [..], "locations": [..], "allNew": bool,
     "since": "<ISO time>"}            the selected resellers (with their companies), companies
                                        and locations; with "allNew", also every organization
                                        below O created after `since` (the moment the
                                        assignment was saved; the template's creation if absent)
    "excludeResellers" / "excludeCompanies" / "excludeLocations"   always subtracted

The owner's own objects (a reseller's quota, the provider's certificates) stay watched by a
provider or reseller template whatever the selection; a company's template with a selection
watches only the selected locations. Masks (`fnmatch`, case-insensitive) apply to the object's
name: an empty include list admits every name, any exclude match rejects it.

A disabled organization (its own switch or an ancestor's) is watched by nobody: its alarms
resolve at the next evaluation that covers it, and `engine.resolve_for_organizations` resolves
them at once when it is disabled.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.alarms.catalogue import Condition
from app.models import Location, Organization, OrgKind


@dataclass
class Tree:
    """The organizations (id → parent, kind, creation, effective enabled state) and the
    companies of the locations that assignments name. Read in two statements."""

    parent: dict[int, int | None] = field(default_factory=dict)
    kind: dict[int, OrgKind] = field(default_factory=dict)
    created: dict[int, datetime] = field(default_factory=dict)
    enabled: set[int] = field(default_factory=set)
    children: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    location_company: dict[int, int] = field(default_factory=dict)

    def below(self, org_id: int) -> list[int]:
        """The organization and every enabled one under it (a disabled one cuts its branch)."""
        if org_id not in self.enabled:
            return []
        out, stack = [], [org_id]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(c for c in self.children.get(current, ()) if c in self.enabled)
        return out

    def ancestors(self, org_id: int) -> list[int]:
        out: list[int] = []
        current = self.parent.get(org_id)
        while current is not None and current not in out:
            out.append(current)
            current = self.parent.get(current)
        return out

    def watchers(self, org_ids: Iterable[int]) -> set[int]:
        """The organizations whose templates may watch these: themselves and their ancestors."""
        out: set[int] = set()
        for org in org_ids:
            out.add(org)
            out.update(self.ancestors(org))
        return out


async def load_tree(location_ids: Iterable[int] = ()) -> Tree:
    tree = Tree()
    rows = await Organization.all().values_list("id", "kind", "parent_id", "enabled", "created_at")
    own: dict[int, bool] = {}
    for org_id, kind, parent_id, enabled, created_at in rows:
        tree.parent[org_id] = parent_id
        tree.kind[org_id] = OrgKind(kind)
        tree.created[org_id] = created_at
        own[org_id] = bool(enabled)
        if parent_id is not None:
            tree.children[parent_id].append(org_id)
    for org_id in tree.parent:
        if own[org_id] and all(own.get(a, True) for a in tree.ancestors(org_id)):
            tree.enabled.add(org_id)
    wanted = sorted({int(i) for i in location_ids})
    if wanted:
        tree.location_company = dict(
            await Location.filter(id__in=wanted).values_list("id", "company_id")  # type: ignore[arg-type]
        )
    return tree


def assignment_locations(assignment: Mapping[str, Any] | None) -> set[int]:
    a = assignment or {}
    return {int(i) for k in ("locations", "excludeLocations") for i in a.get(k) or ()}


@dataclass(frozen=True)
class Watch:
    """What one template watches: every object of `orgs`, the objects of `locations[org]` only
    for organizations selected through some of their locations, minus excluded locations and
    names rejected by the masks."""

    orgs: frozenset[int]
    locations: Mapping[int, frozenset[int]]
    excluded_locations: frozenset[int]
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    def organizations(self) -> set[int]:
        return set(self.orgs) | set(self.locations)

    def admits(self, c: Condition) -> bool:
        if c.organization_id in self.orgs:
            if c.location_id is not None and c.location_id in self.excluded_locations:
                return False
        elif c.location_id is None or c.location_id not in self.locations.get(
            c.organization_id, frozenset()
        ):
            return False
        return name_matches(c.object_name, self.include, self.exclude)


def name_matches(name: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    lowered = (name or "").lower()
    masks = [m.lower() for m in include if m]
    if masks and not any(fnmatch.fnmatchcase(lowered, m) for m in masks):
        return False
    return not any(fnmatch.fnmatchcase(lowered, m.lower()) for m in exclude if m)


def _ids(a: Mapping[str, Any], key: str) -> set[int]:
    return {int(i) for i in a.get(key) or ()}


def _since(a: Mapping[str, Any], created_at: datetime) -> datetime:
    raw = a.get("since")
    if isinstance(raw, str) and raw:
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    return created_at


def watch_of(
    owner_id: int,
    assignment: Mapping[str, Any] | None,
    include: Iterable[str] | None,
    exclude: Iterable[str] | None,
    created_at: datetime,
    tree: Tree,
) -> Watch:
    a = assignment or {}
    subtree = set(tree.below(owner_id))
    excluded = _ids(a, "excludeCompanies")
    for reseller in _ids(a, "excludeResellers") & subtree:
        excluded.update(tree.below(reseller))
    excluded.discard(owner_id)
    locations: dict[int, set[int]] = defaultdict(set)
    if a.get("all", True):
        orgs = subtree - excluded
    else:
        orgs = set()
        if owner_id in subtree and tree.kind.get(owner_id) is not OrgKind.COMPANY:
            orgs.add(owner_id)
        orgs |= _ids(a, "companies") & subtree
        for reseller in _ids(a, "resellers") & subtree:
            orgs.update(tree.below(reseller))
        if a.get("allNew"):
            since = _since(a, created_at)
            orgs |= {o for o in subtree if o != owner_id and tree.created[o] > since}
        orgs -= excluded
        for location in _ids(a, "locations"):
            company = tree.location_company.get(location)
            if company is not None and company in subtree and company not in orgs | excluded:
                locations[company].add(location)
    return Watch(
        orgs=frozenset(orgs),
        locations={k: frozenset(v) for k, v in locations.items()},
        excluded_locations=frozenset(_ids(a, "excludeLocations")),
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
    )
