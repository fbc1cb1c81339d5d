"""Managed inventory: computers with a management agent, their Veeam backup agents, the backup
servers and appliances a company runs (Veeam Backup & Replication, Veeam Backup for
Microsoft 365, Veeam Backup for Public Clouds, Veeam ONE), and the keys they report in with.

Rows come in through ingestion (`app.services.ingestion`), keyed by the reporter's own ids
(`uid`, unique per company), so the same report twice changes nothing.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from app.models.cloud import Subtenant
from app.models.identity import User
from app.models.tenancy import Location, Organization


class OsFamily(StrEnum):
    WINDOWS = "WINDOWS"
    LINUX = "LINUX"
    MAC = "MAC"
    OTHER = "OTHER"


class AgentStatus(StrEnum):
    """The management agent's health as the console sees it."""

    HEALTHY = "HEALTHY"
    WARNING = "WARNING"
    ERROR = "ERROR"
    INACCESSIBLE = "INACCESSIBLE"  # no heartbeat within the allowed time
    UNKNOWN = "UNKNOWN"  # registered (discovered) but never reported


class ManagedComputer(Model):
    id = fields.IntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="managed_computers", on_delete=fields.CASCADE
    )
    location: fields.ForeignKeyRelation[Location] = fields.ForeignKeyField(
        "models.Location", related_name="managed_computers", on_delete=fields.CASCADE
    )
    # The reporter's id for the machine; the natural key with the company.
    uid = fields.CharField(max_length=100)
    hostname = fields.CharField(max_length=255)
    os_family = fields.CharEnumField(OsFamily, max_length=8, default=OsFamily.OTHER)
    os_name = fields.CharField(max_length=200, default="")
    ip_addresses: fields.Field[list] = fields.JSONField(default=list)  # type: ignore[assignment]
    agent_status = fields.CharEnumField(AgentStatus, max_length=16, default=AgentStatus.UNKNOWN)
    last_heartbeat_at = fields.DatetimeField(null=True)
    # Set when the computer's agent backs up to a cloud repository under a Subtenant's account
    # (the Read* / Full* cells of the seeds).
    subtenant: fields.ForeignKeyNullableRelation[Subtenant] = fields.ForeignKeyField(
        "models.Subtenant", related_name="computers", null=True, on_delete=fields.SET_NULL
    )
    # Protected data, kept current by ingestion so the page is one indexed query.
    last_restore_point_at = fields.DatetimeField(null=True)
    restore_point_count = fields.IntField(default=0)
    # Found by a discovery rule rather than reported by an agent.
    discovered_by_id = fields.IntField(null=True)
    # The reportedAt of the batch that last wrote (or confirmed) the computer's hostname, OS
    # and addresses: an older batch delivered late does not turn them back. NULL: rows from
    # before 0016 and computers a discovery registered (claimed by the next report).
    reported_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "managed_computers"
        unique_together = (("company", "uid"),)
        ordering = ["id"]
        indexes = (("company_id", "location_id"), ("company_id", "last_restore_point_at"))


class AgentPlatform(StrEnum):
    WINDOWS = "WINDOWS"
    LINUX = "LINUX"
    MAC = "MAC"


class AgentEdition(StrEnum):
    SERVER = "SERVER"
    WORKSTATION = "WORKSTATION"


class BackupAgent(Model):
    """A Veeam backup agent installed on a managed computer (one per computer)."""

    id = fields.IntField(primary_key=True)
    computer: fields.OneToOneRelation[ManagedComputer] = fields.OneToOneField(
        "models.ManagedComputer", related_name="agent", on_delete=fields.CASCADE
    )
    platform = fields.CharEnumField(AgentPlatform, max_length=8)
    edition = fields.CharEnumField(AgentEdition, max_length=12)
    version = fields.CharField(max_length=50, default="")
    # The backup policy assigned to the agent (by name; policies live on the backup server).
    policy = fields.CharField(max_length=200, default="")
    status = fields.CharEnumField(AgentStatus, max_length=16, default=AgentStatus.UNKNOWN)
    # As a computer's: the batch that last wrote (or confirmed) the agent. NULL: before 0016.
    reported_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "backup_agents"
        ordering = ["id"]


class ServerKind(StrEnum):
    BACKUP_AND_REPLICATION = "BACKUP_AND_REPLICATION"
    MICROSOFT_365 = "MICROSOFT_365"
    PUBLIC_CLOUDS = "PUBLIC_CLOUDS"
    VEEAM_ONE = "VEEAM_ONE"


class BackupServer(Model):
    """A backup server or appliance of a company, as reported by itself."""

    id = fields.IntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="backup_servers", on_delete=fields.CASCADE
    )
    location: fields.ForeignKeyRelation[Location] = fields.ForeignKeyField(
        "models.Location", related_name="backup_servers", on_delete=fields.CASCADE
    )
    uid = fields.CharField(max_length=100)
    kind = fields.CharEnumField(ServerKind, max_length=24)
    name = fields.CharField(max_length=255)
    version = fields.CharField(max_length=50, default="")
    status = fields.CharEnumField(AgentStatus, max_length=16, default=AgentStatus.UNKNOWN)
    last_heartbeat_at = fields.DatetimeField(null=True)
    # As a computer's: the batch that last wrote (or confirmed) the name and version (the
    # heartbeat has its own time). NULL: before 0016.
    reported_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "backup_servers"
        unique_together = (("company", "uid"),)
        ordering = ["id"]


class AgentKey(Model):
    """The key a backup server or agent reports in with: bound to one company (and a location
    that new computers land in). Shown once, stored as SHA-256, revocable."""

    id = fields.IntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="agent_keys", on_delete=fields.CASCADE
    )
    location: fields.ForeignKeyRelation[Location] = fields.ForeignKeyField(
        "models.Location", related_name="agent_keys", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    prefix = fields.CharField(max_length=16, unique=True)
    key_hash = fields.CharField(max_length=64)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="agent_keys", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "agent_keys"
        ordering = ["id"]
