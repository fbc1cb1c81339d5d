"""Usage against limits: a company's cloud storage quotas (backup resources), Subtenant
quotas, the provider's repositories, and hardware plan subscriptions.

Every evaluator selects, in SQL, the rows at or above the warning percentage
(`used * 100 >= limit * warning`, integers, no division) and computes the exact percentage and
level of those rows. Hardware plan usage is the figure stored on the subscription
(`cpu_used_mhz`, `memory_used_mb`, `storage_used_gb`, as reported by the cloud host) against
the plan's CPU, memory and the sum of its datastores' quotas.
"""

from __future__ import annotations

from typing import Any

from tortoise.expressions import F, RawSQL
from tortoise.functions import Sum

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
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    Subtenant,
)


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


async def _plan_usage(
    check: Check, used: str, capacity: str, what: str, unit: str
) -> list[Condition]:
    if check.empty_scope:
        return []
    rows = await check.narrow(
        HardwarePlanSubscription.filter(**{f"plan__{capacity}__gt": 0})
        .annotate(used_x100=F(used) * 100)
        .filter(used_x100__gte=F(f"plan__{capacity}") * check.thresholds["warning"]),
        "tenant_account__company_id",
    ).values(*SUBSCRIPTION_FIELDS, used, f"plan__{capacity}")
    out = []
    for r in rows:
        level, said = _usage(check, r[used], r[f"plan__{capacity}"], what, unit)
        if level is not None:
            out.append(_subscription(r, level, said))
    return out


async def plan_cpu(check: Check) -> list[Condition]:
    return await _plan_usage(check, "cpu_used_mhz", "cpu_mhz", "CPU", "MHz")


async def plan_memory(check: Check) -> list[Condition]:
    return await _plan_usage(check, "memory_used_mb", "memory_mb", "memory", "MB")


async def plan_storage(check: Check) -> list[Condition]:
    """Two statements: the plans' storage (sum of their datastores' quotas), then the
    subscriptions using some storage, compared here."""
    if check.empty_scope:
        return []
    totals = {
        r["plan_id"]: r["total"]
        for r in await HardwarePlanDatastore.all()
        .group_by("plan_id")
        .annotate(total=Sum("quota_gb"))
        .values("plan_id", "total")
        if r["total"]
    }
    if not totals:
        return []
    rows = await check.narrow(
        HardwarePlanSubscription.filter(storage_used_gb__gt=0, plan_id__in=list(totals)),
        "tenant_account__company_id",
    ).values(*SUBSCRIPTION_FIELDS, "storage_used_gb")
    out = []
    for r in rows:
        level, said = _usage(
            check, r["storage_used_gb"], int(totals[r["plan_id"]]), "storage", "GB"
        )
        if level is not None:
            out.append(_subscription(r, level, said))
    return out


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
        " of the plan's CPU (MHz, as reported on the subscription).",
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
        " of the plan's memory (MB, as reported on the subscription).",
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
        " of the storage of the plan's datastores (GB, as reported on the subscription).",
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
