"""What a hardware plan subscription uses, derived from the VM replicas bound to it.

Storage used is the sum of the subscription's replicas' disks (`storage_gb`), whatever their
state: a replica's files sit on the plan's datastores from the first replication on. CPU and
memory used are the sums over the replicas powered on at the cloud host: failed over
(`ReplicaState.FAILOVER`, set when a failover or retry session powers the VM on, and kept
until an undo session powers it off: FAILBACK, then READY), or booted in isolation by a test
session still running (its POWER_ON step done and its cleanup POWER_OFF not yet; a test does
not change the replica's state).

Usage is derived on read, not stored: the replica states are written by the failover runs
(failover_progress.commit_step) and by whoever registers, resizes or removes a replica, so a
stored figure would have to be kept right in each of those transactions, and a missed path
would drift silently. One grouped statement gives the usage of any number of subscriptions
(the GraphQL loader asks once per page, the alarm evaluators once per sweep through
`used_sql`), using the (subscription_id, state) index of `vm_replicas`.

Storage is counted against the plan's total (the sum of its datastores' quotas): a replica does
not name the datastore holding its files (the cloud host places them), as a tenant's cloud host
shows one storage figure.

What is enforced: storage. A replica whose disks do not fit in what is left of the plan's
storage is refused when registered or resized (CONFLICT), as the cloud host refuses to place
replica files beyond the datastore quotas. CPU and memory are not refused at power-on: the
plan's CPU and memory are the limits of the tenant's resource pool on the host (Veeam: "limit
of CPU that can be used by all replicated VMs"), which share and throttle what is there rather
than refuse to boot, and in a disaster a slow domain controller is better than none. The
hardware_plan_cpu and hardware_plan_memory alarms warn at 80 % and 95 % of the plan instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tortoise.functions import Sum

from app.errors import Conflict
from app.models.cloud import (
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    ReplicaState,
    VmReplica,
)
from app.models.failover import FailoverSessionState, SessionKind, StepKind, StepState


@dataclass(frozen=True)
class PlanUsage:
    cpu_mhz: int = 0
    memory_mb: int = 0
    storage_gb: int = 0
    replicas: int = 0
    powered_on: int = 0


NONE = PlanUsage()


def powered_on_sql(replica: str) -> str:
    """An SQL condition: the replica (a table alias of `vm_replicas`) is powered on at the
    cloud host. The running test sessions are few, so their booted replicas are one
    uncorrelated subquery (constants only: enum values, no input)."""
    test_booted = (
        'SELECT "s"."replica_id" FROM "failover_sessions" AS "fs" '
        'JOIN "failover_steps" AS "s" ON "s"."session_id" = "fs"."id" '
        f'WHERE "fs"."kind" = \'{SessionKind.TEST.value}\' '
        f'AND "fs"."state" = \'{FailoverSessionState.RUNNING.value}\' '
        f'AND "s"."kind" = \'{StepKind.POWER_ON.value}\' '
        f'AND "s"."state" = \'{StepState.DONE.value}\' '
        'AND "s"."replica_id" IS NOT NULL '
        'AND NOT EXISTS (SELECT 1 FROM "failover_steps" AS "o" '
        'WHERE "o"."session_id" = "s"."session_id" AND "o"."replica_id" = "s"."replica_id" '
        f'AND "o"."kind" = \'{StepKind.POWER_OFF.value}\' '
        f'AND "o"."state" = \'{StepState.DONE.value}\')'
    )
    return (
        f'("{replica}"."state" = \'{ReplicaState.FAILOVER.value}\' '
        f'OR "{replica}"."id" IN ({test_booted}))'
    )


# The measure of each resource: (replica column, counted only while powered on).
MEASURES = {
    "cpu": ("cpu_mhz", True),
    "memory": ("memory_mb", True),
    "storage": ("storage_gb", False),
}


def _sum(column: str, only_on: bool) -> str:
    if not only_on:
        return f'COALESCE(SUM("r"."{column}"), 0)'
    return f'COALESCE(SUM(CASE WHEN {powered_on_sql("r")} THEN "r"."{column}" ELSE 0 END), 0)'


def used_sql(measure: str, subscription: str) -> str:
    """A correlated scalar subquery: what the subscription row (`subscription`: the table or
    alias of `hardware_plan_subscriptions`) uses of `measure` ("cpu", "memory", "storage")."""
    column, only_on = MEASURES[measure]
    return (
        f'(SELECT {_sum(column, only_on)} FROM "vm_replicas" AS "r" '
        f'WHERE "r"."subscription_id" = "{subscription}"."id")'
    )


async def usage_of(subscription_ids: Iterable[int]) -> dict[int, PlanUsage]:
    """The usage of these subscriptions, in one statement (ids are integers, inlined);
    subscriptions without replicas are absent (their usage is `NONE`)."""
    ids = sorted({int(pk) for pk in subscription_ids})
    if not ids:
        return {}
    on = powered_on_sql("r")
    sql = (
        'SELECT "r"."subscription_id" AS "sid", '
        f'{_sum("cpu_mhz", True)} AS "cpu", {_sum("memory_mb", True)} AS "memory", '
        f'{_sum("storage_gb", False)} AS "storage", COUNT(*) AS "replicas", '
        f'COALESCE(SUM(CASE WHEN {on} THEN 1 ELSE 0 END), 0) AS "on" '
        'FROM "vm_replicas" AS "r" '
        f'WHERE "r"."subscription_id" IN ({", ".join(str(pk) for pk in ids)}) '
        'GROUP BY "r"."subscription_id"'
    )
    rows = await VmReplica._meta.db.execute_query_dict(sql)
    return {
        int(r["sid"]): PlanUsage(
            cpu_mhz=int(r["cpu"]),
            memory_mb=int(r["memory"]),
            storage_gb=int(r["storage"]),
            replicas=int(r["replicas"]),
            powered_on=int(r["on"]),
        )
        for r in rows
    }


async def storage_left(subscription_id: int, exclude_replica_id: int | None = None) -> int:
    """Inside the caller's transaction: the subscription's storage not used by its replicas
    (other than `exclude_replica_id`), of the plan's total. The subscription row is locked
    first on PostgreSQL, so two replicas placed at once on one subscription queue here and
    cannot both take the last gigabytes."""
    row = await HardwarePlanSubscription.filter(id=subscription_id).select_for_update().first()
    if row is None:
        return 0
    total = await (
        HardwarePlanDatastore.filter(plan_id=row.plan_id)  # type: ignore[attr-defined]
        .annotate(t=Sum("quota_gb"))
        .first()
        .values_list("t", flat=True)
    )
    used = VmReplica.filter(subscription_id=subscription_id)
    if exclude_replica_id is not None:
        used = used.exclude(id=exclude_replica_id)
    taken = await used.annotate(t=Sum("storage_gb")).first().values_list("t", flat=True)
    return int(total or 0) - int(taken or 0)  # type: ignore[arg-type]


async def require_storage(
    subscription_id: int, storage_gb: int, exclude_replica_id: int | None = None
) -> None:
    """CONFLICT when a replica of `storage_gb` does not fit in the subscription's storage (the
    cloud host refuses to place replica files beyond the plan's datastore quotas)."""
    if storage_gb <= 0:
        return
    left = await storage_left(subscription_id, exclude_replica_id)
    if storage_gb > left:
        raise Conflict(
            f"the replica's {storage_gb} GB do not fit in the hardware plan's storage "
            f"({max(left, 0)} GB left)",
            field="input.storageGb",
            storageLeftGb=max(left, 0),
        )
