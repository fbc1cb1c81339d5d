"""The tenant tree: one service provider (root) → resellers → companies → locations."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class OrgKind(StrEnum):
    PROVIDER = "PROVIDER"
    RESELLER = "RESELLER"
    COMPANY = "COMPANY"


class Organization(Model):
    """A provider, reseller or company. Companies sit under the provider or under a reseller."""

    id = fields.IntField(primary_key=True)
    kind = fields.CharEnumField(OrgKind, max_length=16, db_index=True)
    name = fields.CharField(max_length=200)
    parent: fields.ForeignKeyNullableRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="children", null=True, on_delete=fields.RESTRICT
    )
    # Own switch; the effective state also needs every ancestor enabled (see `effective_enabled`).
    enabled = fields.BooleanField(default=True)
    email = fields.CharField(max_length=254, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    # Backup as a Service: the provider manages the company's tenant-side configuration.
    # (Last, like the column a migration adds, so generated and migrated schemas agree.)
    baas = fields.BooleanField(default=False)

    class Meta:
        table = "organizations"
        unique_together = (("parent", "name"),)
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind.value.title()} {self.name}"


class Location(Model):
    id = fields.IntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="locations", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    is_default = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "locations"
        unique_together = (("company", "name"),)
        ordering = ["id"]
