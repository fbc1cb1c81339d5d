"""The audit log ("Logs" in the seeds): who did what, on which object, when, from where."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class AuditEntry(Model):
    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True, db_index=True)
    actor_id = fields.IntField(null=True, db_index=True)
    actor_email = fields.CharField(max_length=254, default="")
    actor_organization_id = fields.IntField(null=True)
    # The organization the change belongs to: decides who may read the entry (row scope).
    organization_id = fields.IntField(null=True, db_index=True)
    action = fields.CharField(max_length=64)
    object_type = fields.CharField(max_length=64, default="")
    object_id = fields.CharField(max_length=64, default="", db_index=True)
    client_address = fields.CharField(max_length=64, default="")
    request_id = fields.CharField(max_length=64, default="")
    outcome = fields.CharField(max_length=16, default="SUCCESS")
    details: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]

    class Meta:
        table = "audit_log"
        ordering = ["-id"]
