"""Licensing, the plugin library and Veeam ONE monitoring records."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from app.models.inventory import BackupServer
from app.models.tenancy import Organization


class LicensedProduct(StrEnum):
    AGENT_SERVER = "AGENT_SERVER"  # Veeam Agent, server edition (per computer)
    AGENT_WORKSTATION = "AGENT_WORKSTATION"  # Veeam Agent, workstation edition (per computer)
    VBR_WORKLOAD = "VBR_WORKLOAD"  # workloads protected by Veeam Backup & Replication
    PUBLIC_CLOUD_WORKLOAD = "PUBLIC_CLOUD_WORKLOAD"
    MICROSOFT_365_USER = "MICROSOFT_365_USER"


class LicenseUsage(Model):
    """Units of one product a company used in one month (the highest count seen that month).
    Recomputed from inventory by the licensing job; one row per company, product and month."""

    id = fields.IntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="license_usage", on_delete=fields.CASCADE
    )
    product = fields.CharEnumField(LicensedProduct, max_length=24)
    month = fields.DateField()  # the first day of the month
    units = fields.IntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "license_usage"
        unique_together = (("company", "product", "month"),)
        ordering = ["id"]


class Plugin(Model):
    """An entry of the provider's plugin library."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    version = fields.CharField(max_length=50)
    description = fields.CharField(max_length=1000, default="")
    vendor = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "plugins"
        ordering = ["id"]


class PluginActivation(Model):
    """Whether a plugin is enabled for one organization (reseller or company). `set_by` is the
    organization whose user last set the row: a disabled row set by an organization above the
    row's own is the parent's decision, which the organization's own users cannot undo."""

    id = fields.IntField(primary_key=True)
    plugin: fields.ForeignKeyRelation[Plugin] = fields.ForeignKeyField(
        "models.Plugin", related_name="activations", on_delete=fields.CASCADE
    )
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="plugin_activations", on_delete=fields.CASCADE
    )
    enabled = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)
    set_by: fields.ForeignKeyNullableRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="plugin_decisions", null=True, on_delete=fields.SET_NULL
    )

    class Meta:
        table = "plugin_activations"
        unique_together = (("plugin", "organization"),)
        ordering = ["id"]


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class VeeamOneRecord(Model):
    """A monitoring record reported by a company's Veeam ONE server: read-only in the API."""

    id = fields.BigIntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="veeam_one_records", on_delete=fields.CASCADE
    )
    location_id = fields.IntField()
    server: fields.ForeignKeyRelation[BackupServer] = fields.ForeignKeyField(
        "models.BackupServer", related_name="veeam_one_records", on_delete=fields.CASCADE
    )
    uid = fields.CharField(max_length=100)
    object_name = fields.CharField(max_length=255)
    metric = fields.CharField(max_length=100)
    value = fields.FloatField(null=True)
    severity = fields.CharEnumField(Severity, max_length=8, default=Severity.INFO)
    message = fields.CharField(max_length=1000, default="")
    recorded_at = fields.DatetimeField()

    class Meta:
        table = "veeam_one_records"
        unique_together = (("server", "uid"),)
        indexes = (("company_id", "recorded_at"),)
