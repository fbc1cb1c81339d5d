"""Usage against limits: a company's cloud storage quotas (backup resources), Subtenant
quotas, the provider's repositories, and hardware plan subscriptions.

Every evaluator selects, in SQL, the rows at or above the warning percentage
(`used * 100 >= limit * warning`, integers, no division) and computes the exact percentage and
level of those rows. Hardware plan usage is derived from the subscriptions' VM replicas in the
same statement (app.services.plan_usage: CPU and memory of the replicas powered on, disks of
all), against the plan's CPU, memory and the sum of its datastores' quotas.
"""

from __future__ import annotations

from typing import Any

from tortoise.expressions import F, RawSQL

from app.alarms.evaluators.base import (
    ABOVE,
    PERCENT,
    Check,
    Condition,
    K,
    S,
    define,
    percent,
    provider_in_scope,
)
from app.models import (
    BackupResource,
    CloudRepository,
    HardwarePlanSubscription,
    Subtenant,
)
from app.services import plan_usage


def _at_least(check: Check, table: str, used: str, limit: str) -> RawSQL:
    """1 where used * 100 >= limit * warning, the columns qualified by their table (a joined
    table may have columns of the same names). The warning level is a validated integer."""
    warning = int(check.thresholds["warning"])
    return RawSQL(
        f'CASE WHEN "{table}"."{used}" * 100 >= "{table}"."{limit}" * {warning} THEN 1 ELSE 0 END'
    )


def _usage(check: Check, used: float, total: float, what: str, unit: str) -> tuple[Any, str]:
    pct = percent(used, total)
    level = check.level_above(pct)
    threshold = check.thresholds["error" if level == S.ERROR else "warning"]
    return level, f"{what} {pct:.0f}% used ({used:g} of {total:g} {unit}; limit {threshold}%)"


async def cloud_storage(check: Check) -> list[Condition]:
    if check.empty_scope:
        return []
    rows = await check.narrow(
        BackupResource.filter(quota_gb__gt=0)
        .annotate(over=_at_least(check, "backup_resources", "used_gb", "quota_gb"))
        .filter(over=1),
        "tenant_account__company_id",
    ).values(
        "id",
        "used_gb",
        "quota_gb",
        "tenant_account__name",
        "tenant_account__company_id",
        "repository__name",
    )
    out = []
    for r in rows:
        name = f"{r['tenant_account__name']} on {r['repository__name']}"
        level, said = _usage(check, r["used_gb"], r["quota_gb"], "cloud storage", "GB")
        if level is not None:
            out.append(
                Condition(
                    "BackupResource",
                    r["id"],
                    name,
                    r["tenant_account__company_id"],
                    None,
                    None,
                    level,
                    said,
                )
            )
    return out


async def subtenant(check: Check) -> list[Condition]:
    """Subtenants with a quota of their own (None: up to the company's, watched above)."""
    if check.empty_scope:
        return []
    rows = await check.narrow(
        Subtenant.filter(quota_gb__gt=0)
        .annotate(over=_at_least(check, "subtenants", "used_gb", "quota_gb"))
        .filter(over=1),
        "resource__tenant_account__company_id",
    ).values("id", "used_gb", "quota_gb", "user__email", "resource__tenant_account__company_id")
    out = []
    for r in rows:
        level, said = _usage(check, r["used_gb"], r["quota_gb"], "Subtenant storage", "GB")
        if level is not None:
            out.append(
                Condition(
                    "Subtenant",
                    r["id"],
                    r["user__email"],
                    r["resource__tenant_account__company_id"],
                    None,
                    r["id"],
                    level,
                    said,
                )
            )
    return out


async def repository(check: Check) -> list[Condition]:
    provider = await provider_in_scope(check)
    if provider is None:
        return []
    rows = await (
        CloudRepository.filter(capacity_gb__gt=0)
        .annotate(used_x100=F("used_gb") * 100)
        .filter(used_x100__gte=F("capacity_gb") * check.thresholds["warning"])
        .values("id", "name", "used_gb", "capacity_gb")
    )
    out = []
    for r in rows:
        level, said = _usage(check, r["used_gb"], r["capacity_gb"], "repository", "GB")
        if level is not None:
            out.append(
                Condition("CloudRepository", r["id"], r["name"], provider, None, None, level, said)
            )
    return out


SUBSCRIPTION_FIELDS = (
    "id",
    "plan_id",
    "plan__name",
    "tenant_account__name",
    "tenant_account__company_id",
)


def _subscription(r: dict[str, Any], level: Any, said: str) -> Condition:
    return Condition(
        "HardwarePlanSubscription",
        r["id"],
        f"{r['tenant_account__name']} / {r['plan__name']}",
        r["tenant_account__company_id"],
        None,
        None,
        level,
        said,
    )


SUB = "hardware_plan_subscriptions"
# The plan's storage: the sum of its datastores' quotas, per subscription row.
PLAN_STORAGE = (
    'COALESCE((SELECT SUM("d"."quota_gb") FROM "hardware_plan_datastores" AS "d" '
    f'WHERE "d"."plan_id" = "{SUB}"."plan_id"), 0)'
)
PLAN_LIMIT = {
    "cpu": f'(SELECT "p"."cpu_mhz" FROM "hardware_plans" AS "p" WHERE "p"."id" = "{SUB}"."plan_id")',
    "memory": (
        f'(SELECT "p"."memory_mb" FROM "hardware_plans" AS "p" WHERE "p"."id" = "{SUB}"."plan_id")'
    ),
    "storage": PLAN_STORAGE,
}


async def _plan_usage(check: Check, measure: str, what: str, unit: str) -> list[Condition]:
    """One statement: the subscriptions in scope whose usage of `measure` (derived from their
    replicas) is at or above the warning percentage of a positive plan limit."""
    if check.empty_scope:
        return []
    used, limit = plan_usage.used_sql(measure, SUB), PLAN_LIMIT[measure]
    warning = int(check.thresholds["warning"])
    over = RawSQL(
        f"CASE WHEN {limit} > 0 AND {used} * 100 >= {limit} * {warning} THEN 1 ELSE 0 END"
    )
    rows = await check.narrow(
        HardwarePlanSubscription.annotate(
            over=over, used_now=RawSQL(used), cap=RawSQL(limit)
        ).filter(over=1),
        "tenant_account__company_id",
    ).values(*SUBSCRIPTION_FIELDS, "used_now", "cap")
    out = []
    for r in rows:
        level, said = _usage(check, int(r["used_now"]), int(r["cap"]), what, unit)
        if level is not None:
            out.append(_subscription(r, level, said))
    return out


async def plan_cpu(check: Check) -> list[Condition]:
    return await _plan_usage(check, "cpu", "CPU", "MHz")


async def plan_memory(check: Check) -> list[Condition]:
    return await _plan_usage(check, "memory", "memory", "MB")


async def plan_storage(check: Check) -> list[Condition]:
    return await _plan_usage(check, "storage", "storage", "GB")


DEFINITIONS = [
    define(
        "cloud_storage_quota",
        "Cloud storage quota usage",
        "A company's cloud backup storage (a backup resource) is used above the warning or"
        " error percentage of its quota.",
        K.THRESHOLD,
        S.WARNING,
        "usage",
        cloud_storage,
        "BackupResource",
        {"warning": 80, "error": 95},
        PERCENT,
        ABOVE,
    ),
    define(
        "subtenant_quota",
        "Subtenant quota usage",
        "A Subtenant's storage is used above the warning or error percentage of its quota"
        " (Subtenants without a quota of their own are covered by the company's).",
        K.THRESHOLD,
        S.WARNING,
        "usage",
        subtenant,
        "Subtenant",
        {"warning": 80, "error": 95},
        PERCENT,
        ABOVE,
    ),
    define(
        "cloud_repository_capacity",
        "Cloud repository capacity",
        "A provider's cloud repository is used above the warning or error percentage of its"
        " capacity.",
        K.THRESHOLD,
        S.WARNING,
        "usage",
        repository,
        "CloudRepository",
        {"warning": 80, "error": 90},
        PERCENT,
        ABOVE,
    ),
    define(
        "hardware_plan_cpu",
        "Hardware plan CPU usage",
        "A company's hardware plan subscription uses more than the warning or error percentage"
        " of the plan's CPU (MHz of its VM replicas powered on: failed over or booted by a running"
        " test).",
        K.THRESHOLD,
        S.WARNING,
        "usage",
        plan_cpu,
        "HardwarePlanSubscription",
        {"warning": 80, "error": 95},
        PERCENT,
        ABOVE,
    ),
    define(
        "hardware_plan_memory",
        "Hardware plan memory usage",
        "A company's hardware plan subscription uses more than the warning or error percentage"
        " of the plan's memory (MB of its VM replicas powered on: failed over or booted by a"
        " running test).",
        K.THRESHOLD,
        S.WARNING,
        "usage",
        plan_memory,
        "HardwarePlanSubscription",
        {"warning": 80, "error": 95},
        PERCENT,
        ABOVE,
    ),
    define(
        "hardware_plan_storage",
        "Hardware plan storage usage",
        "A company's hardware plan subscription uses more than the warning or error percentage"
        " of the storage of the plan's datastores (GB of all its VM replicas' disks).",
        K.THRESHOLD,
        S.WARNING,
        "usage",
        plan_storage,
        "HardwarePlanSubscription",
        {"warning": 80, "error": 95},
        PERCENT,
        ABOVE,
    ),
]
