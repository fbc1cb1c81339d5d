"""The catalogue of predefined alarm templates: what each watches (its evaluator), its rule
kind, default severity and thresholds, and the source whose changes make it worth
re-evaluating. Organizations get a configured copy of each (`AlarmTemplate.catalogue_key`);
custom templates are clones and evaluate with the same key.

Thresholds are small dicts of integers. Templates with levels use {"warning": w, "error": e}
and raise their alarm at the level reached (quota %: higher is worse; days left: lower is
worse); the template's own severity applies to the others. `validate_thresholds` checks a
template's thresholds against the catalogue's limits.

Sources: "sessions" (backup job sessions ingested), "heartbeats" (agents and servers
reporting), "inventory" (other ingested state: discovery, restores, Veeam ONE), "usage" (quota
and plan usage), "tenants" (tenant accounts, gateways, certificates), "events" (domain
events: failover sessions), "billing", "logins" (failed logins), "time" (rules that change
with the clock: evaluated whole every few minutes, app.alarms.evaluation.CLOCK_MINUTES, and
with the sessions that end them).
"""

from __future__ import annotations

from typing import Any

from app.alarms.evaluators import agents, billing, quotas, security, tenants, workloads
from app.alarms.evaluators.base import (
    ABOVE,
    BELOW,
    Condition,
    Definition,
    EvalScope,
    Limit,
)
from app.errors import BadInput

__all__ = ["CATALOGUE", "Condition", "Definition", "EvalScope", "Limit", "validate_thresholds"]

_DEFINITIONS = [
    *workloads.DEFINITIONS,
    *agents.DEFINITIONS,
    *quotas.DEFINITIONS,
    *tenants.DEFINITIONS,
    *billing.DEFINITIONS,
    *security.DEFINITIONS,
]

CATALOGUE: dict[str, Definition] = {d.key: d for d in _DEFINITIONS}
assert len(CATALOGUE) == len(_DEFINITIONS), "catalogue keys must be unique"


def validate_thresholds(key: str, thresholds: dict[str, Any] | None) -> dict[str, Any]:
    """The template's thresholds merged over the catalogue's defaults, or BadInput naming the
    offending `input.thresholds.<name>`."""
    definition = CATALOGUE.get(key)
    if definition is None:
        raise BadInput(f"unknown alarm template {key!r}", field="input.catalogueKey")
    out = dict(definition.default_thresholds)
    for name, value in (thresholds or {}).items():
        where = f"input.thresholds.{name}"
        limit = definition.limits.get(name)
        if limit is None:
            known = ", ".join(sorted(definition.limits)) or "none"
            raise BadInput(f"unknown threshold {name!r} (known: {known})", field=where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInput(f"threshold {name!r} must be an integer", field=where)
        if not limit.minimum <= value <= limit.maximum:
            raise BadInput(
                f"threshold {name!r} must be between {limit.minimum} and {limit.maximum}"
                + (f" {limit.unit}" if limit.unit else ""),
                field=where,
            )
        out[name] = value
    if definition.levels == ABOVE and out["warning"] > out["error"]:
        raise BadInput(
            "the warning level must not exceed the error level", field="input.thresholds.warning"
        )
    if definition.levels == BELOW and out["warning"] < out["error"]:
        raise BadInput(
            "the warning level must be at least the error level (days left)",
            field="input.thresholds.warning",
        )
    return out
