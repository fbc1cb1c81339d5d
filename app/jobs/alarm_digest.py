"""alarms.digest: the daily e-mail summarising an organization's open alarms, run hourly.

Each run serves the organizations whose settings have the digest on and whose digest_hour is
the run's UTC hour (the hour the job was created, or params "at", an ISO time): one e-mail per
recipient (the same users as the alarms' own e-mails: roles of email_roles, limited users
see only their companies or locations) with the counts of open alarms by severity and the
newest 20. Organizations without open alarms, or silenced by a maintenance window (their own
or one above them), get nothing.

Idempotent and resumable: the dedup key `alarm-digest:<org>:<date>:<user>` makes a repeated
run queue nothing new, and the checkpoint keeps the last organization done.
Cost per organization: its open-alarm counts and newest alarms (two queries, again per
limited recipient), the recipients (one or two) and one INSERT.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.functions import Count
from tortoise.transactions import in_transaction

from app.alarms.notify import (
    SEVERITY_RANK,
    Recipient,
    is_silenced,
    open_windows,
    organization_rows,
    recipients_of,
)
from app.authz.matrix import Functionality
from app.db import connection_name
from app.jobs.context import JobContext, JobFailed
from app.jobs.registry import JobKind, register
from app.models.alarms import Alarm, AlarmNotificationSettings, AlarmSeverity, AlarmStatus
from app.models.billing import OutboxChannel
from app.services.outbox import Outgoing, enqueue_many

KIND = "alarms.digest"
NEWEST = 20
SHOWN = [AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED]  # open and raised (not pending)


def run_hour(ctx: JobContext) -> datetime:
    raw = ctx.params.get("at")
    if raw:
        try:
            at = datetime.fromisoformat(str(raw))
        except ValueError:
            raise JobFailed("params.at: an ISO date and time") from None
        if at.tzinfo is None:
            raise JobFailed("params.at: a time with a time zone")
    else:
        at = ctx.job.created_at  # a retry hours later still serves the hour it was made for
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _open_alarms(owner_id: int, recipient: Recipient | None):  # -> QuerySet[Alarm]
    query = Alarm.filter(template__owner_id=owner_id, status__in=SHOWN)
    if recipient is not None and recipient.companies is not None:
        query = query.filter(organization_id__in=sorted(recipient.companies))
    if recipient is not None and recipient.locations is not None:
        query = query.filter(location_id__in=sorted(recipient.locations))
    return query


async def summary(owner_id: int, recipient: Recipient | None) -> tuple[dict[str, int], list]:
    """Counts of open alarms by severity and the newest ones (for one limited recipient, or
    for everyone who sees the whole organization)."""
    counted = (
        await _open_alarms(owner_id, recipient)
        .annotate(n=Count("id"))
        .group_by("severity")
        .values_list("severity", "n")
    )
    counts = {s.value: 0 for s in AlarmSeverity}
    for severity, n in counted:
        counts[AlarmSeverity(severity).value] = int(n)
    newest = (
        await _open_alarms(owner_id, recipient)
        .order_by("-last_seen_at", "-id")
        .limit(NEWEST)
        .values(
            "id", "severity", "status", "object_name", "message", "last_seen_at", "template__name"
        )
    )
    return counts, newest


def _body(name: str, org_name: str, day: str, counts: dict[str, int], newest: list) -> str:
    total = sum(counts.values())
    by_severity = ", ".join(
        f"{counts[s.value]} {s.value.lower()}"
        for s in sorted(AlarmSeverity, key=lambda s: -SEVERITY_RANK[s])
    )
    lines = [
        f"Hello {name},",
        "",
        f"Open alarms of {org_name} on {day}: {total} ({by_severity}).",
        "",
        f"The newest {min(len(newest), NEWEST)}:",
    ]
    for a in newest:
        seen = a["last_seen_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        lines.append(
            f"- [{a['severity']}] {a['template__name']}: {a['object_name']} "
            f"({a['status']}, last seen {seen} UTC) {a['message']}"
        )
    return "\n".join(lines) + "\n"


async def digest_for(
    owner_id: int, org_name: str, settings: AlarmNotificationSettings, day: str
) -> int:
    """Queue one organization's digests; how many e-mails."""
    recipients = (await recipients_of({owner_id: settings})).get(owner_id, [])
    roles = set(settings.email_roles)
    shared: tuple[dict[str, int], list] | None = None
    messages: list[Outgoing] = []
    for role, r in recipients:
        if role not in roles:
            continue
        limited = r.companies is not None or r.locations is not None
        if limited:
            counts, newest = await summary(owner_id, r)
        else:
            shared = shared or await summary(owner_id, None)
            counts, newest = shared
        if not sum(counts.values()):
            continue
        messages.append(
            Outgoing(
                channel=OutboxChannel.EMAIL,
                recipient=r.email,
                subject=f"Alarm digest for {org_name}, {day}: {sum(counts.values())} open",
                body=_body(r.name, org_name, day, counts, newest),
                dedup_key=f"alarm-digest:{owner_id}:{day}:{r.user_id}",
                organization_id=owner_id,
                payload={"event": "alarm-digest", "date": day},
            )
        )
    async with in_transaction(connection_name()):
        await enqueue_many(messages)
    return len(messages)


async def digest(ctx: JobContext) -> dict[str, Any]:
    hour = run_hour(ctx)
    day = hour.date().isoformat()
    point = dict(ctx.checkpoint)
    after = int(point.get("after", 0))
    sent = int(point.get("sent", 0))
    due = {
        s.organization_id: s  # type: ignore[attr-defined]
        for s in await AlarmNotificationSettings.filter(
            digest=True, digest_hour=hour.hour, organization_id__gt=after
        ).order_by("organization_id")
    }
    organizations = await organization_rows(due)
    silenced = await open_windows(organizations, datetime.now(UTC))
    for index, (org_id, settings) in enumerate(due.items()):
        await ctx.step(f"organization {org_id}")
        if not is_silenced(org_id, organizations, silenced):
            sent += await digest_for(org_id, organizations[org_id]["name"], settings, day)
        await ctx.progress(
            100 * (index + 1) / len(due), f"organization {org_id}", {"after": org_id, "sent": sent}
        )
    return {"hour": hour.isoformat(), "organizations": len(due), "emails": sent}


ALARM_DIGEST = register(
    JobKind(
        name=KIND,
        label="Send the daily alarm digests",
        functionality=Functionality.ACTIVE_ALARMS,
        handler=digest,
        time_limit_seconds=1800,
        max_attempts=3,
    )
)
