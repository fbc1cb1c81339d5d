"""maintenance.purge: the platform's housekeeping (organization None), run by the scheduler.

Deletes session tokens expired or revoked more than a day ago, login throttle counters whose
window has passed, finished jobs older than 30 days, and writes down remote sessions whose
time ran out (they already count as closed; this frees their rows for reporting). Each step is a bulk DELETE, so a
re-run after a crash simply deletes what is left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import Q

from app.auth import throttle
from app.authz.matrix import Functionality
from app.jobs.context import JobContext
from app.jobs.registry import JobKind, register
from app.models import Job, SessionToken
from app.models.jobs import FINISHED
from app.services import remote

SESSION_GRACE = timedelta(days=1)
JOB_RETENTION = timedelta(days=30)


async def purge(ctx: JobContext) -> dict[str, Any]:
    at = datetime.now(UTC)
    counts: dict[str, int] = dict(ctx.checkpoint.get("counts", {}))

    await ctx.step("sessions")
    old = at - SESSION_GRACE
    counts["sessions"] = (
        counts.get("sessions", 0)
        + await SessionToken.filter(Q(expires_at__lt=old) | Q(revoked_at__lt=old)).delete()
    )
    await ctx.progress(33, "expired sessions deleted", {"counts": counts})

    await ctx.step("login throttle")
    counts["login_throttle"] = counts.get("login_throttle", 0) + await throttle.purge_expired()
    await ctx.progress(50, "login throttle counters deleted", {"counts": counts})

    await ctx.step("remote sessions")
    counts["remote_sessions"] = counts.get("remote_sessions", 0) + await remote.expire_sessions(at)
    await ctx.progress(75, "expired remote sessions closed", {"counts": counts})

    await ctx.step("jobs")
    counts["jobs"] = (
        counts.get("jobs", 0)
        + await Job.filter(
            state__in=[s.value for s in FINISHED], finished_at__lt=at - JOB_RETENTION
        ).delete()
    )
    await ctx.progress(100, "old jobs deleted", {"counts": counts})
    return counts


PURGE = register(
    JobKind(
        name="maintenance.purge",
        label="Purge expired sessions, login counters and old jobs",
        functionality=Functionality.CONFIGURATION,
        handler=purge,
        time_limit_seconds=900,
        max_attempts=3,
    )
)
