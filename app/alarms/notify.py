"""Alarm notifications: e-mails and signed webhooks queued in the outbox, inside the transaction
of the evaluation (or the user's action) that changed the alarm.

Who is told: the organization that watches the alarm is its template's owner (the provider,
a reseller or a company, each configuring its own portal's templates).
* E-mail: the owner's enabled users whose role name is one of its
  AlarmNotificationSettings.email_roles (names from the matrix data, checked when saved),
  when the alarm's severity reaches the settings' min_severity. A user limited to some
  companies or locations is told only about alarms of those.
* Webhooks: the owner's enabled AlarmWebhooks whose min_severity the alarm reaches, POSTed by
  the outbox with an HMAC-SHA256 signature keyed by the webhook's own secret (stored
  encrypted, looked up at delivery through the "alarm_webhook" secret source).

What is told: an alarm raised (TRIGGERED, also PENDING → ACTIVE), a severity change and a
resolution (by hand or automatic). Repeats, acknowledgements and pending alarms are not.

Silence: nothing is queued while a maintenance window is open for the alarm's organization,
one above it (company → reseller → provider) or the owner. The alarm itself still fires.

Dedup keys: `alarm:<alarm id>:<change>:<occurrence>:<recipient>` (recipient `u<user id>` or
`w<webhook id>`; occurrence: the history event's id when the caller gives it, else 1 for a
raise or a resolution, which happen once per alarm row, and `<occurrences>-<severity>` for a
severity change), so evaluating again never notifies twice.

Cost: `notify_many` reads templates, organizations, open windows, settings, users, webhooks
(and locations and limited users' scopes when needed) once for the whole batch, then one
INSERT: constant in the number of alarms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.models import Location, Organization, User
from app.models.alarms import (
    Alarm,
    AlarmChange,
    AlarmNotificationSettings,
    AlarmSeverity,
    AlarmStatus,
    AlarmTemplate,
    AlarmWebhook,
    MaintenanceWindow,
)
from app.models.billing import OutboxChannel
from app.services import certificates, outbox, outbox_webhook

SECRET_SOURCE = "alarm_webhook"
NOTIFYING = frozenset(
    {
        AlarmChange.TRIGGERED,
        AlarmChange.SEVERITY_CHANGED,
        AlarmChange.RESOLVED,
        AlarmChange.AUTO_RESOLVED,
    }
)
SEVERITY_RANK = {AlarmSeverity.INFO: 0, AlarmSeverity.WARNING: 1, AlarmSeverity.ERROR: 2}
_VERB = {
    AlarmChange.TRIGGERED: "raised",
    AlarmChange.SEVERITY_CHANGED: "severity changed",
    AlarmChange.RESOLVED: "resolved",
    AlarmChange.AUTO_RESOLVED: "resolved automatically",
}


def reaches(severity: AlarmSeverity | str, minimum: AlarmSeverity | str) -> bool:
    return SEVERITY_RANK[AlarmSeverity(severity)] >= SEVERITY_RANK[AlarmSeverity(minimum)]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- webhook secrets ------------------------------------------------------------------------


def seal_secret(secret: str) -> str:
    return certificates.encrypt_key(secret.encode())


def open_secret(sealed: str) -> str:
    return certificates.decrypt_key(sealed).decode()


async def webhook_secret(key: str) -> str | None:
    """The outbox's lookup: "<webhook id>" → the webhook's secret (None: no such webhook)."""
    if not key.isdigit():
        return None
    sealed = await AlarmWebhook.filter(id=int(key)).values_list("secret_encrypted", flat=True)
    return open_secret(str(sealed[0])) if sealed else None


outbox_webhook.register_secret_source(SECRET_SOURCE, webhook_secret)


# --- who and what ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    user_id: int
    email: str
    name: str
    companies: frozenset[int] | None  # None: the whole organization's tree
    locations: frozenset[int] | None

    def sees(self, alarm: Alarm) -> bool:
        if self.companies is not None and alarm.organization_id not in self.companies:
            return False
        return self.locations is None or alarm.location_id in self.locations


@dataclass
class Batch:
    """What one batch of alarms needs, read once."""

    templates: dict[int, dict[str, Any]]
    organizations: dict[int, dict[str, Any]]
    silenced: set[int]
    settings: dict[int, AlarmNotificationSettings]
    recipients: dict[int, list[tuple[str, Recipient]]]  # owner → (role, recipient)
    webhooks: dict[int, list[dict[str, Any]]]
    locations: dict[int, str]


def _chain(org_id: int, organizations: dict[int, dict[str, Any]]) -> list[int]:
    row = organizations.get(org_id)
    if row is None:
        return [org_id]
    return [i for i in (org_id, row["parent_id"], row["parent__parent_id"]) if i is not None]


async def recipients_of(
    settings: dict[int, AlarmNotificationSettings],
) -> dict[int, list[tuple[str, Recipient]]]:
    wanted = {org: set(s.email_roles) for org, s in settings.items() if s.email_roles}
    if not wanted:
        return {}
    roles = sorted(set().union(*wanted.values()))
    users = (
        await User.filter(organization_id__in=sorted(wanted), enabled=True, role__in=roles)
        .order_by("id")
        .values("id", "email", "name", "role", "organization_id", "scope_restricted")
    )
    users = [u for u in users if u["role"] in wanted[u["organization_id"]]]
    limited = [u["id"] for u in users if u["scope_restricted"]]
    companies: dict[int, set[int]] = {}
    locations: dict[int, set[int]] = {}
    if limited:
        through = await User.filter(id__in=limited).values_list(
            "id", "scope_companies__id", "scope_locations__id"
        )
        for user_id, company_id, location_id in through:
            if company_id is not None:
                companies.setdefault(user_id, set()).add(company_id)
            if location_id is not None:
                locations.setdefault(user_id, set()).add(location_id)
    out: dict[int, list[tuple[str, Recipient]]] = {}
    for u in users:
        restricted = bool(u["scope_restricted"])
        cs, ls = companies.get(u["id"]), locations.get(u["id"])
        recipient = Recipient(
            user_id=u["id"],
            email=u["email"],
            name=u["name"],
            # Limited to nothing listed: limited to nothing at all.
            companies=frozenset(cs or ()) if restricted and (cs or not ls) else None,
            locations=frozenset(ls) if restricted and ls else None,
        )
        out.setdefault(u["organization_id"], []).append((u["role"], recipient))
    return out


async def organization_rows(org_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Id, name, parent and grandparent of each organization."""
    rows = await Organization.filter(id__in=sorted(set(org_ids))).values(
        "id", "name", "parent_id", "parent__parent_id"
    )
    return {o["id"]: o for o in rows}


async def open_windows(organizations: dict[int, dict[str, Any]], now: datetime) -> set[int]:
    """Those of the organizations and the ones above them with a maintenance window open."""
    watched = sorted({i for org in organizations for i in _chain(org, organizations)})
    return {
        int(str(i))
        for i in await MaintenanceWindow.filter(
            organization_id__in=watched, starts_at__lte=now, ends_at__gt=now
        ).values_list("organization_id", flat=True)
    }


def is_silenced(org_id: int, organizations: dict[int, dict[str, Any]], silenced: set[int]) -> bool:
    return bool(set(_chain(org_id, organizations)) & silenced)


async def load_batch(alarms: Sequence[Alarm], now: datetime) -> Batch:
    template_ids = sorted({a.template_id for a in alarms})  # type: ignore[attr-defined]
    templates = {
        t["id"]: t
        for t in await AlarmTemplate.filter(id__in=template_ids).values(
            "id", "owner_id", "catalogue_key", "name"
        )
    }
    owners = sorted({t["owner_id"] for t in templates.values()})
    org_ids = sorted({a.organization_id for a in alarms} | set(owners))
    organizations = await organization_rows(org_ids)
    silenced = await open_windows(organizations, now)
    settings = {
        s.organization_id: s  # type: ignore[attr-defined]
        for s in await AlarmNotificationSettings.filter(organization_id__in=owners)
    }
    webhooks: dict[int, list[dict[str, Any]]] = {}
    for w in await AlarmWebhook.filter(organization_id__in=owners, enabled=True).values(
        "id", "organization_id", "url", "min_severity"
    ):
        webhooks.setdefault(w["organization_id"], []).append(w)
    location_ids = sorted({a.location_id for a in alarms if a.location_id is not None})
    locations: dict[int, str] = {}
    if location_ids:
        locations = dict(
            await Location.filter(id__in=location_ids).values_list("id", "name")  # type: ignore[arg-type]
        )
    return Batch(
        templates=templates,
        organizations=organizations,
        silenced=silenced,
        settings=settings,
        recipients=await recipients_of(settings),
        webhooks=webhooks,
        locations=locations,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def alarm_json(alarm: Alarm, change: AlarmChange, batch: Batch) -> dict[str, Any]:
    """The webhook body (and the facts of the e-mail)."""
    template = batch.templates[alarm.template_id]  # type: ignore[attr-defined]
    org = batch.organizations.get(alarm.organization_id, {})
    location = None
    if alarm.location_id is not None:
        location = {"id": alarm.location_id, "name": batch.locations.get(alarm.location_id, "")}
    return {
        "id": alarm.id,
        "template": {
            "id": template["id"],
            "key": template["catalogue_key"],
            "name": template["name"],
        },
        "severity": AlarmSeverity(alarm.severity).value,
        "status": AlarmStatus(alarm.status).value,
        "change": change.value,
        "object": {"type": alarm.object_type, "id": alarm.object_id, "name": alarm.object_name},
        "organization": {"id": alarm.organization_id, "name": org.get("name", "")},
        "location": location,
        "message": alarm.message,
        "occurrences": alarm.occurrences,
        "times": {
            "firstSeenAt": _iso(alarm.first_seen_at),
            "lastSeenAt": _iso(alarm.last_seen_at),
            "raisedAt": _iso(alarm.raised_at),
            "resolvedAt": _iso(alarm.resolved_at),
        },
    }


def _occurrence(alarm: Alarm, change: AlarmChange, event_id: int | None) -> str:
    if event_id is not None:
        return str(event_id)
    if change is AlarmChange.SEVERITY_CHANGED:
        return f"{alarm.occurrences}-{AlarmSeverity(alarm.severity).value}"
    return "1"


def _subject(data: dict[str, Any], change: AlarmChange) -> str:
    return (
        f"[{data['severity']}] {data['template']['name']}: {data['object']['name']} "
        f"({_VERB[change]})"
    )


def _body(data: dict[str, Any], change: AlarmChange, name: str) -> str:
    where = data["organization"]["name"]
    if data["location"]:
        where += f" / {data['location']['name']}"
    times = data["times"]
    lines = [
        f"Hello {name},",
        "",
        f"Alarm {_VERB[change]}: {data['template']['name']}",
        f"Severity: {data['severity']} (status {data['status']})",
        f"Object: {data['object']['name']} ({data['object']['type']})",
        f"Organization: {where}",
        f"Message: {data['message']}",
        f"First seen: {times['firstSeenAt']}",
        f"Last seen: {times['lastSeenAt']} ({data['occurrences']} times)",
    ]
    if times["resolvedAt"]:
        lines.append(f"Resolved: {times['resolvedAt']}")
    return "\n".join(lines) + "\n"


def _is_told(alarm: Alarm, change: AlarmChange) -> bool:
    if change not in NOTIFYING:
        return False
    if change in {AlarmChange.RESOLVED, AlarmChange.AUTO_RESOLVED}:
        return alarm.raised_at is not None  # a pending alarm that cleared was never told
    return AlarmStatus(alarm.status) is not AlarmStatus.PENDING


def messages_for(
    alarm: Alarm, change: AlarmChange, batch: Batch, event_id: int | None = None
) -> list[outbox.Outgoing]:
    if not _is_told(alarm, change):
        return []
    template = batch.templates.get(alarm.template_id)  # type: ignore[attr-defined]
    if template is None:
        return []
    owner = template["owner_id"]
    if owner in batch.silenced or is_silenced(
        alarm.organization_id, batch.organizations, batch.silenced
    ):
        return []
    data = alarm_json(alarm, change, batch)
    key = f"alarm:{alarm.id}:{change.value}:{_occurrence(alarm, change, event_id)}"
    out: list[outbox.Outgoing] = []
    settings = batch.settings.get(owner)
    if settings is not None and reaches(alarm.severity, settings.min_severity):
        roles = set(settings.email_roles)
        for role, r in batch.recipients.get(owner, []):
            if role in roles and r.sees(alarm):
                out.append(
                    outbox.Outgoing(
                        channel=OutboxChannel.EMAIL,
                        recipient=r.email,
                        subject=_subject(data, change),
                        body=_body(data, change, r.name),
                        dedup_key=f"{key}:u{r.user_id}",
                        organization_id=owner,
                        payload={"event": "alarm", "alarm_id": alarm.id, "change": change.value},
                    )
                )
    for hook in batch.webhooks.get(owner, []):
        if reaches(alarm.severity, hook["min_severity"]):
            out.append(
                outbox.Outgoing(
                    channel=OutboxChannel.WEBHOOK,
                    recipient=hook["url"],
                    subject=_subject(data, change),
                    body="",
                    dedup_key=f"{key}:w{hook['id']}",
                    organization_id=owner,
                    payload={"body": data, "secret_ref": f"{SECRET_SOURCE}:{hook['id']}"},
                )
            )
    return out


async def notify_many(
    changes: Iterable[tuple[Alarm, AlarmChange]] | Iterable[tuple[Alarm, AlarmChange, int | None]],
    now: datetime | None = None,
) -> int:
    """Queue the notifications of many changed alarms (inside the caller's transaction) with
    one read of each kind of configuration; how many messages were queued (duplicates of
    messages queued before are skipped by the outbox and still counted)."""
    items = [(c[0], AlarmChange(c[1]), c[2] if len(c) > 2 else None) for c in changes]  # type: ignore[misc]
    items = [i for i in items if _is_told(i[0], i[1])]
    if not items:
        return 0
    batch = await load_batch([i[0] for i in items], now or utcnow())
    messages = [
        m for alarm, change, event in items for m in messages_for(alarm, change, batch, event)
    ]
    await outbox.enqueue_many(messages)
    return len(messages)


async def notify(alarm: Alarm, change: AlarmChange, event_id: int | None = None) -> int:
    """Queue the notifications of one changed alarm (inside the caller's transaction)."""
    return await notify_many([(alarm, change, event_id)])
