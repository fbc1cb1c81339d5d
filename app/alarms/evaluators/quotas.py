"""Evaluators (placeholder until filled)."""

from __future__ import annotations

from app.alarms.evaluators.base import (
    ABOVE,
    PERCENT,
    Check,
    Condition,
    K,
    S,
    define,
)


async def cloud_storage(check: Check) -> list[Condition]:
    return []


async def subtenant(check: Check) -> list[Condition]:
    return []


async def repository(check: Check) -> list[Condition]:
    return []


async def plan_cpu(check: Check) -> list[Condition]:
    return []


async def plan_memory(check: Check) -> list[Condition]:
    return []


async def plan_storage(check: Check) -> list[Condition]:
    return []


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
