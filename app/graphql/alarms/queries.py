"""Alarm queries: the alarms in your scope (newest first), one alarm, and the templates of
your own organization."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import ALARM_SETTINGS, ALARMS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.alarms.types import (
    AlarmSeverityEnum,
    AlarmStatusEnum,
    AlarmTemplateType,
    AlarmType,
)
from app.graphql.common import principal, register_node
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.models.alarms import Alarm, AlarmSeverity, AlarmStatus
from app.services import alarm_templates, alarms

Info = strawberry.Info[Context, Any]


@strawberry.input(description="Every given criterion must hold.")
class AlarmFilter:
    status: list[AlarmStatusEnum] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Any of these statuses (PENDING alarms are never shown)."
    )
    severity: list[AlarmSeverityEnum] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Any of these severities."
    )
    company_id: strawberry.ID | None = None
    location_id: strawberry.ID | None = None
    template_key: str | None = strawberry.field(
        default=None, description="The catalogue key of the template (clones included)."
    )
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="First seen at or after."
    )
    to: datetime | None = strawberry.field(default=None, description="First seen before.")


def filtered(p: Principal, f: AlarmFilter | None) -> Any:
    query = Alarm.filter(alarms.alarm_q(p))
    if f is None:
        return query
    if f.status:
        query = query.filter(status__in=[AlarmStatus(s) for s in f.status])
    if f.severity:
        query = query.filter(severity__in=[AlarmSeverity(s) for s in f.severity])
    if f.company_id:
        query = query.filter(organization_id=pk_of(f.company_id, "Company", "filter.companyId"))
    if f.location_id:
        query = query.filter(location_id=pk_of(f.location_id, "Location", "filter.locationId"))
    if f.template_key:
        query = query.filter(template__catalogue_key=f.template_key)
    if f.from_ is not None:
        query = query.filter(first_seen_at__gte=f.from_)
    if f.to is not None:
        query = query.filter(first_seen_at__lt=f.to)
    return query


async def _alarm(p: Principal, pk: int) -> AlarmType:
    return AlarmType.from_row(await alarms.alarm_in_scope(p, pk))


async def _template(p: Principal, pk: int) -> AlarmTemplateType:
    return AlarmTemplateType.from_row(await alarm_templates.template_in_scope(p, pk))


register_node("Alarm", ALARMS, _alarm)
register_node("AlarmTemplate", ALARM_SETTINGS, _template)


@strawberry.type
class AlarmQuery:
    @strawberry.field(
        extensions=guard(ALARMS, Action.READ),
        description="Alarms in your scope, newest first.",
    )
    async def alarms(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AlarmFilter | None = None,
    ) -> Connection[AlarmType] | None:
        query = filtered(principal(info), filter).select_related("template")
        return await paginate(query, first, after, AlarmType.from_row, descending=True)

    @strawberry.field(extensions=guard(ALARMS, Action.READ))
    async def alarm(self, info: Info, id: strawberry.ID) -> AlarmType | None:
        return await _alarm(principal(info), pk_of(id, "Alarm"))

    @strawberry.field(
        extensions=guard(ALARM_SETTINGS, Action.READ),
        description="The alarm templates of your own organization's portal: the catalogue's "
        "(created on first use) and your custom ones.",
    )
    async def alarm_templates(self, info: Info) -> list[AlarmTemplateType] | None:
        rows = await alarm_templates.list_templates(principal(info))
        return [AlarmTemplateType.from_row(r) for r in rows]

    @strawberry.field(extensions=guard(ALARM_SETTINGS, Action.READ))
    async def alarm_template(self, info: Info, id: strawberry.ID) -> AlarmTemplateType | None:
        return await _template(principal(info), pk_of(id, "AlarmTemplate"))
