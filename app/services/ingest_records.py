"""Strict validation of one ingestion batch, record by record, before any SQL.

`parse_batch(payload)` checks the batch's shape (a JSON object, known lists, at most
`MAX_RECORDS` records each, `reportedAt`) and raises BAD_USER_INPUT when the shape is wrong:
nothing of such a batch is written. Each record is then checked on its own; a bad one becomes
a rejection `{list, index, uid, reason}` and the others are kept. Checks that need the
database (does the referenced computer or job exist?) are `app.services.ingestion`'s.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.errors import BadInput
from app.models.backups import BackupJobKind, PendingCommand, SessionResult, TargetKind
from app.models.inventory import AgentEdition, AgentPlatform, AgentStatus, OsFamily, ServerKind
from app.models.licensing import Severity

MAX_RECORDS = 1_000
MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 1_000
MAX_ADDRESSES = 32
MAX_BYTES = 2**63 - 1
MAX_WARNINGS = 2**31 - 1
LISTS = (
    "computers",
    "agents",
    "servers",
    "jobs",
    "sessions",
    "restorePoints",
    "heartbeats",
    "veeamOne",
    "acks",
)


class RecordError(ValueError):
    """One record is refused; the message is the reason the reporter gets."""


Record = dict[str, Any]


@dataclass
class Rejection:
    list: str
    index: int
    uid: str | None
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"list": self.list, "index": self.index, "uid": self.uid, "reason": self.reason}


@dataclass
class Batch:
    reported_at: datetime
    # list name → [(index in the list as sent, the record cleaned: snake_case, typed)]
    records: dict[str, list[tuple[int, Record]]] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)

    def reject(self, name: str, index: int, record: Record, reason: str) -> None:
        self.rejected.append(Rejection(name, index, _uid_of(record), reason))


def _uid_of(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    value = record.get("uid", record.get("job", record.get("computer", record.get("server"))))
    return value if isinstance(value, str) else None


# --- field readers -------------------------------------------------------------------------


class _Reader:
    """Reads the fields of one record; every field it does not read is an unknown one."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise RecordError("a record is a JSON object")
        self.raw = raw
        self.seen: set[str] = set()

    def _get(self, key: str, required: bool) -> Any:
        self.seen.add(key)
        value = self.raw.get(key)
        if value is None and required:
            raise RecordError(f"'{key}' is required")
        return value

    def text(self, key: str, max_len: int, *, required: bool = False, default: str = "") -> str:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise RecordError(f"'{key}' must be a string")
        value = value.strip()
        if required and not value:
            raise RecordError(f"'{key}' must not be empty")
        if len(value) > max_len:
            raise RecordError(f"'{key}' is longer than {max_len} characters")
        return value

    def ref(self, key: str, *, required: bool = True) -> str | None:
        """A reporter's uid (of this record or of one it refers to)."""
        value = self.text(key, 100, required=required)
        return value or None

    def choice(self, key: str, enum: Any, *, default: Any = None) -> Any:
        value = self._get(key, default is None)
        if value is None:
            return default
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(m.value for m in enum)
            raise RecordError(f"'{key}' must be one of {allowed}") from None

    def time(self, key: str, *, required: bool = True) -> datetime | None:
        return parse_time(self._get(key, required), key)

    def integer(self, key: str, maximum: int, *, default: int = 0) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"'{key}' must be an integer")
        if not 0 <= value <= maximum:
            raise RecordError(f"'{key}' must be between 0 and {maximum}")
        return value

    def number(self, key: str) -> float | None:
        value = self._get(key, False)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise RecordError(f"'{key}' must be a finite number")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise RecordError(f"'{key}' must be true or false")
        return value

    def strings(self, key: str, max_items: int, max_len: int) -> list[str]:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RecordError(f"'{key}' must be a list of strings")
        if len(value) > max_items:
            raise RecordError(f"'{key}' holds more than {max_items} items")
        if any(len(v) > max_len for v in value):
            raise RecordError(f"an item of '{key}' is longer than {max_len} characters")
        return list(value)

    def nested(self, key: str) -> _Reader | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise RecordError(f"'{key}' must be an object")
        return _Reader(value)

    def done(self, prefix: str = "") -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise RecordError(f"unknown field '{prefix}{unknown[0]}'")


def parse_time(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"'{key}' must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"'{key}' is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise RecordError(f"'{key}' needs a time zone (e.g. 'Z')")
    return parsed.astimezone(UTC)


# --- one parser per list ---------------------------------------------------------------------


def _computer(r: _Reader) -> Record:
    addresses = r.strings("ipAddresses", MAX_ADDRESSES, 45)
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise RecordError(f"'{address}' is not an IP address") from None
    return {
        "uid": r.ref("uid"),
        "hostname": r.text("hostname", 255, required=True),
        "os_family": r.choice("osFamily", OsFamily, default=OsFamily.OTHER),
        "os_name": r.text("osName", 200),
        "ip_addresses": addresses,
    }


def _agent(r: _Reader) -> Record:
    return {
        "computer": r.ref("computer"),
        "platform": r.choice("platform", AgentPlatform),
        "edition": r.choice("edition", AgentEdition),
        "version": r.text("version", 50),
        "policy": r.text("policy", 200),
        "status": r.choice("status", AgentStatus, default=AgentStatus.HEALTHY),
    }


def _server(r: _Reader) -> Record:
    return {
        "uid": r.ref("uid"),
        "kind": r.choice("kind", ServerKind),
        "name": r.text("name", 255, required=True),
        "version": r.text("version", 50),
    }


def _target(r: _Reader | None) -> Record:
    if r is None:
        return {
            "kind": TargetKind.LOCAL,
            "tenant_account": "",
            "repository": "",
            "subtenant": "",
            "name": "",
        }
    target = {
        "kind": r.choice("kind", TargetKind),
        "tenant_account": r.text("tenantAccount", 200),
        "repository": r.text("repository", 200),
        "subtenant": r.text("subtenant", 254).lower(),
        "name": r.text("name", 255),
    }
    r.done("target.")
    if target["kind"] is TargetKind.CLOUD and not target["tenant_account"]:
        raise RecordError("a CLOUD target names its 'tenantAccount'")
    if target["kind"] is TargetKind.LOCAL and (target["tenant_account"] or target["subtenant"]):
        raise RecordError("a LOCAL target has no tenant account or subtenant")
    return target


def _job(r: _Reader) -> Record:
    job = {
        "uid": r.ref("uid"),
        "kind": r.choice("kind", BackupJobKind),
        "name": r.text("name", 255, required=True),
        "computer": r.ref("computer", required=False),
        "server": r.ref("server", required=False),
        "target": _target(r.nested("target")),
        "schedule": r.text("schedule", 100),
        "enabled": r.flag("enabled", True),
        "assigned_by_provider": r.flag("assignedByProvider", False),
    }
    if job["kind"] is BackupJobKind.AGENT:
        if not job["computer"] or job["server"]:
            raise RecordError("an AGENT job names its 'computer' (and no 'server')")
    elif not job["server"] or job["computer"]:
        raise RecordError(f"a {job['kind'].value} job names its 'server' (and no 'computer')")
    return job


def _session(r: _Reader) -> Record:
    session = {
        "uid": r.ref("uid"),
        "job": r.ref("job"),
        "result": r.choice("result", SessionResult, default=SessionResult.NONE),
        "started_at": r.time("startedAt"),
        "ended_at": r.time("endedAt", required=False),
        "processed_bytes": r.integer("processedBytes", MAX_BYTES),
        "transferred_bytes": r.integer("transferredBytes", MAX_BYTES),
        "warnings": r.integer("warnings", MAX_WARNINGS),
        "messages": r.strings("messages", MAX_MESSAGES, MAX_MESSAGE_CHARS),
    }
    if session["ended_at"] is not None:
        if session["result"] is SessionResult.NONE:
            raise RecordError("a running session (result NONE) has no 'endedAt'")
        if session["ended_at"] < session["started_at"]:
            raise RecordError("'endedAt' is before 'startedAt'")
    return session


def _restore_point(r: _Reader) -> Record:
    return {
        "uid": r.ref("uid"),
        "computer": r.ref("computer"),
        "job": r.ref("job", required=False),
        "created_at": r.time("createdAt"),
        "size_bytes": r.integer("sizeBytes", MAX_BYTES),
        "target_kind": r.choice("targetKind", TargetKind, default=TargetKind.LOCAL),
    }


def _heartbeat(r: _Reader) -> Record:
    beat = {
        "computer": r.ref("computer", required=False),
        "server": r.ref("server", required=False),
        "at": r.time("at"),
        "status": r.choice("status", AgentStatus, default=AgentStatus.HEALTHY),
    }
    if bool(beat["computer"]) == bool(beat["server"]):
        raise RecordError("a heartbeat names either 'computer' or 'server'")
    return beat


def _veeam_one(r: _Reader) -> Record:
    return {
        "uid": r.ref("uid"),
        "server": r.ref("server"),
        "object_name": r.text("objectName", 255, required=True),
        "metric": r.text("metric", 100, required=True),
        "value": r.number("value"),
        "severity": r.choice("severity", Severity, default=Severity.INFO),
        "message": r.text("message", 1000),
        "recorded_at": r.time("recordedAt"),
    }


def _ack(r: _Reader) -> Record:
    return {"job": r.ref("job"), "command": r.choice("command", PendingCommand)}


# list → (parser, natural key within the batch; None: repeats allowed)
PARSERS: dict[str, tuple[Callable[[_Reader], Record], Callable[[Record], Any] | None]] = {
    "computers": (_computer, lambda x: x["uid"]),
    "agents": (_agent, lambda x: x["computer"]),
    "servers": (_server, lambda x: x["uid"]),
    "jobs": (_job, lambda x: x["uid"]),
    "sessions": (_session, lambda x: (x["job"], x["uid"])),
    "restorePoints": (_restore_point, lambda x: (x["computer"], x["uid"])),
    "heartbeats": (_heartbeat, None),
    "veeamOne": (_veeam_one, lambda x: (x["server"], x["uid"])),
    "acks": (_ack, None),
}


def parse_batch(payload: Any) -> Batch:
    if not isinstance(payload, dict):
        raise BadInput("the batch is a JSON object")
    unknown = sorted(set(payload) - {*LISTS, "reportedAt"})
    if unknown:
        raise BadInput(f"unknown list '{unknown[0]}'", field=unknown[0])
    try:
        reported_at = parse_time(payload.get("reportedAt"), "reportedAt")
    except RecordError as exc:
        raise BadInput(str(exc), field="reportedAt") from None
    if reported_at is None:
        raise BadInput("'reportedAt' is required", field="reportedAt")
    batch = Batch(reported_at=reported_at)
    for name in LISTS:
        raw = payload.get(name)
        raw = [] if raw is None else raw
        if not isinstance(raw, list):
            raise BadInput(f"'{name}' must be a list", field=name)
        if len(raw) > MAX_RECORDS:
            raise BadInput(f"'{name}' holds more than {MAX_RECORDS} records", field=name)
        parser, natural_key = PARSERS[name]
        kept: list[tuple[int, Record]] = []
        first_at: dict[Any, int] = {}
        for index, item in enumerate(raw):
            try:
                reader = _Reader(item)
                record = parser(reader)
                reader.done()
            except RecordError as exc:
                batch.reject(name, index, item, str(exc))
                continue
            if natural_key is not None:
                key = natural_key(record)
                if key in first_at:
                    batch.reject(name, index, item, f"repeats record {first_at[key]} of '{name}'")
                    continue
                first_at[key] = index
            kept.append((index, record))
        batch.records[name] = kept
    return batch
