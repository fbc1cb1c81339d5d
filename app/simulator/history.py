"""The days of one job: its sessions with a realistic result mix (about 90 % success, 7 %
warning, 3 % failed), a few multi-day failure streaks (some still going on, so that RPO
breaches exist), computers that went dark, data sizes and messages; and Veeam ONE records."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.simulator.fleet import FleetSpec

WARNINGS = (
    "Changed block tracking is disabled for one or more volumes",
    "Free space on the backup target is below 10 %",
    "Failed to truncate transaction logs",
    "Snapshot creation took longer than expected",
    "Some files were locked and skipped",
)
ERRORS = (
    "Error: Connection to the backup repository was lost",
    "Error: Insufficient free space on the backup target",
    "Error: Failed to create a volume snapshot (VSS_E_UNEXPECTED_PROVIDER_ERROR)",
    "Error: The network path was not found",
    "Error: Authentication failed for the cloud repository",
)
FULL_EVERY = 30  # an active full backup every this many sessions


@dataclass(frozen=True)
class ComputerLife:
    """What happens to one machine over the simulated days."""

    end: datetime
    last_heartbeat: datetime
    dark_since: datetime | None  # stopped reporting then (inaccessible now)
    failed_days: frozenset[int]  # days back from `end` on which every run failed

    @classmethod
    def draw(
        cls, rng: random.Random, end: datetime, days: int, dark_since: datetime | None
    ) -> ComputerLife:
        failed: set[int] = set()
        if rng.random() < 0.06:  # a past streak of failures, then back to normal
            length = rng.randint(2, 6)
            start = rng.randint(length + 2, max(length + 3, days - 1))
            failed.update(range(start - length + 1, start + 1))
        if rng.random() < 0.03:  # failing for the last few days: its RPO is breached now
            failed.update(range(0, rng.randint(2, 5)))
        heartbeat = dark_since or end - timedelta(seconds=rng.randint(5, 600))
        return cls(end, heartbeat.replace(microsecond=0), dark_since, frozenset(failed))


def _result(rng: random.Random, back: int, life: ComputerLife) -> str:
    if back in life.failed_days:
        return "FAILED"
    x = rng.random()
    return "SUCCESS" if x < 0.90 else "WARNING" if x < 0.97 else "FAILED"


def sessions_for(
    rng: random.Random,
    spec: FleetSpec,
    job_uid: str,
    life: ComputerLife,
    used_bytes: float,
    days: int,
    warnings: bool = True,
) -> list[dict[str, Any]]:
    """One session per run day (every `cadence_days`), oldest first, all finished before the
    simulated end (and before the machine went dark)."""
    midnight = life.end.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = rng.choice((19, 20, 21, 22, 23))
    speed = rng.uniform(80, 400) * 1024**2  # bytes per second
    change = rng.uniform(0.01, 0.06)
    # Jobs run every `cadence_days`, each on its own days, so every day has runs.
    offset = rng.randrange(spec.cadence_days) if spec.cadence_days > 1 else 0
    out: list[dict[str, Any]] = []
    for back in range(days, -1, -1):
        if (back + offset) % spec.cadence_days:
            continue
        day = midnight - timedelta(days=back)
        started = day + timedelta(
            hours=hour, minutes=rng.randint(0, 59), seconds=rng.randint(0, 59)
        )
        if life.dark_since is not None and started >= life.dark_since:
            break
        result = _result(rng, back, life)
        processed = used_bytes * (1 + (days - back) * 0.0005)
        full = len(out) % FULL_EVERY == 0
        transferred = processed * (0.5 if full else change * rng.uniform(0.6, 1.4))
        if result == "FAILED":
            share = rng.uniform(0.0, 0.5)
            processed, transferred = processed * share, transferred * share
        seconds = max(120.0, (processed if full else transferred * 4) / speed)
        ended = started + timedelta(seconds=int(seconds))
        if ended >= life.end:
            break
        messages: list[str] = []
        count = 0
        if result == "WARNING" and warnings:
            count = rng.randint(1, 2)
            messages = rng.sample(WARNINGS, count)
        elif result == "FAILED":
            messages = [rng.choice(ERRORS)]
        out.append(
            {
                "uid": f"{job_uid}-{day:%Y%m%d}",
                "job": job_uid,
                "result": result,
                "startedAt": started,
                "endedAt": ended,
                "processedBytes": int(processed),
                "transferredBytes": int(transferred),
                "warnings": count,
                "messages": messages,
            }
        )
    return out


def agent_status(life: ComputerLife, sessions: list[dict[str, Any]]) -> str:
    if life.dark_since is not None:
        return "INACCESSIBLE"
    last = sessions[-1]["result"] if sessions else "SUCCESS"
    return {"FAILED": "ERROR", "WARNING": "WARNING"}.get(last, "HEALTHY")


VEEAM_ONE_METRICS = (
    ("Datastore free space (%)", 5.0, 25.0, 100.0),
    ("Backup repository free space (%)", 5.0, 15.0, 100.0),
    ("Host CPU usage (%)", 95.0, 85.0, 0.0),
)


def veeam_one_records(
    rng: random.Random, spec: FleetSpec, server_uid: str, prefix: str
) -> list[dict[str, Any]]:
    """A reading per object and metric per day, with its severity against thresholds."""
    out: list[dict[str, Any]] = []
    midnight = spec.end.replace(hour=0, minute=0, second=0, microsecond=0)
    for back in range(spec.veeam_one_days, 0, -1):
        at = midnight - timedelta(days=back) + timedelta(hours=6)
        for n, (metric, error, warning, best) in enumerate(VEEAM_ONE_METRICS, 1):
            for obj in (f"{prefix}-esx01", f"{prefix}-esx02"):
                value = round(rng.uniform(2, 98), 1)
                bad = value <= error if best else value >= error
                poor = value <= warning if best else value >= warning
                severity = "ERROR" if bad else "WARNING" if poor else "INFO"
                out.append(
                    {
                        "uid": f"{server_uid}-{at:%Y%m%d}-{obj}-{n}",
                        "server": server_uid,
                        "objectName": obj,
                        "metric": metric,
                        "value": value,
                        "severity": severity,
                        "message": "" if severity == "INFO" else f"{metric} on {obj}: {value}",
                        "recordedAt": at,
                    }
                )
    return out
