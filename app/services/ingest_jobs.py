"""Ingestion of backup jobs (the batch itself is `app.services.ingestion`'s; their sessions and
restore points follow in `app.services.ingest_sessions` and `app.services.ingest_restore_points`).

Jobs: the reporter's settings (name, target, schedule, enabled) are taken unless the report is
older than the job's last one; `assignedByProvider` is read only when the job is first seen
(afterwards it is the console's). A CLOUD target names the company's tenant account, and
optionally the repository and the Subtenant (by the Subtenant user's e-mail); an agent job
backing up to a Subtenant binds its computer to that Subtenant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.authz.capabilities import JOB_FUNCTIONALITY
from app.models import BackupJob
from app.models.backups import BackupJobKind, TargetKind
from app.models.cloud import BackupResource, Subtenant, TenantAccount
from app.models.inventory import ServerKind
from app.services.bulk_sql import execute_many
from app.services.ingest_records import Record
from app.services.ingest_rows import db_value, differs

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


class Refused(ValueError):
    pass


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
        elif row["reported_at"] != run.batch.reported_at or differs(row, settings):
            updates.append(
                [
                    *(db_value(settings[f]) for f in JOB_SETTINGS),
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
