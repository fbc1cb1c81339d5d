"""What a failover plan asks of the hypervisor hosting the replicas, as a protocol: power a
replica on from a restore point (in isolation for a test), power it off, report its health,
start the network extension appliance, map public IPs, run a script on the cloud host.

The plan logic (app/services/failover_executor.py) only ever sees `HypervisorDriver`;
`hypervisor()` returns the driver `TENANTRY_HYPERVISOR_DRIVER` names (`simulator` by default),
so a real driver is one more entry in `DRIVERS`.

Every mutating call carries an idempotency key (the failover step's): a driver does the action
at most once per key and answers a repeated call with the first call's result (or raises the
first call's failure again). A worker that died after the hypervisor acted but before the step
was written re-issues the call with the same key and never powers a VM on twice.

Errors a driver raises: `HypervisorUnavailable` (did not answer; worth a retry with the same
key), `HypervisorFailed` (a permanent refusal, with a message meant for the user).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Protocol

from app.settings import Settings, get_settings


class HypervisorUnavailable(Exception):
    """The hypervisor did not answer (down, timed out): the same call may be retried."""


class HypervisorFailed(Exception):
    """A permanent failure, explained for the user (no such VM, boot refused, script error)."""


class Health(StrEnum):
    BOOTING = "booting"
    HEALTHY = "healthy"
    FAILED = "failed"


def vm_ref(replica_id: int, name: str) -> str:
    """How a replica is named to the hypervisor: stable, unique, and ends with its name."""
    return f"replica/{replica_id}/{name}"


class HypervisorDriver(Protocol):
    async def power_on(
        self, vm_ref: str, restore_point: str | None, isolated: bool, key: str
    ) -> dict[str, Any]:
        """Start the replica from the restore point (ISO time; None: the latest), on the
        production network or isolated (a test). Returns what the hypervisor reported."""
        ...

    async def power_off(self, vm_ref: str, key: str) -> dict[str, Any]:
        """Stop the replica (a no-op when it is off)."""
        ...

    async def health(self, vm_ref: str) -> Health:
        """Booting, healthy (the guest answers), or failed (it never will)."""
        ...

    async def start_network_appliance(
        self, plan_ref: str, isolated: bool, key: str
    ) -> dict[str, Any]:
        """Start the network extension appliance that gives the replicas their networks."""
        ...

    async def map_public_ips(self, mapping: Mapping[str, str], key: str) -> dict[str, Any]:
        """Map each public address (key) to the replica (value, a vm_ref)."""
        ...

    async def run_script(self, command: str, key: str) -> dict[str, Any]:
        """Run a pre- or post-failover script on the cloud host; HypervisorFailed when it exits
        with an error."""
        ...


def _simulator(settings: Settings) -> HypervisorDriver:
    from app.integrations.simulated_hypervisor import SimulatedHypervisor

    return SimulatedHypervisor(
        boot_seconds=settings.hv_sim_boot_seconds,
        fail_rate=settings.hv_sim_fail_rate,
        seed=settings.hv_sim_seed,
        fail_pattern=settings.hv_sim_fail_pattern,
    )


DRIVERS: dict[str, Callable[[Settings], HypervisorDriver]] = {"simulator": _simulator}

_override: HypervisorDriver | None = None


def hypervisor() -> HypervisorDriver:
    """The driver in force: a test's override, or the one the settings name."""
    if _override is not None:
        return _override
    settings = get_settings()
    try:
        make = DRIVERS[settings.hypervisor_driver]
    except KeyError:
        raise RuntimeError(
            f"TENANTRY_HYPERVISOR_DRIVER={settings.hypervisor_driver!r} is not one of"
            f" {sorted(DRIVERS)}"
        ) from None
    return make(settings)


def override_hypervisor(driver: HypervisorDriver | None) -> None:
    """Tests put their own driver in place; None goes back to the settings."""
    global _override
    _override = driver
