"""Ingestion of the inventory: backup servers, managed computers, their backup agents and the
heartbeats of both (the batch itself is `app.services.ingestion`'s).

A server, a computer and an agent keep the `reportedAt` of the batch that last wrote them, as
jobs, sessions and restore points do (`app.services.ingest_rows`): a batch older than that (a
retry, a queue replay delivered late) leaves the row as it is, so a renamed computer or an
upgraded agent is not turned back; a batch with the same `reportedAt` is applied (the last one
delivered wins); a newer batch that reports the same values only moves that time forward. A
row without a report time (stored before migration 0016) takes the next report, whatever its
time, and so does a computer a discovery registered, when a report claims it
(`app.services.computer_match`). A server's kind never changes. Heartbeats have their own
time: the newest one wins (last heartbeat, agent or server status), whatever the batch's.

Each list costs one SELECT by natural keys, one bulk INSERT and one `executemany` UPDATE,
whatever the number of records (computers: and one SELECT of the discovered computers that
the new ones may claim).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from app.models import BackupAgent, BackupServer, ManagedComputer
from app.models.inventory import ServerKind
from app.services import computer_match
from app.services.bulk_sql import execute_many
from app.services.ingest_records import Record

if TYPE_CHECKING:
    from app.services.ingestion import Row, Run

SERVER_FIELDS = (
    "id",
    "uid",
    "kind",
    "location_id",
    "name",
    "version",
    "status",
    "last_heartbeat_at",
    "reported_at",
)
COMPUTER_FIELDS = (
    "id",
    "uid",
    "location_id",
    "subtenant_id",
    "hostname",
    "os_family",
    "os_name",
    "ip_addresses",
    "last_restore_point_at",
    "restore_point_count",
    "last_heartbeat_at",
    "agent_status",
    "reported_at",
)
# What a report sets on an existing computer, server, agent.
COMPUTER_REPORT = ("hostname", "os_family", "os_name", "ip_addresses")
SERVER_REPORT = ("name", "version")
AGENT_FIELDS = ("platform", "edition", "version", "policy", "status")


def changed(row: Row, record: Record, fields: tuple[str, ...]) -> bool:
    """The record's value differs from the stored row's in one of the fields."""
    return any(row[f] != record[f] for f in fields)


def _writes(run: Run, row: Row, record: Record, fields: tuple[str, ...]) -> bool:
    """The batch writes the stored row: it is not older than the report that last wrote the
    row, and it changes it or comes later (then the report time moves, the values stay)."""
    return not run.stale(row) and (
        row["reported_at"] != run.batch.reported_at or changed(row, record, fields)
    )


async def _load(run: Run, model: Any, uids: set[str], fields: tuple[str, ...]) -> dict[str, Row]:
    from app.services.ingestion import load_by_uid

    return await load_by_uid(model, uids, fields, company_id=run.company_id)


async def servers(run: Run) -> None:
    refs = run.refs("uid", "servers") | run.refs("server", "jobs", "heartbeats", "veeamOne")
    run.servers = await _load(run, BackupServer, refs, SERVER_FIELDS)
    kept, new, updates = [], [], []
    for index, r in run.records("servers"):
        row = run.servers.get(r["uid"])
        if row is None:
            new.append(
                BackupServer(
                    company_id=run.company_id,
                    location_id=run.location_id,
                    uid=r["uid"],
                    kind=r["kind"],
                    name=r["name"],
                    version=r["version"],
                    reported_at=run.batch.reported_at,
                )
            )
        elif ServerKind(row["kind"]) is not r["kind"]:
            run.reject(
                "servers", index, r, f"the server is a {row['kind']} server; its kind cannot change"
            )
            continue
        elif _writes(run, row, r, SERVER_REPORT):
            updates.append([r["name"], r["version"], run.batch.reported_at, run.at, row["id"]])
        kept.append((index, r))
    run.keep("servers", kept)
    if new:
        await BackupServer.bulk_create(new)
        run.servers.update(await _load(run, BackupServer, {s.uid for s in new}, SERVER_FIELDS))
    await execute_many(
        "UPDATE backup_servers SET name = ?, version = ?, reported_at = ?, updated_at = ?"
        " WHERE id = ?",
        updates,
    )


async def computers(run: Run) -> None:
    """Known computers (by uid) are updated; a new one claims the computer a discovery found
    for it, or is inserted in the key's location."""
    refs = run.refs("uid", "computers") | run.refs(
        "computer", "agents", "jobs", "restorePoints", "heartbeats"
    )
    run.computers = await _load(run, ManagedComputer, refs, COMPUTER_FIELDS)
    claims = await computer_match.claims(
        run.company_id,
        run.location_id,
        [r for _, r in run.records("computers") if r["uid"] not in run.computers],
        (*COMPUTER_FIELDS, "discovered_by_id"),
    )
    new, updates = [], []
    for _, r in run.records("computers"):
        row = run.computers.get(r["uid"])
        # A discovered computer has no report time: its claim is always written.
        claimed = row is None and r["uid"] in claims
        if claimed:
            row = run.computers[r["uid"]] = {**claims[r["uid"]], **r}
        if row is None:
            new.append(
                ManagedComputer(
                    company_id=run.company_id,
                    location_id=run.location_id,
                    reported_at=run.batch.reported_at,
                    **r,
                )
            )
        elif claimed or _writes(run, row, r, COMPUTER_REPORT):
            updates.append(
                [
                    r["uid"],
                    r["hostname"],
                    r["os_family"].value,
                    r["os_name"],
                    json.dumps(r["ip_addresses"]),
                    run.batch.reported_at,
                    run.at,
                    row["id"],
                ]
            )
    if new:
        await ManagedComputer.bulk_create(new)
        fresh = {c.uid for c in new}
        run.computers.update(await _load(run, ManagedComputer, fresh, COMPUTER_FIELDS))
    # A claimed computer takes the reporter's uid here; the others keep theirs.
    await execute_many(
        "UPDATE managed_computers SET uid = ?, hostname = ?, os_family = ?, os_name = ?,"
        " ip_addresses = ?, reported_at = ?, updated_at = ? WHERE id = ?",
        updates,
    )


async def agents(run: Run) -> None:
    kept = []
    for index, r in run.records("agents"):
        if r["computer"] not in run.computers:
            run.reject("agents", index, r, f"unknown computer '{r['computer']}'")
        else:
            kept.append((index, r))
    run.keep("agents", kept)
    if not kept:
        return
    ids = [run.computers[r["computer"]]["id"] for _, r in kept]
    existing = {
        row["computer_id"]: row
        for row in await BackupAgent.filter(computer_id__in=ids).values(
            "id", "computer_id", *AGENT_FIELDS, "reported_at"
        )
    }
    new, updates = [], []
    for _, r in kept:
        computer_id = run.computers[r["computer"]]["id"]
        values = {f: r[f] for f in AGENT_FIELDS}
        row = existing.get(computer_id)
        if row is None:
            new.append(
                BackupAgent(computer_id=computer_id, reported_at=run.batch.reported_at, **values)
            )
        elif _writes(run, row, r, AGENT_FIELDS):
            updates.append(
                [
                    *(getattr(v, "value", v) for v in values.values()),
                    run.batch.reported_at,
                    run.at,
                    row["id"],
                ]
            )
    if new:
        await BackupAgent.bulk_create(new)
    await execute_many(
        "UPDATE backup_agents SET platform = ?, edition = ?, version = ?, policy = ?, status = ?,"
        " reported_at = ?, updated_at = ? WHERE id = ?",
        updates,
    )


async def heartbeats(run: Run) -> None:
    """The newest heartbeat per computer and server wins; an older one changes nothing."""
    latest: dict[tuple[str, str], Record] = {}
    kept = []
    for index, r in run.records("heartbeats"):
        kind = "computer" if r["computer"] else "server"
        known = run.computers if kind == "computer" else run.servers
        if r[kind] not in known:
            run.reject("heartbeats", index, r, f"unknown {kind} '{r[kind]}'")
            continue
        kept.append((index, r))
        best = latest.get((kind, r[kind]))
        if best is None or r["at"] > best["at"]:
            latest[(kind, r[kind])] = r
    run.keep("heartbeats", kept)
    updates: dict[str, list[list[Any]]] = {"computer": [], "server": []}
    for (kind, uid), r in latest.items():
        row = (run.computers if kind == "computer" else run.servers)[uid]
        if row["last_heartbeat_at"] is None or r["at"] > row["last_heartbeat_at"]:
            updates[kind].append([r["at"], r["status"].value, run.at, row["id"]])
    await execute_many(
        "UPDATE managed_computers SET last_heartbeat_at = ?, agent_status = ?, updated_at = ?"
        " WHERE id = ?",
        updates["computer"],
    )
    await execute_many(
        "UPDATE backup_servers SET last_heartbeat_at = ?, status = ?, updated_at = ? WHERE id = ?",
        updates["server"],
    )
