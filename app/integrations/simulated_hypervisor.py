"""A deterministic stand-in for the hypervisor (`TENANTRY_HYPERVISOR_DRIVER=simulator`), for the
demo, tests and benchmarks. Its state lives in the database (SimulatedVm, SimulatedAction), so
it survives a killed worker and tests can count what each VM went through:

- every mutating call is done at most once per idempotency key: the action row is inserted
  (unique key) in the same transaction as its effect, and a repeated call replays the stored
  result, failures included. `SimulatedVm.power_on_count` counts the distinct power-on actions
  a VM received, so "powered on exactly once" is `power_on_count == 1`;
- a VM is healthy `boot_seconds` after its power-on;
- failure injection, the same on every run: a VM whose reference matches `fail_pattern`
  (fnmatch, e.g. "*-fail": the replica's name ends with -fail) refuses to power on; a VM whose
  hash with `seed` falls under `fail_rate` boots but never becomes healthy;
- a script whose command contains `exit 1` fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.integrations.hypervisor import Health, HypervisorFailed
from app.models.failover import SimulatedAction, SimulatedVm

Effect = Callable[[], Awaitable[dict[str, Any]]]


def now() -> datetime:
    return datetime.now(UTC)


def _replay(action: SimulatedAction) -> dict[str, Any]:
    result = dict(action.result or {})
    if "error" in result:
        raise HypervisorFailed(str(result["error"]))
    return result


class SimulatedHypervisor:
    def __init__(
        self,
        boot_seconds: float = 0.0,
        fail_rate: float = 0.0,
        seed: int = 0,
        fail_pattern: str = "",
    ) -> None:
        self.boot_seconds = boot_seconds
        self.fail_rate = fail_rate
        self.seed = seed
        self.fail_pattern = fail_pattern

    # --- failure injection -------------------------------------------------------------------

    def refuses_power_on(self, vm_ref: str) -> bool:
        return bool(self.fail_pattern) and fnmatchcase(vm_ref, self.fail_pattern)

    def never_healthy(self, vm_ref: str) -> bool:
        if self.fail_rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{vm_ref}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.fail_rate

    # --- once per key ------------------------------------------------------------------------

    async def _once(self, key: str, vm_ref: str, action: str, effect: Effect) -> dict[str, Any]:
        prior = await SimulatedAction.get_or_none(idempotency_key=key)
        if prior is not None:
            return _replay(prior)
        try:
            async with in_transaction(connection_name()):
                # The key first: a concurrent call with the same key waits on it, then fails.
                row = await SimulatedAction.create(
                    idempotency_key=key, vm_ref=vm_ref, action=action
                )
                row.result = await effect()
                await row.save(update_fields=["result"])
        except IntegrityError:
            return _replay(await SimulatedAction.get(idempotency_key=key))
        return _replay(row)

    async def _vm(self, vm_ref: str) -> SimulatedVm:
        vm = await SimulatedVm.get_or_none(vm_ref=vm_ref)
        if vm is None:
            try:
                vm = await SimulatedVm.create(vm_ref=vm_ref)
            except IntegrityError:
                vm = await SimulatedVm.get(vm_ref=vm_ref)
        return vm

    # --- the driver --------------------------------------------------------------------------

    async def power_on(
        self, vm_ref: str, restore_point: str | None, isolated: bool, key: str
    ) -> dict[str, Any]:
        await self._vm(vm_ref)

        async def effect() -> dict[str, Any]:
            if self.refuses_power_on(vm_ref):
                return {"error": f"{vm_ref} refused to power on (simulated failure)"}
            await SimulatedVm.filter(vm_ref=vm_ref).update(
                powered_on=True,
                isolated=isolated,
                boot_started_at=now(),
                power_on_count=F("power_on_count") + 1,
            )
            return {"vm": vm_ref, "restorePoint": restore_point, "isolated": isolated}

        return await self._once(key, vm_ref, "power_on", effect)

    async def power_off(self, vm_ref: str, key: str) -> dict[str, Any]:
        await self._vm(vm_ref)

        async def effect() -> dict[str, Any]:
            was_on = await SimulatedVm.filter(vm_ref=vm_ref, powered_on=True).update(
                powered_on=False, isolated=False, boot_started_at=None
            )
            return {"vm": vm_ref, "wasOn": bool(was_on)}

        return await self._once(key, vm_ref, "power_off", effect)

    async def health(self, vm_ref: str) -> Health:
        vm = await SimulatedVm.get_or_none(vm_ref=vm_ref)
        if vm is None or not vm.powered_on or vm.boot_started_at is None:
            return Health.FAILED
        if (now() - vm.boot_started_at).total_seconds() < self.boot_seconds:
            return Health.BOOTING
        return Health.FAILED if self.never_healthy(vm_ref) else Health.HEALTHY

    async def start_network_appliance(
        self, plan_ref: str, isolated: bool, key: str
    ) -> dict[str, Any]:
        async def effect() -> dict[str, Any]:
            return {"appliance": f"nea-{plan_ref}", "isolated": isolated}

        return await self._once(key, plan_ref, "network_appliance", effect)

    async def map_public_ips(self, mapping: Mapping[str, str], key: str) -> dict[str, Any]:
        async def effect() -> dict[str, Any]:
            return {"mapped": dict(mapping)}

        return await self._once(key, "", "map_public_ips", effect)

    async def run_script(self, command: str, key: str) -> dict[str, Any]:
        async def effect() -> dict[str, Any]:
            if "exit 1" in command:
                return {"error": f"the script exited with status 1: {command[:200]}"}
            return {"exitCode": 0}

        return await self._once(key, "", "script", effect)
