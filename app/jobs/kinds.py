"""Kinds of background job: what each does, step by step, and who may see it.

Importing this module registers them all (app.jobs.registry.load_kinds)."""

from __future__ import annotations

from app.jobs import (
    alarm_digest,
    alarms,
    audit_export,
    backup_report,
    billing,
    diagnostics,
    discovery,
    failover,
    file_restore,
    gateway_probes,
    licensing,
    maintenance,
    outbox,
)

# Workers refuse removing a location that still holds workloads, like the API.
from app.services import workloads as _workloads  # noqa: F401

__all__ = [
    "alarm_digest",
    "alarms",
    "audit_export",
    "backup_report",
    "billing",
    "diagnostics",
    "discovery",
    "failover",
    "file_restore",
    "gateway_probes",
    "licensing",
    "maintenance",
    "outbox",
]
