"""Hardware plan definitions (CLOUD_INFRASTRUCTURE, every change audited): CPU, memory,
networks and datastore quotas that tenants subscribe to; a plan is not removed while
subscribed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.authz.matrix import Action
from app.errors import BadInput, Conflict
from app.models import HardwarePlan, HardwarePlanDatastore, HardwarePlanSubscription
from app.services.actor import Actor
from app.services.audit import audited
from app.services.cloud_infra import allowed, clean_name, fetch, unique


@dataclass
class PlanInput:
    name: str | None = None
    cpu_mhz: int | None = None
    memory_mb: int | None = None
    networks_with_internet: int | None = None
    networks_without_internet: int | None = None
    datastores: list[tuple[str, int]] | None = None


async def plan(actor: Actor, pk: int) -> HardwarePlan:
    return await fetch(actor, HardwarePlan, pk, "hardware plan")  # type: ignore[no-any-return]


def _positive(value: int, field: str, what: str) -> None:
    if value <= 0:
        raise BadInput(f"{what} must be positive", field=field)


def _not_negative(value: int, field: str) -> None:
    if value < 0:
        raise BadInput("cannot be negative", field=field)


def _clean_datastores(datastores: list[tuple[str, int]]) -> list[tuple[str, int]]:
    seen: set[str] = set()
    out = []
    for i, (name, quota) in enumerate(datastores):
        name = clean_name(name, f"datastores.{i}.datastore")
        if name.lower() in seen:
            raise BadInput("this datastore is listed twice", field=f"datastores.{i}.datastore")
        seen.add(name.lower())
        _positive(quota, f"datastores.{i}.quotaGb", "the quota")
        out.append((name, quota))
    return out


async def _apply_plan(row: HardwarePlan, data: PlanInput, changes: dict[str, Any]) -> None:
    if data.name is not None:
        row.name = clean_name(data.name)
        await unique(HardwarePlan, exclude_id=row.id or None, name=row.name)
        changes["name"] = row.name
    if data.cpu_mhz is not None:
        _positive(data.cpu_mhz, "cpuMhz", "the CPU")
        row.cpu_mhz = changes["cpuMhz"] = data.cpu_mhz
    if data.memory_mb is not None:
        _positive(data.memory_mb, "memoryMb", "the memory")
        row.memory_mb = changes["memoryMb"] = data.memory_mb
    if data.networks_with_internet is not None:
        _not_negative(data.networks_with_internet, "networksWithInternet")
        row.networks_with_internet = changes["networksWithInternet"] = data.networks_with_internet
    if data.networks_without_internet is not None:
        _not_negative(data.networks_without_internet, "networksWithoutInternet")
        row.networks_without_internet = data.networks_without_internet
        changes["networksWithoutInternet"] = data.networks_without_internet


async def _replace_datastores(row: HardwarePlan, datastores: list[tuple[str, int]]) -> None:
    await HardwarePlanDatastore.filter(plan_id=row.id).delete()
    await HardwarePlanDatastore.bulk_create(
        [HardwarePlanDatastore(plan_id=row.id, datastore=n, quota_gb=q) for n, q in datastores]
    )


async def create_plan(actor: Actor, data: PlanInput) -> HardwarePlan:
    allowed(actor, Action.CREATE)
    for value, field in (
        (data.name, "name"),
        (data.cpu_mhz, "cpuMhz"),
        (data.memory_mb, "memoryMb"),
    ):
        if value is None:
            raise BadInput("required", field=field)
    datastores = _clean_datastores(data.datastores or [])
    async with audited(
        actor, "hardwarePlanCreate", "HardwarePlan", organization_id=actor.p.organization_id
    ) as entry:
        row = HardwarePlan(name="", cpu_mhz=0, memory_mb=0)
        await _apply_plan(row, data, entry.details)
        await row.save()
        await _replace_datastores(row, datastores)
        entry.bind(row.id, datastores={n: q for n, q in datastores})
    return row


async def update_plan(actor: Actor, pk: int, data: PlanInput) -> HardwarePlan:
    row = await plan(actor, pk)
    allowed(actor, Action.UPDATE)
    datastores = _clean_datastores(data.datastores) if data.datastores is not None else None
    async with audited(
        actor, "hardwarePlanUpdate", "HardwarePlan", pk, actor.p.organization_id
    ) as entry:
        await _apply_plan(row, data, entry.details)
        await row.save()
        if datastores is not None:
            await _replace_datastores(row, datastores)
            entry.details["datastores"] = {n: q for n, q in datastores}
    return row


async def delete_plan(actor: Actor, pk: int) -> int:
    row = await plan(actor, pk)
    allowed(actor, Action.DELETE)
    async with audited(
        actor, "hardwarePlanDelete", "HardwarePlan", pk, actor.p.organization_id
    ) as entry:
        entry.details["name"] = row.name
        subscribed = await HardwarePlanSubscription.filter(plan_id=pk).count()
        if subscribed:
            raise Conflict(
                f"{subscribed} tenant account(s) subscribe to this plan; unsubscribe them first",
                subscriptions=subscribed,
            )
        await row.delete()
    return pk
