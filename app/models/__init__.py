"""Tortoise models, one module per domain."""

from app.models.audit import AuditEntry
from app.models.identity import ApiKey, LoginThrottle, SessionToken, User
from app.models.jobs import Job, JobState
from app.models.scheduling import ScheduledTick, SchedulerLease
from app.models.tenancy import Location, Organization, OrgKind

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Job",
    "JobState",
    "Location",
    "LoginThrottle",
    "OrgKind",
    "Organization",
    "ScheduledTick",
    "SchedulerLease",
    "SessionToken",
    "User",
]
