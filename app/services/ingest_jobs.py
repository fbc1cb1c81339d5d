"""Ingestion of backup jobs, their sessions and restore points (the lists that carry the
denormalised columns and the rollups); the batch itself is `app.services.ingestion`'s.

Jobs: the reporter's settings (name, target, schedule, enabled) are taken unless the report is
older than the job's last one; `assignedByProvider` is read only when the job is first seen
(afterwards it is the console's). A CLOUD target names the company's tenant account, and
optionally the repository and the Subtenant (by the Subtenant user's e-mail); an agent job
backing up to a Subtenant binds its computer to that Subtenant.

Sessions carry their job's company, location, computer, Subtenant and functionality. A report
of a running session never undoes a finished one. A session and a restore point keep the
`reportedAt` of the batch that last wrote them: a batch older than that changes nothing (a
correction, FAILED then WARNING, is not turned back by the FAILED batch delivered again
later); a newer batch that reports the same values only moves that time forward. The job's
last run (time, result, run state) follows the newest session written by the batch.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tortoise.models import Model

from app.authz.capabilities import JOB_FUNCTIONALITY
from app.models import BackupJob, BackupJobSession, RestorePoint
from app.models.backups import BackupJobKind, JobRunState, SessionResult, TargetKind
from app.models.cloud import BackupResource, Subtenant, TenantAccount
from app.models.inventory import ServerKind
from app.services import rollup_counts
from app.services.bulk_sql import execute_many
from app.services.ingest_records import Record

if TYPE_CHECKING:
    from app.services.ingestion import Row, Run

JOB_FIELDS = (
    "id",
    "uid",
    "kind",
    "location_id",
    "computer_id",
    "server_id",
    "name",
    "target_kind",
    "target_resource_id",
    "target_subtenant_id",
    "target_name",
    "schedule",
    "enabled",
    "assigned_by_provider",
    "last_run_at",
    "last_result",
    "run_state",
    "reported_at",
)
# What a report sets on an existing job (the order of the UPDATE below).
JOB_SETTINGS = (
    "name",
    "computer_id",
    "server_id",
    "target_kind",
    "target_resource_id",
    "target_subtenant_id",
    "target_name",
    "schedule",
    "enabled",
)
SERVER_FOR_JOB = {
    BackupJobKind.VBR_BACKUP: ServerKind.BACKUP_AND_REPLICATION,
    BackupJobKind.BACKUP_COPY: ServerKind.BACKUP_AND_REPLICATION,
    BackupJobKind.REPLICATION: ServerKind.BACKUP_AND_REPLICATION,
    BackupJobKind.PUBLIC_CLOUD_POLICY: ServerKind.PUBLIC_CLOUDS,
    BackupJobKind.MICROSOFT_365: ServerKind.MICROSOFT_365,
}
SESSION_FIELDS = (
    "location_id",
    "computer_id",
    "subtenant_id",
    "functionality",
    "result",
    "started_at",
    "ended_at",
    "processed_bytes",
    "transferred_bytes",
    "warnings",
    "messages",
)
POINT_FIELDS = ("job_id", "created_at", "size_bytes", "target_kind")


class Refused(ValueError):
    pass


def _db(value: Any) -> Any:
    """A Python value as a raw statement parameter (enums by value, lists as JSON text)."""
    if isinstance(value, list):
        return json.dumps(value)
    return getattr(value, "value", value)


# --- targets -------------------------------------------------------------------------------------


class Targets:
    """The company's tenant accounts, backup resources and Subtenants the jobs' CLOUD targets
    name: three queries at most, whatever the number of jobs."""

    def __init__(self) -> None:
        self.accounts: set[str] = set()
        self.resources: dict[tuple[str, str], int] = {}
        self.subtenants: dict[str, list[Row]] = {}

    async def load(self, company_id: int, targets: list[Record]) -> None:
        names = {t["tenant_account"] for t in targets if t["kind"] is TargetKind.CLOUD}
        emails = {t["subtenant"] for t in targets if t["subtenant"]}
        if not names:
            return
        self.accounts = set(
            await TenantAccount.filter(company_id=company_id, name__in=names).values_list(
                "name", flat=True
            )  # type: ignore[arg-type]
        )
        for row in await BackupResource.filter(
            tenant_account__company_id=company_id, tenant_account__name__in=names
        ).values("id", "tenant_account__name", "repository__name"):
            self.resources[(row["tenant_account__name"], row["repository__name"])] = row["id"]
        if emails:
            for row in await Subtenant.filter(
                resource__tenant_account__company_id=company_id, user__email__in=emails
            ).values(
                "id",
                "resource_id",
                "user__email",
                "resource__tenant_account__name",
                "resource__repository__name",
            ):
                self.subtenants.setdefault(row["user__email"], []).append(row)

    def resolve(self, t: Record) -> tuple[int | None, int | None]:
        """(backup resource id, Subtenant id) of a target, or Refused."""
        if t["kind"] is TargetKind.LOCAL:
            return None, None
        account, repository = t["tenant_account"], t["repository"]
        if account not in self.accounts:
            raise Refused(f"tenant account '{account}' is not one of this company's")
        if t["subtenant"]:
            for row in self.subtenants.get(t["subtenant"], []):
                if row["resource__tenant_account__name"] == account and (
                    not repository or row["resource__repository__name"] == repository
                ):
                    return row["resource_id"], row["id"]
            where = f" on repository '{repository}'" if repository else ""
            raise Refused(
                f"no Subtenant '{t['subtenant']}' under tenant account '{account}'{where}"
            )
        if not repository:
            return None, None
        resource = self.resources.get((account, repository))
        if resource is None:
            raise Refused(
                f"tenant account '{account}' has no backup resource on repository '{repository}'"
            )
        return resource, None


# --- jobs ----------------------------------------------------------------------------------------


def _placement(run: Run, r: Record) -> Row:
    """The computer or server the job runs on, checked against the job's kind."""
    if r["kind"] is BackupJobKind.AGENT:
        computer = run.computers.get(r["computer"])
        if computer is None:
            raise Refused(f"unknown computer '{r['computer']}'")
        return {
            "computer_id": computer["id"],
            "server_id": None,
            "location_id": computer["location_id"],
        }
    server = run.servers.get(r["server"])
    if server is None:
        raise Refused(f"unknown server '{r['server']}'")
    if ServerKind(server["kind"]) is not SERVER_FOR_JOB[r["kind"]]:
        raise Refused(f"a {r['kind'].value} job does not run on a {server['kind']} server")
    return {"computer_id": None, "server_id": server["id"], "location_id": server["location_id"]}


async def jobs(run: Run) -> None:
    refs = run.refs("uid", "jobs") | run.refs("job", "sessions", "restorePoints", "acks")
    run.jobs = await _load_jobs(run, refs)
    targets = Targets()
    await targets.load(run.company_id, [r["target"] for _, r in run.records("jobs")])
    kept, new, updates, bindings = [], [], [], {}
    for index, r in run.records("jobs"):
        row = run.jobs.get(r["uid"])
        try:
            if row is not None and BackupJobKind(row["kind"]) is not r["kind"]:
                raise Refused(f"the job is a {row['kind']} job; its kind cannot change")
            place = _placement(run, r)
            resource_id, subtenant_id = targets.resolve(r["target"])
        except Refused as exc:
            run.reject("jobs", index, r, str(exc))
            continue
        kept.append((index, r))
        settings = {
            "name": r["name"], "computer_id": place["computer_id"], "server_id": place["server_id"],
            "target_kind": r["target"]["kind"], "target_resource_id": resource_id,
            "target_subtenant_id": subtenant_id, "target_name": r["target"]["name"],
            "schedule": r["schedule"], "enabled": r["enabled"],
        }  # fmt: skip
        if row is None:
            new.append(
                BackupJob(
                    company_id=run.company_id,
                    location_id=place["location_id"],
                    uid=r["uid"],
                    kind=r["kind"],
                    functionality=JOB_FUNCTIONALITY[r["kind"].value].value,
                    assigned_by_provider=r["assigned_by_provider"],
                    reported_at=run.batch.reported_at,
                    **settings,
                )
            )
        elif run.stale(row):
            continue  # an older report: the job's settings stay as the newer one said
        elif row["reported_at"] != run.batch.reported_at or _differs(row, settings):
            updates.append(
                [
                    *(_db(settings[f]) for f in JOB_SETTINGS),
                    run.batch.reported_at,
                    run.at,
                    row["id"],
                ]
            )
            row.update(settings, reported_at=run.batch.reported_at)
        if r["kind"] is BackupJobKind.AGENT and (
            subtenant_id or place["computer_id"] not in bindings
        ):
            bindings[place["computer_id"]] = subtenant_id
    run.keep("jobs", kept)
    if new:
        await BackupJob.bulk_create(new)
        run.jobs.update(await _load_jobs(run, {j.uid for j in new}))
    sets = ", ".join(f"{f} = ?" for f in JOB_SETTINGS)
    await execute_many(
        f"UPDATE backup_jobs SET {sets}, reported_at = ?, updated_at = ? WHERE id = ?", updates
    )
    await _bind_subtenants(run, bindings)


async def _load_jobs(run: Run, uids: set[str]) -> dict[str, Row]:
    from app.services.ingestion import load_by_uid

    return await load_by_uid(BackupJob, uids, JOB_FIELDS, company_id=run.company_id)


def _differs(row: Row, values: dict[str, Any]) -> bool:
    return any(_db(row[f]) != _db(v) for f, v in values.items())


async def _stored(
    model: type[Model],
    parent: str,
    parent_ids: set[int],
    kept: list[tuple[int, Record]],
    fields: tuple[str, ...],
) -> dict[tuple[Any, Any], Row]:
    """The stored rows the kept records name, by (parent id, uid): a uid is unique under its
    parent (a session under its job, a restore point under its computer)."""
    rows = await model.filter(
        **{f"{parent}__in": parent_ids}, uid__in={r["uid"] for _, r in kept}
    ).values("id", parent, "uid", *fields)
    return {(row[parent], row["uid"]): row for row in rows}


def _confirms(run: Run, row: Row) -> bool:
    """A newer batch reports the row as it is: only its report time moves."""
    return row["reported_at"] is None or run.batch.reported_at > row["reported_at"]


async def _update_rows(
    table: str, fields: tuple[str, ...], changed: list[tuple[int, dict[str, Any]]]
) -> None:
    """Sets `fields` of each (id, values) in `changed`, in one batched statement."""
    sets = ", ".join(f"{f} = ?" for f in fields)
    await execute_many(
        f"UPDATE {table} SET {sets} WHERE id = ?",
        [[*(_db(values[f]) for f in fields), row_id] for row_id, values in changed],
    )


async def _bind_subtenants(run: Run, bindings: dict[int, int | None]) -> None:
    """A computer whose agent job backs up to a Subtenant's account is that Subtenant's."""
    by_id = {c["id"]: c for c in run.computers.values()}
    updates = []
    for computer_id, subtenant_id in bindings.items():
        computer = by_id[computer_id]
        if computer["subtenant_id"] != subtenant_id:
            computer["subtenant_id"] = subtenant_id
            updates.append([subtenant_id, run.at, computer_id])
    await execute_many(
        "UPDATE managed_computers SET subtenant_id = ?, updated_at = ? WHERE id = ?", updates
    )


# --- sessions ------------------------------------------------------------------------------------


def _contribution(run: Run, s: Row) -> rollup_counts.Contribution | None:
    return rollup_counts.contribution(
        company_id=run.company_id,
        location_id=s["location_id"],
        subtenant_id=s["subtenant_id"],
        functionality=s["functionality"],
        started_at=s["started_at"],
        result=s["result"],
        processed_bytes=s["processed_bytes"],
    )


async def sessions(run: Run) -> None:
    kept = []
    for index, r in run.records("sessions"):
        if r["job"] in run.jobs:
            kept.append((index, r))
        else:
            run.reject("sessions", index, r, f"unknown job '{r['job']}'")
    run.keep("sessions", kept)
    if not kept:
        return
    job_ids = {run.jobs[r["job"]]["id"] for _, r in kept}
    existing = await _stored(
        BackupJobSession, "job_id", job_ids, kept, (*SESSION_FIELDS, "reported_at")
    )
    deltas = rollup_counts.RollupDeltas()
    new: list[BackupJobSession] = []
    updates: list[tuple[int, dict[str, Any]]] = []
    newest: dict[int, Row] = {}
    reported_at = run.batch.reported_at
    for _, r in kept:
        job = run.jobs[r["job"]]
        values = {
            "location_id": job["location_id"], "computer_id": job["computer_id"],
            "subtenant_id": job["target_subtenant_id"],
            "functionality": JOB_FUNCTIONALITY[str(job["kind"])].value,
            **{f: r[f] for f in SESSION_FIELDS[4:]}, "reported_at": reported_at,
        }  # fmt: skip
        row = existing.get((job["id"], r["uid"]))
        if row is None:
            new.append(
                BackupJobSession(
                    job_id=job["id"], uid=r["uid"], company_id=run.company_id, **values
                )
            )
            deltas.add(_contribution(run, values))
        elif run.stale(row):
            continue  # older than the report that wrote the session: a newer word stands
        elif (
            r["result"] is SessionResult.NONE
            and SessionResult(row["result"]) is not SessionResult.NONE
        ):
            continue  # a late "running" report of a finished session
        elif _differs(row, {f: values[f] for f in SESSION_FIELDS}):
            updates.append((row["id"], values))
            deltas.change(_contribution(run, row), _contribution(run, values))
        else:
            if _confirms(run, row):  # the same values, written with the newer report time
                updates.append((row["id"], values))
            continue
        best = newest.get(job["id"])
        if best is None or values["started_at"] >= best["started_at"]:
            newest[job["id"]] = values
    if new:
        await BackupJobSession.bulk_create(new)
    await _update_rows("backup_job_sessions", (*SESSION_FIELDS, "reported_at"), updates)
    await rollup_counts.apply(deltas)
    await _last_runs(run, newest)


async def _last_runs(run: Run, newest: dict[int, Row]) -> None:
    """A job's last run follows the newest session the batch wrote, never an older one."""
    by_id = {j["id"]: j for j in run.jobs.values()}
    updates = []
    for job_id, s in newest.items():
        job = by_id[job_id]
        if job["last_run_at"] is not None and s["started_at"] < job["last_run_at"]:
            continue
        result = SessionResult(s["result"])
        if result is SessionResult.NONE:
            last_result, state = SessionResult(job["last_result"]), JobRunState.RUNNING
        else:
            last_result, state = result, JobRunState.IDLE
        updates.append([s["started_at"], last_result.value, state.value, run.at, job_id])
    await execute_many(
        "UPDATE backup_jobs SET last_run_at = ?, last_result = ?, run_state = ?, updated_at = ?"
        " WHERE id = ?",
        updates,
    )


# --- restore points ------------------------------------------------------------------------------


async def restore_points(run: Run) -> None:
    kept = []
    for index, r in run.records("restorePoints"):
        if r["computer"] not in run.computers:
            run.reject("restorePoints", index, r, f"unknown computer '{r['computer']}'")
        elif r["job"] and r["job"] not in run.jobs:
            run.reject("restorePoints", index, r, f"unknown job '{r['job']}'")
        else:
            kept.append((index, r))
    run.keep("restorePoints", kept)
    if not kept:
        return
    computer_ids = {run.computers[r["computer"]]["id"] for _, r in kept}
    existing = await _stored(
        RestorePoint, "computer_id", computer_ids, kept, (*POINT_FIELDS, "reported_at")
    )
    new: list[RestorePoint] = []
    updates: list[tuple[int, dict[str, Any]]] = []
    added: dict[int, int] = {}
    for _, r in kept:
        computer = run.computers[r["computer"]]
        values = {
            "job_id": run.jobs[r["job"]]["id"] if r["job"] else None,
            "created_at": r["created_at"], "size_bytes": r["size_bytes"], "target_kind": r["target_kind"],
            "reported_at": run.batch.reported_at,
        }  # fmt: skip
        row = existing.get((computer["id"], r["uid"]))
        if row is None:
            new.append(
                RestorePoint(
                    computer_id=computer["id"], uid=r["uid"], company_id=run.company_id, **values
                )
            )
            added[computer["id"]] = added.get(computer["id"], 0) + 1
        elif run.stale(row):
            continue  # older than the report that wrote the point: a newer word stands
        elif _confirms(run, row) or _differs(row, {f: values[f] for f in POINT_FIELDS}):
            updates.append((row["id"], values))
        latest = computer["last_restore_point_at"]
        if latest is None or r["created_at"] > latest:
            computer["last_restore_point_at"] = r["created_at"]
            added.setdefault(computer["id"], 0)
    if new:
        await RestorePoint.bulk_create(new)
    await _update_rows("restore_points", (*POINT_FIELDS, "reported_at"), updates)
    by_id = {c["id"]: c for c in run.computers.values()}
    await execute_many(
        "UPDATE managed_computers SET restore_point_count = restore_point_count + ?,"
        " last_restore_point_at = ?, updated_at = ? WHERE id = ?",
        [[count, by_id[cid]["last_restore_point_at"], run.at, cid] for cid, count in added.items()],
    )
