"""Alarms: templates (the predefined catalogue as configured by each organization, and custom
clones), triggered alarms with their history, the cursors of incremental evaluation,
notification settings (e-mail by role, signed webhooks, daily digest) and maintenance windows.

An alarm is about one object (a job, a computer, a tenant account, a certificate …) of one
organization; while it is not resolved, `active_key` (template + object) is set and unique, so
there is at most one active alarm per template and object, whatever evaluates concurrently.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from app.models.identity import User
from app.models.tenancy import Organization


class AlarmSeverity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class RuleKind(StrEnum):
    STATE_CHANGE = "STATE_CHANGE"  # an object is in a bad state (agent offline, job failed)
    EVENT = "EVENT"  # something happened (failed logins, a failover session failed)
    THRESHOLD = "THRESHOLD"  # a measured value crossed a limit (quota usage, RPO hours)


class AlarmTemplate(Model):
    """A template as one organization (provider, reseller or company) configures it for its
    portal. Predefined templates come from the catalogue (`catalogue_key`); a custom template
    is a clone (`custom`, `catalogue_key` of the template it was cloned from)."""

    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="alarm_templates", on_delete=fields.CASCADE
    )
    catalogue_key = fields.CharField(max_length=64)
    custom = fields.BooleanField(default=False)
    name = fields.CharField(max_length=200)
    description = fields.CharField(max_length=1000, default="")
    kind = fields.CharEnumField(RuleKind, max_length=12)
    enabled = fields.BooleanField(default=True)
    severity = fields.CharEnumField(AlarmSeverity, max_length=8, default=AlarmSeverity.ERROR)
    # Kind-specific limits, e.g. {"hours": 24}, {"warning": 80, "error": 95}, {"count": 5}.
    thresholds: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    # Raise only after the condition was seen this many times in a row (1: at once).
    trigger_after = fields.IntField(default=1)
    # Stop raising new alarms of this template once this many are unresolved (0: never).
    suppress_after = fields.IntField(default=0)
    # Object-name masks ("sql*", "*-test"): include (empty: all) and exclude.
    name_include: fields.Field[list] = fields.JSONField(default=list)  # type: ignore[assignment]
    name_exclude: fields.Field[list] = fields.JSONField(default=list)  # type: ignore[assignment]
    # Which organizations and locations the template watches:
    # {"all": bool, "allNew": bool, "resellers": [ids], "companies": [ids], "locations": [ids],
    #  "excludeResellers": [ids], "excludeCompanies": [ids], "excludeLocations": [ids]}
    assignment: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "alarm_templates"
        unique_together = (("owner", "name"),)
        ordering = ["id"]
        indexes = (("owner_id", "catalogue_key"),)


class AlarmStatus(StrEnum):
    PENDING = "PENDING"  # seen, but fewer times than the template's trigger_after: not shown
    ACTIVE = "ACTIVE"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"


OPEN_STATUSES = frozenset({AlarmStatus.PENDING, AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED})


class Alarm(Model):
    id = fields.BigIntField(primary_key=True)
    template: fields.ForeignKeyRelation[AlarmTemplate] = fields.ForeignKeyField(
        "models.AlarmTemplate", related_name="alarms", on_delete=fields.CASCADE
    )
    # The organization the object belongs to (company, reseller or the provider), its
    # location and the Subtenant account whose computer it is (the Read* cells).
    organization_id = fields.IntField()
    location_id = fields.IntField(null=True)
    subtenant_id = fields.IntField(null=True)
    object_type = fields.CharField(max_length=40)
    object_id = fields.IntField()
    object_name = fields.CharField(max_length=300)
    status = fields.CharEnumField(AlarmStatus, max_length=12)
    severity = fields.CharEnumField(AlarmSeverity, max_length=8)
    message = fields.CharField(max_length=1000)
    # "<template>:<object type>:<object id>" while not resolved, NULL once resolved.
    active_key = fields.CharField(max_length=120, null=True, unique=True)
    # Distinct occurrences while open (app.alarms.engine: a new message or severity), not sweeps.
    occurrences = fields.IntField(default=1)
    first_seen_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    raised_at = fields.DatetimeField(null=True)  # PENDING → ACTIVE
    resolved_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "alarms"
        ordering = ["id"]
        indexes = (("organization_id", "status"), ("status", "last_seen_at"))


class AlarmChange(StrEnum):
    TRIGGERED = "TRIGGERED"
    REPEATED = "REPEATED"
    SEVERITY_CHANGED = "SEVERITY_CHANGED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"  # by a user, with a comment
    AUTO_RESOLVED = "AUTO_RESOLVED"  # the condition cleared, the template was disabled …


class AlarmEvent(Model):
    """An alarm's history: every status or severity change, who, when, with what comment."""

    id = fields.BigIntField(primary_key=True)
    alarm: fields.ForeignKeyRelation[Alarm] = fields.ForeignKeyField(
        "models.Alarm", related_name="history", on_delete=fields.CASCADE
    )
    change = fields.CharEnumField(AlarmChange, max_length=16)
    status = fields.CharEnumField(AlarmStatus, max_length=12)
    severity = fields.CharEnumField(AlarmSeverity, max_length=8)
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="alarm_events", null=True, on_delete=fields.SET_NULL
    )
    comment = fields.CharField(max_length=1000, default="")
    at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "alarm_events"
        ordering = ["id"]
        indexes = (("alarm_id", "id"),)


class EvaluationCursor(Model):
    """How far an incremental evaluation got in a source (sessions, domain events, audit log):
    the last id it has seen. Moved in the same transaction as the alarms it wrote."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    last_id = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "alarm_cursors"


class AlarmNotificationSettings(Model):
    """Who an organization's alarms are mailed to (the roles of its portal, by name as in the
    matrix data), the lowest severity that notifies, and the daily digest."""

    id = fields.IntField(primary_key=True)
    organization: fields.OneToOneRelation[Organization] = fields.OneToOneField(
        "models.Organization", related_name="alarm_notification_settings", on_delete=fields.CASCADE
    )
    email_roles: fields.Field[list] = fields.JSONField(default=list)  # type: ignore[assignment]
    min_severity = fields.CharEnumField(AlarmSeverity, max_length=8, default=AlarmSeverity.WARNING)
    digest = fields.BooleanField(default=False)
    digest_hour = fields.IntField(default=7)  # UTC
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "alarm_notification_settings"


class AlarmWebhook(Model):
    """A signed webhook of an organization: its alarms (of at least `min_severity`) are POSTed
    as JSON with an HMAC-SHA256 signature keyed by the webhook's secret (stored encrypted)."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="alarm_webhooks", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    url = fields.CharField(max_length=1000)
    secret_encrypted = fields.TextField()
    enabled = fields.BooleanField(default=True)
    min_severity = fields.CharEnumField(AlarmSeverity, max_length=8, default=AlarmSeverity.WARNING)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "alarm_webhooks"
        unique_together = (("organization", "name"),)
        ordering = ["id"]


class MaintenanceWindow(Model):
    """While a window of an organization is open, its alarms (and those of the organizations
    below it) still fire but notify nobody."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="maintenance_windows", on_delete=fields.CASCADE
    )
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    reason = fields.CharField(max_length=500, default="")
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="maintenance_windows", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "maintenance_windows"
        ordering = ["id"]
        indexes = (("organization_id", "ends_at"),)
