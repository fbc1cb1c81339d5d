"""VM replicas on the cloud host: registered, resized, listed and removed here (failover runs
move them through FAILOVER and FAILBACK). A replica carries the replicated VM's resources
(CPU MHz, memory MB, disks GB), from which its hardware plan subscription's usage is derived
(app.services.plan_usage); its disks must fit in the subscription's storage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.capabilities import REPLICAS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.db import connection_name
from app.errors import BadInput, Conflict, NotFound
from app.models.cloud import HardwarePlanSubscription, ReplicaKind, TenantAccount, VmReplica
from app.services.actor import Actor
from app.services.allocations import account_in_scope, account_target
from app.services.audit import audited
from app.services.guards import require
from app.services.plan_usage import require_storage

MAX_RESTORE_POINTS = 1000
# Bounds of one VM's resources: 768 vCPUs at 4 GHz, 24 TB of memory (vSphere 8's largest VM),
# 4 PB of disks (256 disks of 16 TB).
MAX_CPU_MHZ = 768 * 4000
MAX_MEMORY_MB = 24 * 1024 * 1024
MAX_STORAGE_GB = 4 * 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    """A replicated VM's resources; None: unchanged (resize) or 0 (register)."""

    cpu_mhz: int | None = None
    memory_mb: int | None = None
    storage_gb: int | None = None

    def checked(self) -> dict[str, int]:
        """The given sizes by column, each a whole number from 0 to its bound (BAD_USER_INPUT
        names the field otherwise)."""
        out = {}
        for column, value, bound, field in (
            ("cpu_mhz", self.cpu_mhz, MAX_CPU_MHZ, "input.cpuMhz"),
            ("memory_mb", self.memory_mb, MAX_MEMORY_MB, "input.memoryMb"),
            ("storage_gb", self.storage_gb, MAX_STORAGE_GB, "input.storageGb"),
        ):
            if value is None:
                continue
            if value < 0:
                raise BadInput("cannot be negative", field=field)
            if value > bound:
                raise BadInput(f"at most {bound}", field=field)
            out[column] = value
        return out


async def replica_in_scope(p: Principal, replica_id: int) -> VmReplica:
    row = await VmReplica.filter(scope.tenant_account_q(p, "tenant_account"), id=replica_id).first()
    if row is None:
        raise NotFound("VM replica")
    return row


def _text(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise BadInput("a value is required", field=field)
    if len(value) > 200:
        raise BadInput("longer than 200 characters", field=field)
    return value


def _restore_points(points: list[datetime]) -> list[str]:
    if len(points) > MAX_RESTORE_POINTS:
        raise BadInput(f"at most {MAX_RESTORE_POINTS} restore points", field="input.restorePoints")
    if any(p.tzinfo is None for p in points):
        raise BadInput("restore points need a time zone", field="input.restorePoints")
    return [p.astimezone(UTC).isoformat() for p in sorted(set(points))]


async def register(
    actor: Actor,
    account_id: int,
    name: str,
    source_vm: str,
    kind: ReplicaKind,
    subscription_id: int | None,
    restore_points: list[datetime],
    sizes: Sizes | None = None,
) -> VmReplica:
    p = actor.p
    require(p, REPLICAS, Action.CREATE)
    account = await account_in_scope(p, account_id, "input.tenantAccountId")
    require(p, REPLICAS, Action.CREATE, account_target(account, REPLICAS.kind))
    name = _text(name, "input.name")
    source_vm = _text(source_vm, "input.sourceVm")
    points = _restore_points(restore_points)
    size = (sizes or Sizes()).checked()
    subscription = None
    if subscription_id is not None:
        subscription = await HardwarePlanSubscription.filter(
            id=subscription_id, tenant_account_id=account.id
        ).first()
        if subscription is None:
            raise BadInput(
                "the hardware plan subscription is not one of this tenant account's",
                field="input.subscriptionId",
            )
    async with audited(
        actor,
        "vmReplicaRegister",
        "VmReplica",
        organization_id=account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        if await VmReplica.exists(tenant_account_id=account.id, name=name):
            raise Conflict(
                "the tenant account already has a replica with this name", field="input.name"
            )
        try:
            async with in_transaction(connection_name()):
                if subscription is not None:
                    await require_storage(subscription.id, size.get("storage_gb", 0))
                replica = await VmReplica.create(
                    tenant_account=account,
                    name=name,
                    source_vm=source_vm,
                    kind=kind,
                    subscription=subscription,
                    restore_points=points,
                    **size,  # type: ignore[arg-type]
                )
        except IntegrityError:
            raise Conflict(
                "the tenant account already has a replica with this name", field="input.name"
            ) from None
        entry.bind(
            replica.id, tenantAccount=account.name, name=name, sourceVm=source_vm, **_said(size)
        )
    return replica


def _said(size: dict[str, int]) -> dict[str, int]:
    names = {"cpu_mhz": "cpuMhz", "memory_mb": "memoryMb", "storage_gb": "storageGb"}
    return {names[k]: v for k, v in size.items()}


async def resize(actor: Actor, replica_id: int, sizes: Sizes) -> VmReplica:
    """New resources of the replicated VM (a replication after the VM was reconfigured). A
    larger disk must fit in the subscription's storage; CPU and memory are not refused here
    (see plan_usage: the plan's CPU and memory limit what powered-on replicas get)."""
    p = actor.p
    replica = await replica_in_scope(p, replica_id)
    account = await TenantAccount.get(id=replica.tenant_account_id)  # type: ignore[attr-defined]
    require(p, REPLICAS, Action.UPDATE, account_target(account, REPLICAS.kind))
    size = sizes.checked()
    async with audited(
        actor,
        "vmReplicaResize",
        "VmReplica",
        replica.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        async with in_transaction(connection_name()):
            subscription_id = replica.subscription_id  # type: ignore[attr-defined]
            if subscription_id is not None and "storage_gb" in size:
                await require_storage(subscription_id, size["storage_gb"], replica.id)
            if size:
                await VmReplica.filter(id=replica.id).update(**size)
        for column, value in size.items():
            setattr(replica, column, value)
        entry.details.update(tenantAccount=account.name, name=replica.name, **_said(size))
    return replica


async def delete(actor: Actor, replica_id: int) -> VmReplica:
    p = actor.p
    replica = await replica_in_scope(p, replica_id)
    account = await TenantAccount.get(id=replica.tenant_account_id)  # type: ignore[attr-defined]
    require(p, REPLICAS, Action.DELETE, account_target(account, REPLICAS.kind))
    async with audited(
        actor,
        "vmReplicaDelete",
        "VmReplica",
        replica.id,
        account.company_id,  # type: ignore[attr-defined]
    ) as entry:
        await replica.delete()
        entry.details.update(tenantAccount=account.name, name=replica.name)
    return replica
