"""Drivers for the outside world: the management agents and backup agents Tenantry talks to.

`agents()` returns the driver chosen by `TENANTRY_AGENT_DRIVER` (`simulator` by default);
services and job handlers only ever see the `BackupAgentDriver` protocol, so a real driver is
one more entry in `DRIVERS`."""

from __future__ import annotations

from collections.abc import Callable

from app.integrations.backup_agents import BackupAgentDriver
from app.settings import Settings, get_settings


def _simulator(settings: Settings) -> BackupAgentDriver:
    from app.integrations.simulated_agents import SimulatedAgents

    return SimulatedAgents(
        restore_seconds=settings.agent_sim_restore_seconds,
        fail_pattern=settings.agent_sim_fail_pattern,
    )


DRIVERS: dict[str, Callable[[Settings], BackupAgentDriver]] = {"simulator": _simulator}

_override: BackupAgentDriver | None = None


def agents() -> BackupAgentDriver:
    """The driver in force: a test's override, or the one the settings name."""
    if _override is not None:
        return _override
    settings = get_settings()
    try:
        make = DRIVERS[settings.agent_driver]
    except KeyError:
        raise RuntimeError(
            f"TENANTRY_AGENT_DRIVER={settings.agent_driver!r} is not one of {sorted(DRIVERS)}"
        ) from None
    return make(settings)


def override_agents(driver: BackupAgentDriver | None) -> None:
    """Tests put their own driver in place; None goes back to the settings."""
    global _override
    _override = driver
