"""A deterministic fleet: for each company, its computers (with a Veeam agent and an agent
job each), its backup servers and their jobs, then the days of sessions, restore points,
heartbeats and Veeam ONE records, as ingestion batches.

Everything comes from `random.Random` seeded per company (`f"{seed}:{company id}"`), so the
same spec gives the same records, and a company's records do not depend on the others'.
Batches are yielded one location (and at most `batch_computers` computers) at a time, each
holding whole computers and servers (their jobs, sessions and restore points with them), so a
fleet of a million sessions streams without being held in memory.

Records use the ingestion batch format (`app.services.ingestion`): lists named `computers`,
`agents`, `servers`, `jobs`, `sessions`, `restorePoints`, `heartbeats`, `veeamOne`; each record
keyed by the reporter's `uid`. Times are aware UTC datetimes (`as_json` turns a batch into
what travels over the wire).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from app.services.ingest_records import LISTS
from app.simulator import history
from app.simulator.names import company_prefix, computer_identity, server_name

Record = dict[str, Any]

# The lists of an ingestion batch a fleet fills (acknowledgements are the console's business).
BATCH_LISTS = tuple(name for name in LISTS if name != "acks")
# A company with at least this many computers runs its own Veeam Backup & Replication server.
VBR_THRESHOLD = 20
GB = 1024**3


@dataclass(frozen=True)
class CompanySpec:
    """One company of the fleet: its ids in the database, and what to generate for it."""

    id: int
    name: str
    location_ids: tuple[int, ...]
    computers: int
    # The cloud account jobs may back up to: a tenant account of the company with a backup
    # resource on `repository`, and the e-mails of Subtenants inside it.
    tenant_account: str | None = None
    repository: str = ""
    subtenants: tuple[str, ...] = ()
    history_days: int | None = None  # None: the fleet's


@dataclass(frozen=True)
class FleetSpec:
    companies: tuple[CompanySpec, ...]
    end: datetime  # the simulated "now": sessions before it, heartbeats just before it
    seed: int = 1
    history_days: int = 90
    cadence_days: int = 1  # a job runs every this many days
    retention_points: int = 14  # restore points kept per agent job
    batch_computers: int = 250
    server_jobs: bool = True  # backup servers and their jobs for the larger companies
    veeam_one_days: int = 7


@dataclass
class FleetBatch:
    """What one reporter (a company's location) sends: the ingestion batch."""

    company_id: int
    location_id: int
    reported_at: datetime
    records: dict[str, list[Record]] = field(
        default_factory=lambda: {name: [] for name in BATCH_LISTS}
    )

    def count(self, name: str) -> int:
        return len(self.records[name])


def _wire(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    return value


def as_json(batch: FleetBatch, limit: int | None = None) -> list[dict[str, Any]]:
    """The batch as reporters send it: datetimes as ISO 8601 strings, `reportedAt`, and at
    most `limit` records per list per payload, the lists in the order their references need
    (computers and servers before their jobs, jobs before their sessions)."""
    stamp = batch.reported_at.isoformat()
    payloads: list[dict[str, Any]] = []
    for name in BATCH_LISTS:
        records = [_wire(r) for r in batch.records[name]]
        step = limit or max(len(records), 1)
        for start in range(0, len(records), step):
            payloads.append({"reportedAt": stamp, name: records[start : start + step]})
    return payloads


def generate(spec: FleetSpec) -> Iterator[FleetBatch]:
    for company in spec.companies:
        yield from _company(spec, company)


def _split(rng: random.Random, total: int, parts: int) -> list[int]:
    """Computers per location: the first (headquarters) gets the most."""
    if parts == 1:
        return [total]
    weights = [3.0] + [rng.uniform(0.5, 1.5) for _ in range(parts - 1)]
    counts = [int(total * w / sum(weights)) for w in weights]
    counts[0] += total - sum(counts)
    return counts


def _company(spec: FleetSpec, company: CompanySpec) -> Iterator[FleetBatch]:
    rng = random.Random(f"{spec.seed}:{company.id}")
    days = company.history_days or spec.history_days
    prefix = company_prefix(company.name)
    if spec.server_jobs and company.computers >= VBR_THRESHOLD:
        batch = FleetBatch(company.id, company.location_ids[0], spec.end)
        _servers(spec, rng, company, prefix, days, batch)
        yield batch
    number = 0
    counts = _split(rng, company.computers, len(company.location_ids))
    for location_id, count in zip(company.location_ids, counts, strict=True):
        batch = FleetBatch(company.id, location_id, spec.end)
        for _ in range(count):
            if batch.count("computers") >= spec.batch_computers:
                yield batch
                batch = FleetBatch(company.id, location_id, spec.end)
            number += 1
            _computer(spec, rng, company, prefix, number, days, batch)
        if batch.count("computers"):
            yield batch


def _target(rng: random.Random, company: CompanySpec, cloud_share: float) -> Record:
    """Where a job writes: the provider's cloud repository (maybe under a Subtenant's
    account), or the company's own storage."""
    if company.tenant_account is None or rng.random() >= cloud_share:
        return {"kind": "LOCAL", "name": rng.choice(["Local repository", "NAS01", "Backup01 (D:)"])}
    subtenant = ""
    if company.subtenants and rng.random() < 0.5:
        subtenant = rng.choice(company.subtenants)
    return {
        "kind": "CLOUD",
        "tenantAccount": company.tenant_account,
        "repository": company.repository,
        "subtenant": subtenant,
        "name": "Cloud repository",
    }


def _computer(
    spec: FleetSpec,
    rng: random.Random,
    company: CompanySpec,
    prefix: str,
    number: int,
    days: int,
    batch: FleetBatch,
) -> None:
    ident = computer_identity(rng, prefix, number)
    uid = f"c-{company.id}-{number:05d}"
    server = ident["edition"] == "SERVER"
    recs = batch.records
    recs["computers"].append(
        {
            "uid": uid,
            "hostname": ident["hostname"],
            "osFamily": ident["osFamily"],
            "osName": ident["osName"],
            "ipAddresses": [f"10.{company.id % 250}.{number // 250}.{number % 250 + 1}"],
        }
    )
    # A few computers stopped reporting some days ago: no sessions since, inaccessible now.
    dark_since = None
    if rng.random() < 0.02:
        dark_since = spec.end - timedelta(days=rng.uniform(2, 12))
    life = history.ComputerLife.draw(rng, spec.end, days, dark_since)
    job_uid = f"j-{uid}"
    target = _target(rng, company, cloud_share=0.4)
    recs["jobs"].append(
        {
            "uid": job_uid,
            "name": f"{ident['hostname']} - {'Server' if server else 'Workstation'} backup",
            "kind": "AGENT",
            "computer": uid,
            "target": target,
            "assignedByProvider": rng.random() < 0.2,
            "schedule": f"{rng.randint(0, 59)} {rng.choice([20, 21, 22, 23])} * * *",
            "enabled": rng.random() > 0.02,
        }
    )
    used = rng.uniform(200, 2000) * GB if server else rng.uniform(40, 400) * GB
    sessions = history.sessions_for(rng, spec, job_uid, life, used, days)
    recs["sessions"].extend(sessions)
    good = [s for s in sessions if s["result"] in ("SUCCESS", "WARNING")]
    for s in good[-spec.retention_points :]:
        recs["restorePoints"].append(
            {
                "uid": f"rp-{s['uid']}",
                "computer": uid,
                "job": job_uid,
                "createdAt": s["endedAt"],
                "sizeBytes": s["transferredBytes"],
                "targetKind": target["kind"],
            }
        )
    status = history.agent_status(life, sessions)
    recs["agents"].append(
        {
            "computer": uid,
            "platform": ident["osFamily"],
            "edition": ident["edition"],
            "version": ident["agentVersion"],
            "policy": "Servers - daily" if server else "Workstations - daily",
            "status": status,
        }
    )
    recs["heartbeats"].append({"computer": uid, "at": life.last_heartbeat, "status": status})


SERVER_JOBS: dict[str, list[tuple[str, str]]] = {
    "BACKUP_AND_REPLICATION": [
        ("VBR_BACKUP", "Daily VM backup"),
        ("VBR_BACKUP", "SQL servers"),
        ("VBR_BACKUP", "File servers"),
        ("BACKUP_COPY", "Offsite copy"),
        ("REPLICATION", "DR replicas"),
    ],
    "MICROSOFT_365": [("MICROSOFT_365", "Exchange Online"), ("MICROSOFT_365", "SharePoint")],
    "PUBLIC_CLOUDS": [("PUBLIC_CLOUD_POLICY", "EC2 daily policy")],
}


def _servers(
    spec: FleetSpec,
    rng: random.Random,
    company: CompanySpec,
    prefix: str,
    days: int,
    batch: FleetBatch,
) -> None:
    kinds = ["BACKUP_AND_REPLICATION"]
    for kind, share in (("MICROSOFT_365", 0.5), ("PUBLIC_CLOUDS", 0.3), ("VEEAM_ONE", 0.4)):
        if rng.random() < share:
            kinds.append(kind)
    recs = batch.records
    for n, kind in enumerate(kinds, 1):
        uid = f"s-{company.id}-{n}"
        name, version = server_name(rng, prefix, kind)
        life = history.ComputerLife.draw(rng, spec.end, days, None)
        recs["servers"].append({"uid": uid, "kind": kind, "name": name, "version": version})
        recs["heartbeats"].append({"server": uid, "at": life.last_heartbeat, "status": "HEALTHY"})
        if kind == "VEEAM_ONE":
            recs["veeamOne"].extend(history.veeam_one_records(rng, spec, uid, prefix))
            continue
        for m, (job_kind, label) in enumerate(SERVER_JOBS[kind], 1):
            if m > 2 and rng.random() < 0.3:
                continue
            job_uid = f"{uid}-j{m}"
            cloud = 0.9 if job_kind == "BACKUP_COPY" else 0.2
            recs["jobs"].append(
                {
                    "uid": job_uid,
                    "name": label,
                    "kind": job_kind,
                    "server": uid,
                    "target": _target(rng, company, cloud_share=cloud),
                    "assignedByProvider": job_kind == "BACKUP_COPY" and rng.random() < 0.5,
                    "schedule": f"0 {rng.choice([1, 2, 3, 19])} * * *",
                    "enabled": True,
                }
            )
            size = rng.uniform(1000, 8000) * GB
            recs["sessions"].extend(
                history.sessions_for(rng, spec, job_uid, life, size, days, warnings=True)
            )
