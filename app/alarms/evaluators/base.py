"""What evaluators share: the conditions they return, the scope they evaluate, the limits a
template sets (its thresholds merged over the catalogue's defaults) and small SQL helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tortoise.queryset import QuerySet

from app.models import (
    AlarmSeverity,
    AlarmTemplate,
    LicensedProduct,
    Organization,
    OrgKind,
    RuleKind,
)


@dataclass
class Condition:
    """One object in alarm state, as an evaluator sees it now. `organization_id` is the
    object's owner (the company, or the reseller / provider for their own objects);
    `subtenant_id` the Subtenant account whose computer, job or quota it is (the Read* cells)."""

    object_type: str
    object_id: int
    object_name: str
    organization_id: int
    location_id: int | None
    subtenant_id: int | None
    severity: AlarmSeverity
    message: str


@dataclass
class EvalScope:
    now: datetime
    organization_ids: list[int] | None = None  # None: every organization

    def allows(self, organization_id: int | None) -> bool:
        return self.organization_ids is None or organization_id in self.organization_ids


@dataclass
class Check:
    """What one evaluation of one template knows: its limits, its configured severity (used by
    templates without warning/error levels) and the scope."""

    thresholds: dict[str, Any]
    severity: AlarmSeverity
    scope: EvalScope

    @property
    def now(self) -> datetime:
        return self.scope.now

    def narrow(self, queryset: QuerySet[Any], org_field: str) -> QuerySet[Any]:
        """Keep the rows whose `org_field` is one of the scope's organizations."""
        ids = self.scope.organization_ids
        if ids is None:
            return queryset
        return queryset.filter(**{f"{org_field}__in": list(ids)})

    @property
    def empty_scope(self) -> bool:
        return self.scope.organization_ids is not None and not self.scope.organization_ids

    def level_above(self, value: float) -> AlarmSeverity | None:
        """Severity of a value that is worse when higher ({"warning": 80, "error": 95})."""
        if value >= self.thresholds["error"]:
            return AlarmSeverity.ERROR
        if value >= self.thresholds["warning"]:
            return AlarmSeverity.WARNING
        return None

    def level_below(self, value: float) -> AlarmSeverity | None:
        """Severity of a value that is worse when lower (days left: {"warning": 30, "error": 7})."""
        if value <= self.thresholds["error"]:
            return AlarmSeverity.ERROR
        if value <= self.thresholds["warning"]:
            return AlarmSeverity.WARNING
        return None


Evaluator = Callable[[Check], Awaitable[list[Condition]]]


async def provider_in_scope(check: Check) -> int | None:
    """The provider's id (owner of the provider's own objects: certificates, gateways,
    repositories) when it is in scope, else None. One statement."""
    if check.empty_scope:
        return None
    rows = await Organization.filter(kind=OrgKind.PROVIDER).limit(1).values("id")
    if not rows or not check.scope.allows(rows[0]["id"]):
        return None
    return int(rows[0]["id"])


def percent(used: float, total: float) -> float:
    return 100.0 * used / total if total else 0.0


# --- template definitions -------------------------------------------------------------------

ABOVE = "above"  # levels of a value that is worse when higher (warning ≤ error)
BELOW = "below"  # levels of a value that is worse when lower (warning ≥ error)


@dataclass(frozen=True)
class Limit:
    """The accepted range of one threshold (integers)."""

    minimum: int
    maximum: int
    unit: str = ""


@dataclass(frozen=True)
class Definition:
    key: str
    name: str
    description: str
    kind: RuleKind
    default_severity: AlarmSeverity
    default_thresholds: dict[str, Any]
    # What change makes the template worth re-evaluating (see app.alarms.catalogue).
    source: str
    evaluate: Callable[[AlarmTemplate, EvalScope], Awaitable[list[Condition]]]
    limits: dict[str, Limit] = field(default_factory=dict)
    levels: str | None = None  # ABOVE / BELOW when the thresholds hold "warning" and "error"
    object_type: str = ""


def _bind(fn: Evaluator, defaults: dict[str, Any]) -> Callable[..., Awaitable[list[Condition]]]:
    async def evaluate(template: AlarmTemplate, scope: EvalScope) -> list[Condition]:
        thresholds = {**defaults, **(template.thresholds or {})}
        return await fn(Check(thresholds, AlarmSeverity(template.severity), scope))

    evaluate.__name__ = f"evaluate_{fn.__name__}"
    return evaluate


def define(
    key: str,
    name: str,
    description: str,
    kind: RuleKind,
    severity: AlarmSeverity,
    source: str,
    fn: Evaluator,
    object_type: str,
    thresholds: dict[str, int] | None = None,
    limits: dict[str, Limit] | None = None,
    levels: str | None = None,
) -> Definition:
    defaults = dict(thresholds or {})
    return Definition(
        key=key,
        name=name,
        description=description,
        kind=kind,
        default_severity=severity,
        default_thresholds=defaults,
        source=source,
        evaluate=_bind(fn, defaults),
        limits=dict(limits or {}),
        levels=levels,
        object_type=object_type,
    )


S, K = AlarmSeverity, RuleKind
PERCENT = {"warning": Limit(1, 100, "%"), "error": Limit(1, 100, "%")}
DAYS = {"warning": Limit(0, 365, "days"), "error": Limit(0, 365, "days")}
HOURS = {"hours": Limit(1, 24 * 90, "hours")}
MINUTES = {"minutes": Limit(1, 7 * 24 * 60, "minutes")}
LOGINS = {"count": Limit(2, 10_000, "failures"), "minutes": Limit(1, 24 * 60, "minutes")}
QUOTAS = {p.value: Limit(0, 10_000_000, "units") for p in LicensedProduct}


def stamp(at: datetime | None) -> str:
    """A timestamp as messages show it (UTC, to the minute)."""
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "never"
