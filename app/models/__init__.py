"""Tortoise models, one module per domain."""

from app.models.audit import AuditEntry
from app.models.cloud import (
    BackupResource,
    Certificate,
    CloudGateway,
    CloudRepository,
    GatewayPool,
    GatewaySelection,
    HardwarePlan,
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    PublicIpAllocation,
    PublicIpPool,
    RemoteConnectionKind,
    RemoteSession,
    ReplicaKind,
    ReplicaState,
    Subtenant,
    TenantAccount,
    TenantAccountType,
    VlanAllocation,
    VlanRange,
    VmReplica,
)
from app.models.identity import ApiKey, LoginThrottle, SessionToken, User
from app.models.jobs import Job, JobState
from app.models.reseller_resources import (
    ResellerHardwarePlan,
    ResellerIpPoolQuota,
    ResellerRepositoryQuota,
)
from app.models.scheduling import ScheduledTick, SchedulerLease
from app.models.tenancy import Location, Organization, OrgKind

__all__ = [
    "ApiKey",
    "AuditEntry",
    "BackupResource",
    "Certificate",
    "CloudGateway",
    "CloudRepository",
    "GatewayPool",
    "GatewaySelection",
    "HardwarePlan",
    "HardwarePlanDatastore",
    "HardwarePlanSubscription",
    "Job",
    "JobState",
    "Location",
    "LoginThrottle",
    "OrgKind",
    "Organization",
    "PublicIpAllocation",
    "PublicIpPool",
    "RemoteConnectionKind",
    "RemoteSession",
    "ReplicaKind",
    "ReplicaState",
    "ResellerHardwarePlan",
    "ResellerIpPoolQuota",
    "ResellerRepositoryQuota",
    "ScheduledTick",
    "SchedulerLease",
    "SessionToken",
    "Subtenant",
    "TenantAccount",
    "TenantAccountType",
    "User",
    "VlanAllocation",
    "VlanRange",
    "VmReplica",
]
