"""Veeam Cloud Connect resources: what a provider configures (repositories, gateways,
certificates, hardware plans, VLANs, public IPs) and what it hands to tenants (tenant accounts,
quotas, subtenants, plan subscriptions, allocations, replicas, remote sessions)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from app.models.identity import User
from app.models.tenancy import Organization

# --- provider infrastructure ---------------------------------------------------------------


class CloudRepository(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200, unique=True)
    capacity_gb = fields.BigIntField()
    used_gb = fields.BigIntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "cloud_repositories"
        ordering = ["id"]


class GatewayPool(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200, unique=True)

    class Meta:
        table = "gateway_pools"
        ordering = ["id"]


class CloudGateway(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200, unique=True)
    address = fields.CharField(max_length=253)
    port = fields.IntField(default=6180)
    enabled = fields.BooleanField(default=True)
    pool: fields.ForeignKeyNullableRelation[GatewayPool] = fields.ForeignKeyField(
        "models.GatewayPool", related_name="gateways", null=True, on_delete=fields.SET_NULL
    )
    # Concurrent remote sessions the gateway's network redirector can carry.
    redirector_capacity = fields.IntField(default=10)
    # The reachability probe (app.services.gateway_probes): a TCP connect to address:port.
    # `reachable` is None until the gateway's current address and port were probed (a new
    # address or port, or enabling a disabled gateway, clears it).
    reachable = fields.BooleanField(null=True)
    last_probe_at = fields.DatetimeField(null=True)
    last_probe_error = fields.CharField(max_length=300, default="", db_default="")
    last_reachable_at = fields.DatetimeField(null=True)
    probe_latency_ms = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "cloud_gateways"
        ordering = ["id"]


class Certificate(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    certificate_pem = fields.TextField()
    # The private key, encrypted with a key derived from the deployment's secret.
    key_encrypted = fields.TextField()
    subject = fields.CharField(max_length=500)
    issuer = fields.CharField(max_length=500)
    subject_alt_names: fields.Field[list] = fields.JSONField(default=list)  # type: ignore[assignment]
    not_before = fields.DatetimeField()
    not_after = fields.DatetimeField()
    fingerprint_sha256 = fields.CharField(max_length=64, unique=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "certificates"
        ordering = ["id"]


class HardwarePlan(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200, unique=True)
    cpu_mhz = fields.IntField()
    memory_mb = fields.IntField()
    networks_with_internet = fields.IntField(default=0)
    networks_without_internet = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hardware_plans"
        ordering = ["id"]


class HardwarePlanDatastore(Model):
    id = fields.IntField(primary_key=True)
    plan: fields.ForeignKeyRelation[HardwarePlan] = fields.ForeignKeyField(
        "models.HardwarePlan", related_name="datastores", on_delete=fields.CASCADE
    )
    datastore = fields.CharField(max_length=200)
    quota_gb = fields.BigIntField()

    class Meta:
        table = "hardware_plan_datastores"
        unique_together = (("plan", "datastore"),)
        ordering = ["id"]


class VlanRange(Model):
    id = fields.IntField(primary_key=True)
    host = fields.CharField(max_length=200)
    first_id = fields.IntField()
    last_id = fields.IntField()
    internet = fields.BooleanField()

    class Meta:
        table = "vlan_ranges"
        ordering = ["id"]


class PublicIpPool(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200, unique=True)
    first_address = fields.CharField(max_length=45)
    last_address = fields.CharField(max_length=45)

    class Meta:
        table = "public_ip_pools"
        ordering = ["id"]


# --- what tenants get ----------------------------------------------------------------------


class TenantAccountType(StrEnum):
    STANDALONE = "STANDALONE"
    VCD = "VCD"


class GatewaySelection(StrEnum):
    ALL = "ALL"
    POOLS = "POOLS"


class TenantAccount(Model):
    id = fields.IntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="tenant_accounts", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200, unique=True)
    # Fixed at creation.
    type = fields.CharEnumField(TenantAccountType, max_length=16)
    enabled = fields.BooleanField(default=True)
    lease_expires_at = fields.DatetimeField(null=True)
    max_concurrent_tasks = fields.IntField(default=1)
    bandwidth_limit_mbps = fields.IntField(null=True)
    gateway_selection = fields.CharEnumField(
        GatewaySelection, max_length=8, default=GatewaySelection.ALL
    )
    gateway_failover = fields.BooleanField(default=False)
    gateway_pools: fields.ManyToManyRelation[GatewayPool] = fields.ManyToManyField(
        "models.GatewayPool", related_name="tenant_accounts", through="tenant_account_pools"
    )
    password_hash = fields.CharField(max_length=255)
    password_changed_at = fields.DatetimeField(null=True)
    # "Allow this Veeam Backup & Replication installation to be managed by the service provider".
    managed_by_provider = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "tenant_accounts"
        ordering = ["id"]


class BackupResource(Model):
    """A tenant's storage quota on one cloud repository."""

    id = fields.IntField(primary_key=True)
    tenant_account: fields.ForeignKeyRelation[TenantAccount] = fields.ForeignKeyField(
        "models.TenantAccount", related_name="backup_resources", on_delete=fields.CASCADE
    )
    repository: fields.ForeignKeyRelation[CloudRepository] = fields.ForeignKeyField(
        "models.CloudRepository", related_name="backup_resources", on_delete=fields.RESTRICT
    )
    quota_gb = fields.BigIntField()
    used_gb = fields.BigIntField(default=0)

    class Meta:
        table = "backup_resources"
        unique_together = (("tenant_account", "repository"),)
        ordering = ["id"]


class Subtenant(Model):
    """A Subtenant user with a quota inside one of the tenant's backup resources."""

    id = fields.IntField(primary_key=True)
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "models.User", related_name="subtenant", on_delete=fields.CASCADE
    )
    resource: fields.ForeignKeyRelation[BackupResource] = fields.ForeignKeyField(
        "models.BackupResource", related_name="subtenants", on_delete=fields.CASCADE
    )
    # None: unlimited, that is up to the tenant's quota.
    quota_gb = fields.BigIntField(null=True)
    used_gb = fields.BigIntField(default=0)
    enabled = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "subtenants"
        ordering = ["id"]


class HardwarePlanSubscription(Model):
    id = fields.IntField(primary_key=True)
    tenant_account: fields.ForeignKeyRelation[TenantAccount] = fields.ForeignKeyField(
        "models.TenantAccount", related_name="plan_subscriptions", on_delete=fields.CASCADE
    )
    plan: fields.ForeignKeyRelation[HardwarePlan] = fields.ForeignKeyField(
        "models.HardwarePlan", related_name="subscriptions", on_delete=fields.RESTRICT
    )
    # What the subscription uses is not stored: app.services.plan_usage derives it from the
    # replicas bound to it (their disks, and the CPU and memory of those powered on).
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hardware_plan_subscriptions"
        unique_together = (("tenant_account", "plan"),)
        ordering = ["id"]


class VlanAllocation(Model):
    id = fields.IntField(primary_key=True)
    vlan_range: fields.ForeignKeyRelation[VlanRange] = fields.ForeignKeyField(
        "models.VlanRange", related_name="allocations", on_delete=fields.RESTRICT
    )
    # Copied from the range: the uniqueness that matters is per host.
    host = fields.CharField(max_length=200)
    vlan_id = fields.IntField()
    subscription: fields.ForeignKeyRelation[HardwarePlanSubscription] = fields.ForeignKeyField(
        "models.HardwarePlanSubscription", related_name="vlans", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "vlan_allocations"
        unique_together = (("host", "vlan_id"),)
        ordering = ["id"]


class PublicIpAllocation(Model):
    id = fields.IntField(primary_key=True)
    pool: fields.ForeignKeyRelation[PublicIpPool] = fields.ForeignKeyField(
        "models.PublicIpPool", related_name="allocations", on_delete=fields.RESTRICT
    )
    address = fields.CharField(max_length=45, unique=True)
    tenant_account: fields.ForeignKeyRelation[TenantAccount] = fields.ForeignKeyField(
        "models.TenantAccount", related_name="public_ips", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "public_ip_allocations"
        ordering = ["id"]


class ReplicaState(StrEnum):
    READY = "READY"
    FAILOVER = "FAILOVER"
    FAILBACK = "FAILBACK"


class ReplicaKind(StrEnum):
    SNAPSHOT = "SNAPSHOT"
    CDP = "CDP"


class VmReplica(Model):
    id = fields.IntField(primary_key=True)
    tenant_account: fields.ForeignKeyRelation[TenantAccount] = fields.ForeignKeyField(
        "models.TenantAccount", related_name="replicas", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    source_vm = fields.CharField(max_length=200)
    kind = fields.CharEnumField(ReplicaKind, max_length=16, default=ReplicaKind.SNAPSHOT)
    subscription: fields.ForeignKeyNullableRelation[HardwarePlanSubscription] = (
        fields.ForeignKeyField(
            "models.HardwarePlanSubscription",
            related_name="replicas",
            null=True,
            on_delete=fields.SET_NULL,
        )
    )
    state = fields.CharEnumField(ReplicaState, max_length=16, default=ReplicaState.READY)
    # ISO timestamps of the restore points, oldest first.
    restore_points: fields.Field[list] = fields.JSONField(default=list)  # type: ignore[assignment]
    # The replicated VM's resources, in the hardware plan's units: its vCPUs at the host's
    # clock (MHz) and memory count against the plan while it is powered on, its disks always.
    # A database default too: the replicas registered before sizes existed start at 0.
    cpu_mhz = fields.IntField(default=0, db_default=0)
    memory_mb = fields.IntField(default=0, db_default=0)
    storage_gb = fields.BigIntField(default=0, db_default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "vm_replicas"
        unique_together = (("tenant_account", "name"),)
        ordering = ["id"]
        # The usage of a page of subscriptions is one grouped read of their replicas.
        indexes = (("subscription_id", "state"),)


class RemoteConnectionKind(StrEnum):
    REMOTE_CONSOLE = "REMOTE_CONSOLE"
    RDP = "RDP"


class RemoteSession(Model):
    """A remote connection to a tenant's backup server through a gateway's network redirector."""

    id = fields.IntField(primary_key=True)
    tenant_account: fields.ForeignKeyRelation[TenantAccount] = fields.ForeignKeyField(
        "models.TenantAccount", related_name="remote_sessions", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(RemoteConnectionKind, max_length=16)
    gateway: fields.ForeignKeyRelation[CloudGateway] = fields.ForeignKeyField(
        "models.CloudGateway", related_name="remote_sessions", on_delete=fields.CASCADE
    )
    opened_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="remote_sessions", null=True, on_delete=fields.SET_NULL
    )
    endpoint = fields.CharField(max_length=300)
    token_hash = fields.CharField(max_length=64, unique=True)
    opened_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    closed_at = fields.DatetimeField(null=True)
    close_reason = fields.CharField(max_length=100, default="")

    class Meta:
        table = "remote_sessions"
        ordering = ["id"]
        indexes = (("gateway_id", "closed_at"),)
