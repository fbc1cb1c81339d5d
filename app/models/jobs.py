"""Background jobs: the row is the truth; the broker only carries its id."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from app.models.identity import User
from app.models.tenancy import Organization


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class Job(Model):
    id = fields.IntField(primary_key=True)
    kind = fields.CharField(max_length=64, db_index=True)
    state = fields.CharEnumField(JobState, max_length=16, default=JobState.QUEUED, db_index=True)
    # The matrix functionality that governs who may see the job (with its organization).
    functionality = fields.CharField(max_length=32)
    organization: fields.ForeignKeyNullableRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="jobs", null=True, on_delete=fields.CASCADE
    )
    requested_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="jobs", null=True, on_delete=fields.SET_NULL
    )
    params: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    # Persisted steps: what a handler has already done, so a re-run resumes and repeats nothing.
    checkpoint: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    result: fields.Field[dict] = fields.JSONField(null=True)  # type: ignore[assignment]
    error = fields.TextField(null=True)
    progress_percent = fields.IntField(default=0)
    progress_message = fields.CharField(max_length=500, default="")
    attempts = fields.IntField(default=0)
    max_attempts = fields.IntField(default=3)
    cancel_requested = fields.BooleanField(default=False)
    # A scheduler tick or a caller's idempotency key: at most one job per key.
    dedup_key = fields.CharField(max_length=200, null=True, unique=True)
    worker_id = fields.CharField(max_length=100, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    enqueued_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    heartbeat_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "jobs"
        ordering = ["id"]
        indexes = (("state", "heartbeat_at"),)
