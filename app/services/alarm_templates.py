"""Alarm templates as an organization configures them for its own portal: the provider's staff
configure the provider's templates, a reseller's staff the reseller's, a company's
administrators the company's. Nobody configures another organization's templates: a template
of any other organization is NOT_FOUND.

The catalogue's templates are created for an organization on first use
(`alarms.templates.ensure_templates`). They can be changed, cloned into custom templates
(same catalogue key, own name), and reset to the catalogue's defaults; only custom templates
can be deleted.
A template watches what its assignment names below its owner; a user assigns only
organizations and locations inside their own scope (any other id is NOT_FOUND), so a
provider operator limited to some companies cannot point the provider's templates elsewhere.
Disabling a template resolves its open alarms in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from app.alarms.catalogue import CATALOGUE, Definition, validate_thresholds
from app.alarms.changes import Changes, publish
from app.alarms.resolution import resolve_for_template
from app.alarms.templates import ensure_templates
from app.authz import scope
from app.authz.capabilities import ALARM_SETTINGS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import connection_name
from app.errors import BadInput, Conflict, NotFound
from app.models import Location, Organization, OrgKind
from app.models.alarms import AlarmSeverity, AlarmTemplate
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.text_inputs import clean_text

MAX_MASKS = 20
MAX_MASK_LENGTH = 100
MAX_NAME = 200
MAX_DESCRIPTION = 1000
TRIGGER_AFTER = (1, 100)
SUPPRESS_AFTER = (0, 10_000)

# The assignment's lists: (key in the stored dict, input field, organization kind; None:
# locations).
_ASSIGNMENT_LISTS = (
    ("resellers", "resellerIds", OrgKind.RESELLER),
    ("companies", "companyIds", OrgKind.COMPANY),
    ("locations", "locationIds", None),
    ("excludeResellers", "excludeResellerIds", OrgKind.RESELLER),
    ("excludeCompanies", "excludeCompanyIds", OrgKind.COMPANY),
    ("excludeLocations", "excludeLocationIds", None),
)


@dataclass
class Assignment:
    all: bool = True
    all_new: bool = False
    reseller_ids: list[int] | None = None
    company_ids: list[int] | None = None
    location_ids: list[int] | None = None
    exclude_reseller_ids: list[int] | None = None
    exclude_company_ids: list[int] | None = None
    exclude_location_ids: list[int] | None = None


@dataclass
class TemplateChanges:
    """What to change; None leaves a setting as it is."""

    enabled: bool | None = None
    severity: AlarmSeverity | None = None
    thresholds: dict[str, Any] | None = None  # merged over the current thresholds
    trigger_after: int | None = None
    suppress_after: int | None = None
    name_include: list[str] | None = None
    name_exclude: list[str] | None = None
    assignment: Assignment | None = None
    name: str | None = None
    description: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def template_target(row: AlarmTemplate) -> Target:
    return Target(kind=ALARM_SETTINGS.kind, organization_id=row.owner_id)  # type: ignore[attr-defined]


async def template_in_scope(p: Principal, pk: int) -> AlarmTemplate:
    row = await AlarmTemplate.filter(id=pk, owner_id=p.organization_id).first()
    if row is None:
        raise NotFound("alarm template")
    return row


async def list_templates(p: Principal) -> list[AlarmTemplate]:
    require(p, ALARM_SETTINGS, Action.READ)
    await ensure_templates([p.organization_id])
    return await AlarmTemplate.filter(owner_id=p.organization_id).order_by("id")


def _definition(row: AlarmTemplate) -> Definition:
    definition = CATALOGUE.get(row.catalogue_key)
    if definition is None:  # a key the catalogue dropped: nothing to evaluate or reset to
        raise Conflict(f"the catalogue no longer has {row.catalogue_key!r}")
    return definition


# --- validation --------------------------------------------------------------------------------


def _within(value: int, bounds: tuple[int, int], field: str) -> int:
    low, high = bounds
    if not low <= value <= high:
        raise BadInput(f"must be between {low} and {high}", field=field)
    return value


def _masks(values: list[str], field: str) -> list[str]:
    if len(values) > MAX_MASKS:
        raise BadInput(f"at most {MAX_MASKS} masks", field=field)
    out: list[str] = []
    for value in values:
        mask = clean_text(value, field, MAX_MASK_LENGTH)
        if mask not in out:
            out.append(mask)
    return out


def _below_owner(owner: Organization, path: str = "") -> Q:
    """Organizations strictly below the owner (`path`: the relation to the organization)."""
    prefix = f"{path}__" if path else ""
    parent: dict[str, Any] = {f"{prefix}parent_id": owner.id}
    grandparent: dict[str, Any] = {f"{prefix}parent__parent_id": owner.id}
    return Q(**parent) | Q(**grandparent)


async def _check_ids(
    p: Principal, owner: Organization, ids: list[int], kind: OrgKind | None, field: str
) -> list[int]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    if kind is None:
        where = Q(company_id=owner.id) | _below_owner(owner, "company")
        query: Any = Location.filter(scope.location_q(p), where, id__in=wanted)
        what = "location"
    else:
        query = Organization.filter(scope.org_q(p), _below_owner(owner), kind=kind, id__in=wanted)
        what = kind.value.lower()
    found = set(await query.values_list("id", flat=True))
    if found != set(wanted):
        raise NotFound(f"{what} below the template's owner in your scope", field=field)
    return wanted


async def _assignment(p: Principal, owner: Organization, a: Assignment) -> dict[str, Any]:
    # "since": organizations created after this moment are the "new" ones (app.alarms.watch).
    out: dict[str, Any] = {"all": a.all, "allNew": a.all_new, "since": utcnow().isoformat()}
    values = {
        "resellers": a.reseller_ids,
        "companies": a.company_ids,
        "locations": a.location_ids,
        "excludeResellers": a.exclude_reseller_ids,
        "excludeCompanies": a.exclude_company_ids,
        "excludeLocations": a.exclude_location_ids,
    }
    for key, name, kind in _ASSIGNMENT_LISTS:
        field = f"input.assignment.{name}"
        out[key] = await _check_ids(p, owner, values[key] or [], kind, field)
    if not a.all and not (out["resellers"] or out["companies"] or out["locations"]):
        if not a.all_new:
            raise BadInput(
                "assign the template to all, to new organizations or to some of them",
                field="input.assignment",
            )
    return out


async def _apply(p: Principal, row: AlarmTemplate, c: TemplateChanges) -> dict[str, Any]:
    """Validates and applies the changes to `row` (not saved); the changed settings."""
    changed: dict[str, Any] = {}
    if c.name is not None:
        row.name = clean_text(c.name, "input.name", MAX_NAME)
        changed["name"] = row.name
    if c.description is not None:
        row.description = clean_text(
            c.description, "input.description", MAX_DESCRIPTION, required=False
        )
    if c.enabled is not None:
        row.enabled = c.enabled
        changed["enabled"] = c.enabled
    if c.severity is not None:
        row.severity = AlarmSeverity(c.severity)
        changed["severity"] = row.severity.value
    if c.thresholds is not None:
        row.thresholds = validate_thresholds(
            row.catalogue_key, {**(row.thresholds or {}), **c.thresholds}
        )
        changed["thresholds"] = row.thresholds
    if c.trigger_after is not None:
        row.trigger_after = _within(c.trigger_after, TRIGGER_AFTER, "input.triggerAfter")
        changed["triggerAfter"] = row.trigger_after
    if c.suppress_after is not None:
        row.suppress_after = _within(c.suppress_after, SUPPRESS_AFTER, "input.suppressAfter")
        changed["suppressAfter"] = row.suppress_after
    if c.name_include is not None:
        row.name_include = _masks(c.name_include, "input.nameInclude")
        changed["nameInclude"] = row.name_include
    if c.name_exclude is not None:
        row.name_exclude = _masks(c.name_exclude, "input.nameExclude")
        changed["nameExclude"] = row.name_exclude
    if c.assignment is not None:
        owner = await Organization.get(id=row.owner_id)  # type: ignore[attr-defined]
        row.assignment = await _assignment(p, owner, c.assignment)
        changed["assignment"] = row.assignment
    return changed


async def _save(row: AlarmTemplate, was_enabled: bool) -> Changes:
    """Saves the row; a template just disabled resolves its open alarms in the same
    transaction (the caller publishes the changes once it has committed)."""
    try:
        async with in_transaction(connection_name()):
            await row.save()
    except IntegrityError:
        raise Conflict(
            "your organization already has an alarm template with this name", field="input.name"
        ) from None
    if was_enabled and not row.enabled:
        return await resolve_for_template(row)
    return Changes()


# --- mutations ---------------------------------------------------------------------------------


async def _for_change(actor: Actor, pk: int, action: Action) -> AlarmTemplate:
    p = actor.p
    require(p, ALARM_SETTINGS, action)
    row = await template_in_scope(p, pk)
    require(p, ALARM_SETTINGS, action, template_target(row))
    return row


async def update(actor: Actor, pk: int, changes: TemplateChanges) -> AlarmTemplate:
    row = await _for_change(actor, pk, Action.UPDATE)
    was_enabled = row.enabled
    async with audited(
        actor,
        "alarmTemplateUpdate",
        "AlarmTemplate",
        row.id,
        row.owner_id,  # type: ignore[attr-defined]
    ) as entry:
        entry.details.update(name=row.name, key=row.catalogue_key)
        entry.details["changes"] = await _apply(actor.p, row, changes)
        resolved = await _save(row, was_enabled)
        entry.details["resolved"] = len(resolved.changed)
    await publish(resolved)
    return row


def catalogue_defaults(definition: Definition) -> dict[str, Any]:
    """A predefined template's settings as the catalogue gives them."""
    return {
        "name": definition.name,
        "description": definition.description,
        "kind": definition.kind,
        "enabled": True,
        "severity": definition.default_severity,
        "thresholds": dict(definition.default_thresholds),
        "trigger_after": 1,
        "suppress_after": 0,
        "name_include": [],
        "name_exclude": [],
        "assignment": {"all": True},
    }


async def reset(actor: Actor, pk: int) -> AlarmTemplate:
    row = await _for_change(actor, pk, Action.UPDATE)
    was_enabled = row.enabled
    async with audited(
        actor,
        "alarmTemplateReset",
        "AlarmTemplate",
        row.id,
        row.owner_id,  # type: ignore[attr-defined]
    ) as entry:
        entry.details.update(name=row.name, key=row.catalogue_key)
        if row.custom:
            raise Conflict("a custom template has no defaults: change it or delete it")
        for name, value in catalogue_defaults(_definition(row)).items():
            setattr(row, name, value)
        resolved = await _save(row, was_enabled)
    await publish(resolved)
    return row


async def clone(actor: Actor, pk: int, name: str, description: str | None = None) -> AlarmTemplate:
    p = actor.p
    require(p, ALARM_SETTINGS, Action.CREATE)
    source = await template_in_scope(p, pk)
    require(p, ALARM_SETTINGS, Action.CREATE, template_target(source))
    async with audited(
        actor,
        "alarmTemplateClone",
        "AlarmTemplate",
        organization_id=source.owner_id,  # type: ignore[attr-defined]
    ) as entry:
        row = AlarmTemplate(
            owner_id=source.owner_id,  # type: ignore[attr-defined]
            catalogue_key=source.catalogue_key,
            custom=True,
            name=source.name,
            description=source.description,
            kind=source.kind,
            enabled=source.enabled,
            severity=source.severity,
            thresholds=dict(source.thresholds or {}),
            trigger_after=source.trigger_after,
            suppress_after=source.suppress_after,
            name_include=list(source.name_include or []),
            name_exclude=list(source.name_exclude or []),
            assignment=dict(source.assignment or {}),
        )
        await _apply(p, row, TemplateChanges(name=name, description=description))
        await _save(row, was_enabled=False)
        entry.bind(row.id, source=source.id, name=row.name, key=row.catalogue_key)
    return row


async def delete(actor: Actor, pk: int) -> AlarmTemplate:
    row = await _for_change(actor, pk, Action.DELETE)
    async with audited(
        actor,
        "alarmTemplateDelete",
        "AlarmTemplate",
        row.id,
        row.owner_id,  # type: ignore[attr-defined]
    ) as entry:
        entry.details.update(name=row.name, key=row.catalogue_key)
        if not row.custom:
            raise Conflict("predefined templates cannot be deleted: disable or reset it")
        # Its open alarms are resolved first (and told so), then go with it, history and all.
        resolved = await resolve_for_template(row)
        entry.details["resolved"] = len(resolved.changed)
        await row.delete()
    return row
