"""Backup jobs of managed workloads, their sessions and restore points, and the daily rollup
the monitoring summary reads.

A backup job's matrix functionality is stored on the row (`functionality`), chosen from its
kind and whether the provider assigned it (`app.services.backup_jobs.functionality_for`), so
row scope ("may this principal read jobs of this functionality") is one SQL filter, like the
background `jobs` table. Sessions and restore points carry their company, location, computer
and functionality too: the pages and aggregates over a million rows never join back.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from app.models.cloud import BackupResource, Subtenant
from app.models.inventory import BackupServer, ManagedComputer
from app.models.tenancy import Location, Organization


class BackupJobKind(StrEnum):
    AGENT = "AGENT"  # Veeam backup agent job
    VBR_BACKUP = "VBR_BACKUP"  # Veeam Backup & Replication backup job
    BACKUP_COPY = "BACKUP_COPY"
    REPLICATION = "REPLICATION"
    PUBLIC_CLOUD_POLICY = "PUBLIC_CLOUD_POLICY"  # Veeam Backup for Public Clouds policy
    MICROSOFT_365 = "MICROSOFT_365"  # Veeam Backup for Microsoft 365 job


class TargetKind(StrEnum):
    CLOUD = "CLOUD"  # a cloud repository of the provider (a tenant's backup resource)
    LOCAL = "LOCAL"  # the tenant's own storage


class JobRunState(StrEnum):
    IDLE = "IDLE"
    STARTING = "STARTING"  # start requested, waiting for the backup server to pick it up
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"  # stop requested


class SessionResult(StrEnum):
    NONE = "NONE"  # still running
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILED = "FAILED"


class PendingCommand(StrEnum):
    """What the console asked the backup server to do; delivered with the next report's
    answer, cleared when the server acknowledges it."""

    START = "START"
    STOP = "STOP"
    RETRY = "RETRY"


class BackupJob(Model):
    id = fields.IntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="backup_jobs", on_delete=fields.CASCADE
    )
    location: fields.ForeignKeyRelation[Location] = fields.ForeignKeyField(
        "models.Location", related_name="backup_jobs", on_delete=fields.CASCADE
    )
    uid = fields.CharField(max_length=100)
    name = fields.CharField(max_length=255)
    kind = fields.CharEnumField(BackupJobKind, max_length=24)
    functionality = fields.CharField(max_length=32, db_index=True)
    # Agent jobs protect one computer; server jobs run on a backup server.
    computer: fields.ForeignKeyNullableRelation[ManagedComputer] = fields.ForeignKeyField(
        "models.ManagedComputer", related_name="backup_jobs", null=True, on_delete=fields.CASCADE
    )
    server: fields.ForeignKeyNullableRelation[BackupServer] = fields.ForeignKeyField(
        "models.BackupServer", related_name="backup_jobs", null=True, on_delete=fields.CASCADE
    )
    target_kind = fields.CharEnumField(TargetKind, max_length=8, default=TargetKind.LOCAL)
    target_resource: fields.ForeignKeyNullableRelation[BackupResource] = fields.ForeignKeyField(
        "models.BackupResource", related_name="backup_jobs", null=True, on_delete=fields.SET_NULL
    )
    target_subtenant: fields.ForeignKeyNullableRelation[Subtenant] = fields.ForeignKeyField(
        "models.Subtenant", related_name="backup_jobs", null=True, on_delete=fields.SET_NULL
    )
    target_name = fields.CharField(max_length=255, default="")
    assigned_by_provider = fields.BooleanField(default=False)
    # Cron expression ("" = manual only).
    schedule = fields.CharField(max_length=100, default="")
    enabled = fields.BooleanField(default=True)
    run_state = fields.CharEnumField(JobRunState, max_length=12, default=JobRunState.IDLE)
    pending_command = fields.CharEnumField(PendingCommand, max_length=8, null=True)
    last_result = fields.CharEnumField(SessionResult, max_length=8, default=SessionResult.NONE)
    last_run_at = fields.DatetimeField(null=True)
    # The reporter's last word on this job (for idempotence: older reports do not win).
    reported_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "backup_jobs"
        unique_together = (("company", "uid"),)
        ordering = ["id"]
        # computer_id: a computer's jobs (the protected page counts them per row, loaders
        # fetch them per page, deleting a computer cascades to them).
        indexes = (("company_id", "functionality"), ("computer_id",))


class BackupJobSession(Model):
    id = fields.BigIntField(primary_key=True)
    job: fields.ForeignKeyRelation[BackupJob] = fields.ForeignKeyField(
        "models.BackupJob", related_name="sessions", on_delete=fields.CASCADE
    )
    uid = fields.CharField(max_length=100)
    # Denormalised from the job for scope and aggregates without joins.
    company_id = fields.IntField()
    location_id = fields.IntField()
    computer_id = fields.IntField(null=True)
    subtenant_id = fields.IntField(null=True)
    functionality = fields.CharField(max_length=32)
    result = fields.CharEnumField(SessionResult, max_length=8, default=SessionResult.NONE)
    started_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    processed_bytes = fields.BigIntField(default=0)
    transferred_bytes = fields.BigIntField(default=0)
    warnings = fields.IntField(default=0)
    messages: fields.Field[list] = fields.JSONField(default=list)  # type: ignore[assignment]
    # The reportedAt of the batch that last wrote (or confirmed) this session: an older batch
    # delivered late does not turn back a newer correction. NULL: rows from before 0015.
    reported_at = fields.DatetimeField(null=True)

    class Meta:
        table = "backup_job_sessions"
        unique_together = (("job", "uid"),)
        indexes = (("company_id", "started_at"), ("job_id", "started_at"))


class RestorePoint(Model):
    id = fields.BigIntField(primary_key=True)
    computer: fields.ForeignKeyRelation[ManagedComputer] = fields.ForeignKeyField(
        "models.ManagedComputer", related_name="restore_points", on_delete=fields.CASCADE
    )
    job: fields.ForeignKeyNullableRelation[BackupJob] = fields.ForeignKeyField(
        "models.BackupJob", related_name="restore_points", null=True, on_delete=fields.SET_NULL
    )
    uid = fields.CharField(max_length=100)
    company_id = fields.IntField()
    created_at = fields.DatetimeField()
    size_bytes = fields.BigIntField(default=0)
    target_kind = fields.CharEnumField(TargetKind, max_length=8, default=TargetKind.LOCAL)
    # As a session's: the batch that last wrote (or confirmed) the point. NULL: before 0015.
    reported_at = fields.DatetimeField(null=True)

    class Meta:
        table = "restore_points"
        unique_together = (("computer", "uid"),)
        indexes = (("computer_id", "created_at"),)


class SessionRollup(Model):
    """Per day and slice (company, location, subtenant, functionality): session counts by
    result. Written in the same transaction as the sessions it counts; the monitoring summary
    sums these rows instead of scanning sessions."""

    id = fields.BigIntField(primary_key=True)
    company_id = fields.IntField()
    location_id = fields.IntField()
    subtenant_id = fields.IntField(default=0)  # 0: none (NULL would defeat the unique key)
    functionality = fields.CharField(max_length=32)
    day = fields.DateField()
    success = fields.IntField(default=0)
    warning = fields.IntField(default=0)
    failed = fields.IntField(default=0)
    processed_bytes = fields.BigIntField(default=0)

    class Meta:
        table = "backup_session_rollups"
        unique_together = (("company_id", "location_id", "subtenant_id", "functionality", "day"),)
        indexes = (("day", "company_id"),)
