"""VM replicas on the cloud host: registered, listed and removed here (the failover issue will
move them through FAILOVER and FAILBACK)."""

from __future__ import annotations

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

MAX_RESTORE_POINTS = 1000


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
) -> VmReplica:
    p = actor.p
    require(p, REPLICAS, Action.CREATE)
    account = await account_in_scope(p, account_id, "input.tenantAccountId")
    require(p, REPLICAS, Action.CREATE, account_target(account, REPLICAS.kind))
    name = _text(name, "input.name")
    source_vm = _text(source_vm, "input.sourceVm")
    points = _restore_points(restore_points)
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
                replica = await VmReplica.create(
                    tenant_account=account,
                    name=name,
                    source_vm=source_vm,
                    kind=kind,
                    subscription=subscription,
                    restore_points=points,
                )
        except IntegrityError:
            raise Conflict(
                "the tenant account already has a replica with this name", field="input.name"
            ) from None
        entry.bind(replica.id, tenantAccount=account.name, name=name, sourceVm=source_vm)
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
