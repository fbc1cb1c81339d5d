"""GraphQL types of alarms and alarm templates, and the per-request loaders behind them
(history, organization and location names: one query each per page)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from app.authz import engine
from app.authz.capabilities import ALARM_SETTINGS, ALARMS
from app.authz.matrix import Action
from app.graphql.common import Node
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, to_global_id
from app.models import Location, Organization
from app.models.alarms import (
    Alarm,
    AlarmChange,
    AlarmEvent,
    AlarmSeverity,
    AlarmStatus,
    AlarmTemplate,
    RuleKind,
)
from app.services import alarms

Info = strawberry.Info[Context, Any]

AlarmSeverityEnum = strawberry.enum(AlarmSeverity, name="AlarmSeverity")
AlarmStatusEnum = strawberry.enum(AlarmStatus, name="AlarmStatus")
AlarmChangeEnum = strawberry.enum(AlarmChange, name="AlarmChange")
AlarmRuleKindEnum = strawberry.enum(RuleKind, name="AlarmRuleKind")


def gid(type_name: str, pk: int | None) -> strawberry.ID | None:
    return None if pk is None else strawberry.ID(to_global_id(type_name, pk))


# --- loaders ---------------------------------------------------------------------------------


class AlarmLoaders:
    """Rows the alarms of one page refer to. The alarms are already in scope; their history,
    organization and location come with them."""

    def __init__(self) -> None:
        self.history: DataLoader[int, list[AlarmEvent]] = DataLoader(self._history)
        self.organization: DataLoader[int, Organization | None] = DataLoader(self._orgs)
        self.location: DataLoader[int, Location | None] = DataLoader(self._locations)

    async def _history(self, alarm_ids: Sequence[int]) -> list[list[AlarmEvent]]:
        grouped: dict[int, list[AlarmEvent]] = defaultdict(list)
        rows = (
            await AlarmEvent.filter(alarm_id__in=list(alarm_ids))
            .select_related("actor")
            .order_by("alarm_id", "id")
        )
        for row in rows:
            grouped[row.alarm_id].append(row)  # type: ignore[attr-defined]
        return [grouped.get(pk, []) for pk in alarm_ids]

    async def _orgs(self, ids: Sequence[int]) -> list[Organization | None]:
        found = {o.id: o for o in await Organization.filter(id__in=list(ids))}
        return [found.get(pk) for pk in ids]

    async def _locations(self, ids: Sequence[int]) -> list[Location | None]:
        found = {loc.id: loc for loc in await Location.filter(id__in=list(ids))}
        return [found.get(pk) for pk in ids]


_LOADERS = "_alarm_loaders"


def loaders(info: Info) -> AlarmLoaders:
    found = getattr(info.context, _LOADERS, None)
    if found is None:
        found = AlarmLoaders()
        setattr(info.context, _LOADERS, found)
    return found


def _viewer_can_update(info: Info, row: Alarm) -> bool:
    if info.context.bypass_authorization:
        return True
    return engine.can(
        info.context.require_principal(), ALARMS, Action.UPDATE, alarms.alarm_target(row)
    )


# --- alarms ------------------------------------------------------------------------------------


@strawberry.type(name="AlarmEvent", description="One change of an alarm: who, when, why.")
class AlarmEventType:
    change: AlarmChangeEnum  # type: ignore[valid-type]
    status: AlarmStatusEnum  # type: ignore[valid-type]
    severity: AlarmSeverityEnum  # type: ignore[valid-type]
    actor_name: str | None = strawberry.field(
        description="The user who acknowledged or resolved it; null for the evaluation's changes."
    )
    comment: str
    at: datetime

    @classmethod
    def from_row(cls, row: AlarmEvent) -> AlarmEventType:
        actor = row.actor
        return cls(
            change=row.change,
            status=row.status,
            severity=row.severity,
            actor_name=actor.name if actor is not None else None,
            comment=row.comment,
            at=row.at,
        )


@strawberry.type(name="Alarm", description="A triggered alarm about one object.")
class AlarmType(Node):
    _row: strawberry.Private[Alarm]
    id: strawberry.ID
    template_id: strawberry.ID
    template_name: str
    template_key: str = strawberry.field(description="The catalogue key of the template.")
    severity: AlarmSeverityEnum  # type: ignore[valid-type]
    status: AlarmStatusEnum  # type: ignore[valid-type]
    object_type: str
    object_id: str = strawberry.field(description="The object's id among objects of its type.")
    object_name: str
    location_id: strawberry.ID | None = strawberry.field(
        description="The object's location; null for company-wide objects."
    )
    message: str
    occurrences: int = strawberry.field(
        description="Distinct occurrences while open: 1 when raised, + 1 each time "
        "the condition comes back with another message or severity (a new failed session, a new "
        "usage level); not one per evaluation."
    )
    first_seen_at: datetime
    last_seen_at: datetime = strawberry.field(
        description="When an evaluation last saw the condition: exact when the alarm changed; "
        "for an unchanged open alarm refreshed every 15 to 30 minutes."
    )
    raised_at: datetime | None
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, row: Alarm) -> AlarmType:
        template = row.template
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("Alarm", row.id)),
            template_id=strawberry.ID(to_global_id("AlarmTemplate", template.id)),
            template_name=template.name,
            template_key=template.catalogue_key,
            severity=row.severity,
            status=row.status,
            object_type=row.object_type,
            object_id=str(row.object_id),
            object_name=row.object_name,
            location_id=gid("Location", row.location_id),
            message=row.message,
            occurrences=row.occurrences,
            first_seen_at=row.first_seen_at,
            last_seen_at=row.last_seen_at,
            raised_at=row.raised_at,
            resolved_at=row.resolved_at,
        )

    @strawberry.field(
        description="The organization the object belongs to (a company, a reseller or the "
        "provider): its global id."
    )
    async def organization_id(self, info: Info) -> strawberry.ID | None:
        org = await loaders(info).organization.load(self._row.organization_id)
        return None if org is None else gid(ORG_TYPE_NAMES[org.kind], org.id)

    @strawberry.field(description="The id of the company the object belongs to, if a company.")
    async def company_id(self, info: Info) -> strawberry.ID | None:
        org = await loaders(info).organization.load(self._row.organization_id)
        return (
            None if org is None or ORG_TYPE_NAMES[org.kind] != "Company" else gid("Company", org.id)
        )

    @strawberry.field
    async def organization_name(self, info: Info) -> str | None:
        org = await loaders(info).organization.load(self._row.organization_id)
        return None if org is None else org.name

    @strawberry.field
    async def location_name(self, info: Info) -> str | None:
        if self._row.location_id is None:
            return None
        loc = await loaders(info).location.load(self._row.location_id)
        return None if loc is None else loc.name

    @strawberry.field(
        description="The object's global id for `node(id:)`, when its type is one the API "
        "serves (a backup job, a computer …); null otherwise."
    )
    def object_node_id(self) -> strawberry.ID | None:
        from app.graphql.common import NODE_TYPES

        kind = self._row.object_type
        return gid(kind, self._row.object_id) if kind in NODE_TYPES else None

    @strawberry.field(description="Every status and severity change, oldest first.")
    async def history(self, info: Info) -> list[AlarmEventType]:
        rows = await loaders(info).history.load(self._row.id)
        return [AlarmEventType.from_row(r) for r in rows]

    @strawberry.field(description="True when it is active and you may acknowledge it.")
    def viewer_can_acknowledge(self, info: Info) -> bool:
        return self._row.status in alarms.ACKNOWLEDGEABLE and _viewer_can_update(info, self._row)

    @strawberry.field(description="True when it is open and you may resolve it.")
    def viewer_can_resolve(self, info: Info) -> bool:
        return self._row.status in alarms.RESOLVABLE and _viewer_can_update(info, self._row)


# --- templates ---------------------------------------------------------------------------------


def _ids(type_name: str, values: Any) -> list[strawberry.ID]:
    return [strawberry.ID(to_global_id(type_name, int(v))) for v in values or []]


@strawberry.type(
    name="AlarmTemplateAssignment",
    description="What a template watches: everything below its owner (`all`) or the listed "
    "resellers, companies and locations, minus the exclusions; `allNew`: organizations "
    "created later are watched too.",
)
class AlarmTemplateAssignmentType:
    all: bool
    all_new: bool
    reseller_ids: list[strawberry.ID]
    company_ids: list[strawberry.ID]
    location_ids: list[strawberry.ID]
    exclude_reseller_ids: list[strawberry.ID]
    exclude_company_ids: list[strawberry.ID]
    exclude_location_ids: list[strawberry.ID]

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> AlarmTemplateAssignmentType:
        return cls(
            all=bool(value.get("all", True)),
            all_new=bool(value.get("allNew", False)),
            reseller_ids=_ids("Reseller", value.get("resellers")),
            company_ids=_ids("Company", value.get("companies")),
            location_ids=_ids("Location", value.get("locations")),
            exclude_reseller_ids=_ids("Reseller", value.get("excludeResellers")),
            exclude_company_ids=_ids("Company", value.get("excludeCompanies")),
            exclude_location_ids=_ids("Location", value.get("excludeLocations")),
        )


@strawberry.type(
    name="AlarmTemplate",
    description="An alarm template as your organization configures it for its portal: a "
    "predefined one from the catalogue, or a custom clone.",
)
class AlarmTemplateType(Node):
    _row: strawberry.Private[AlarmTemplate]
    id: strawberry.ID
    key: str = strawberry.field(description="The catalogue key (a clone keeps its source's).")
    custom: bool
    name: str
    description: str
    kind: AlarmRuleKindEnum  # type: ignore[valid-type]
    enabled: bool
    severity: AlarmSeverityEnum  # type: ignore[valid-type]
    thresholds: JSON
    trigger_after: int = strawberry.field(description="Raise after this many sightings in a row.")
    suppress_after: int = strawberry.field(
        description="No new alarms once this many are unresolved (0: never)."
    )
    name_include: list[str]
    name_exclude: list[str]
    assignment: AlarmTemplateAssignmentType
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: AlarmTemplate) -> AlarmTemplateType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("AlarmTemplate", row.id)),
            key=row.catalogue_key,
            custom=row.custom,
            name=row.name,
            description=row.description,
            kind=row.kind,
            enabled=row.enabled,
            severity=row.severity,
            thresholds=row.thresholds,  # type: ignore[arg-type]
            trigger_after=row.trigger_after,
            suppress_after=row.suppress_after,
            name_include=list(row.name_include or []),
            name_exclude=list(row.name_exclude or []),
            assignment=AlarmTemplateAssignmentType.from_dict(row.assignment or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @strawberry.field(description="True when you may change, reset or clone it.")
    def viewer_can_update(self, info: Info) -> bool:
        return _viewer_settings(info, Action.UPDATE, self._row)

    @strawberry.field(description="True when it is a custom template you may delete.")
    def viewer_can_delete(self, info: Info) -> bool:
        return self._row.custom and _viewer_settings(info, Action.DELETE, self._row)


def _viewer_settings(info: Info, action: Action, row: AlarmTemplate) -> bool:
    if info.context.bypass_authorization:
        return True
    from app.services.alarm_templates import template_target

    return engine.can(
        info.context.require_principal(), ALARM_SETTINGS, action, template_target(row)
    )
