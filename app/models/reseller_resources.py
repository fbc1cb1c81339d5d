"""What the provider hands to a reseller for its companies: storage on cloud repositories,
the hardware plans it may subscribe its companies' tenants to, and public IP addresses.

Tenant accounts of companies under a reseller are capped by these (app.services.
reseller_resources); companies directly under the provider are not.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from app.models.cloud import CloudRepository, HardwarePlan, PublicIpPool
from app.models.tenancy import Organization


class ResellerRepositoryQuota(Model):
    """Storage on one cloud repository the reseller may hand out to its companies' tenants."""

    id = fields.IntField(primary_key=True)
    reseller: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="repository_quotas", on_delete=fields.CASCADE
    )
    repository: fields.ForeignKeyRelation[CloudRepository] = fields.ForeignKeyField(
        "models.CloudRepository", related_name="reseller_quotas", on_delete=fields.CASCADE
    )
    quota_gb = fields.BigIntField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "reseller_repository_quotas"
        unique_together = (("reseller", "repository"),)
        ordering = ["id"]


class ResellerHardwarePlan(Model):
    """A hardware plan the reseller may subscribe its companies' tenants to."""

    id = fields.IntField(primary_key=True)
    reseller: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="hardware_plans", on_delete=fields.CASCADE
    )
    plan: fields.ForeignKeyRelation[HardwarePlan] = fields.ForeignKeyField(
        "models.HardwarePlan", related_name="reseller_grants", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "reseller_hardware_plans"
        unique_together = (("reseller", "plan"),)
        ordering = ["id"]


class ResellerIpPoolQuota(Model):
    """How many addresses of one public IP pool the reseller's companies may hold together."""

    id = fields.IntField(primary_key=True)
    reseller: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="ip_pool_quotas", on_delete=fields.CASCADE
    )
    pool: fields.ForeignKeyRelation[PublicIpPool] = fields.ForeignKeyField(
        "models.PublicIpPool", related_name="reseller_quotas", on_delete=fields.CASCADE
    )
    max_addresses = fields.IntField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "reseller_ip_pool_quotas"
        unique_together = (("reseller", "pool"),)
        ordering = ["id"]
