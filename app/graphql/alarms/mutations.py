"""Alarm mutations: acknowledge and resolve alarms; change, clone, reset and delete the
templates of your own organization."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.authz.capabilities import ALARM_SETTINGS, ALARMS
from app.authz.matrix import Action
from app.errors import BadInput
from app.graphql.alarms.types import AlarmSeverityEnum, AlarmTemplateType, AlarmType
from app.graphql.common import actor
from app.graphql.context import Context
from app.graphql.ids import pk_of
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models.alarms import AlarmSeverity
from app.services import alarm_templates, alarms
from app.services.alarm_templates import Assignment, TemplateChanges

Info = strawberry.Info[Context, Any]


@strawberry.input
class AlarmAcknowledgeInput:
    id: strawberry.ID
    comment: str | None = strawberry.field(default=None, description="At most 1,000 characters.")


@strawberry.input
class AlarmResolveInput:
    id: strawberry.ID
    comment: str | None = strawberry.field(default=None, description="At most 1,000 characters.")


@strawberry.input(description="Replaces the template's assignment as a whole.")
class AlarmTemplateAssignmentInput:
    all: bool = strawberry.field(
        default=True, description="Everything below the owner, minus the exclusions."
    )
    all_new: bool = strawberry.field(
        default=False,
        description="With a selection: organizations created from now on are watched too.",
    )
    reseller_ids: list[strawberry.ID] | None = None
    company_ids: list[strawberry.ID] | None = None
    location_ids: list[strawberry.ID] | None = None
    exclude_reseller_ids: list[strawberry.ID] | None = None
    exclude_company_ids: list[strawberry.ID] | None = None
    exclude_location_ids: list[strawberry.ID] | None = None


@strawberry.input(description="Only the given settings change.")
class AlarmTemplateUpdateInput:
    id: strawberry.ID
    enabled: bool | None = None
    severity: AlarmSeverityEnum | None = None  # type: ignore[valid-type]
    thresholds: JSON | None = strawberry.field(
        default=None, description='Merged over the current thresholds, e.g. {"hours": 24}.'
    )
    trigger_after: int | None = strawberry.field(default=None, description="1 to 100.")
    suppress_after: int | None = strawberry.field(default=None, description="0 (never) to 10,000.")
    name_include: list[str] | None = strawberry.field(
        default=None, description="Object-name masks (`sql*`); at most 20 of 100 characters."
    )
    name_exclude: list[str] | None = None
    assignment: AlarmTemplateAssignmentInput | None = None


@strawberry.input
class AlarmTemplateCloneInput:
    id: strawberry.ID = strawberry.field(description="The template to copy.")
    name: str
    description: str | None = None


def _pks(values: list[strawberry.ID] | None, type_name: str, field: str) -> list[int]:
    return [pk_of(v, type_name, f"input.assignment.{field}") for v in values or []]


def _assignment(a: AlarmTemplateAssignmentInput) -> Assignment:
    return Assignment(
        all=a.all,
        all_new=a.all_new,
        reseller_ids=_pks(a.reseller_ids, "Reseller", "resellerIds"),
        company_ids=_pks(a.company_ids, "Company", "companyIds"),
        location_ids=_pks(a.location_ids, "Location", "locationIds"),
        exclude_reseller_ids=_pks(a.exclude_reseller_ids, "Reseller", "excludeResellerIds"),
        exclude_company_ids=_pks(a.exclude_company_ids, "Company", "excludeCompanyIds"),
        exclude_location_ids=_pks(a.exclude_location_ids, "Location", "excludeLocationIds"),
    )


def _changes(i: AlarmTemplateUpdateInput) -> TemplateChanges:
    if i.thresholds is not None and not isinstance(i.thresholds, dict):
        raise BadInput("thresholds are an object of names and numbers", field="input.thresholds")
    return TemplateChanges(
        enabled=i.enabled,
        severity=AlarmSeverity(i.severity) if i.severity is not None else None,
        thresholds=i.thresholds,
        trigger_after=i.trigger_after,
        suppress_after=i.suppress_after,
        name_include=i.name_include,
        name_exclude=i.name_exclude,
        assignment=_assignment(i.assignment) if i.assignment is not None else None,
    )


@strawberry.type
class AlarmMutation:
    @strawberry.mutation(
        extensions=guard(ALARMS, Action.UPDATE),
        description="An ACTIVE alarm becomes ACKNOWLEDGED (CONFLICT otherwise).",
    )
    async def alarm_acknowledge(self, info: Info, input: AlarmAcknowledgeInput) -> AlarmType:
        row = await alarms.acknowledge(
            actor(info), pk_of(input.id, "Alarm", "input.id"), input.comment
        )
        return AlarmType.from_row(row)

    @strawberry.mutation(
        extensions=guard(ALARMS, Action.UPDATE),
        description="An ACTIVE or ACKNOWLEDGED alarm becomes RESOLVED (CONFLICT otherwise); "
        "it is raised again if its condition is seen again.",
    )
    async def alarm_resolve(self, info: Info, input: AlarmResolveInput) -> AlarmType:
        row = await alarms.resolve(actor(info), pk_of(input.id, "Alarm", "input.id"), input.comment)
        return AlarmType.from_row(row)

    @strawberry.mutation(
        extensions=guard(ALARM_SETTINGS, Action.UPDATE),
        description="Changes the given settings; disabling resolves the template's open alarms.",
    )
    async def alarm_template_update(
        self, info: Info, input: AlarmTemplateUpdateInput
    ) -> AlarmTemplateType:
        row = await alarm_templates.update(
            actor(info), pk_of(input.id, "AlarmTemplate", "input.id"), _changes(input)
        )
        return AlarmTemplateType.from_row(row)

    @strawberry.mutation(
        extensions=guard(ALARM_SETTINGS, Action.CREATE),
        description="A custom copy of a template with its settings, under a new name.",
    )
    async def alarm_template_clone(
        self, info: Info, input: AlarmTemplateCloneInput
    ) -> AlarmTemplateType:
        row = await alarm_templates.clone(
            actor(info),
            pk_of(input.id, "AlarmTemplate", "input.id"),
            input.name,
            input.description,
        )
        return AlarmTemplateType.from_row(row)

    @strawberry.mutation(
        extensions=guard(ALARM_SETTINGS, Action.UPDATE),
        description="A predefined template back to the catalogue's settings (CONFLICT for a "
        "custom one).",
    )
    async def alarm_template_reset(self, info: Info, id: strawberry.ID) -> AlarmTemplateType:
        row = await alarm_templates.reset(actor(info), pk_of(id, "AlarmTemplate"))
        return AlarmTemplateType.from_row(row)

    @strawberry.mutation(
        extensions=guard(ALARM_SETTINGS, Action.DELETE),
        description="Deletes a custom template with its alarms (CONFLICT for a predefined one).",
    )
    async def alarm_template_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await alarm_templates.delete(actor(info), pk_of(id, "AlarmTemplate"))
        return DeletePayload(deleted_id=id)
