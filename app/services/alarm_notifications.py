"""Configuring alarm notifications of an organization: who is e-mailed (roles of its portal,
by name as in the matrix data), the lowest severity that notifies, the daily digest, signed
webhooks (secret generated here, shown once, stored encrypted) and maintenance windows that
silence the organization and those below it.

Each is for the caller's own organization or one below it in scope (NOT_FOUND otherwise), by
the ALARM_SETTINGS capability; every change is audited.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from app.alarms.notify import open_secret, seal_secret
from app.authz import scope
from app.authz.capabilities import ALARM_SETTINGS, ALARMS
from app.authz.engine import portal_for
from app.authz.matrix import Action, load_matrix
from app.authz.principal import Principal, Target
from app.db import connection_name
from app.errors import BadInput, Conflict, NotFound
from app.models import Organization
from app.models.alarms import (
    AlarmNotificationSettings,
    AlarmSeverity,
    AlarmWebhook,
    MaintenanceWindow,
)
from app.net_guard import PrivateAddress, check_public
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.services.plugins import organization_in_scope
from app.settings import get_settings

MAX_WINDOW = timedelta(days=30)


def target(org: Organization) -> Target:
    return Target(kind=ALARM_SETTINGS.kind, organization_id=org.id, organization_kind=org.kind)


async def _organization(
    p: Principal, org_id: int | None, action: Action, field: str
) -> Organization:
    """The organization asked about (default: the caller's own), in scope and allowed."""
    require(p, ALARM_SETTINGS, action)
    org = await organization_in_scope(p, org_id if org_id is not None else p.organization_id, field)
    require(p, ALARM_SETTINGS, action, target(org))
    return org


# --- e-mail settings ------------------------------------------------------------------------


def selectable_roles(org: Organization) -> list[str]:
    """The roles of the organization's portal whose users may be e-mailed its alarms: those
    whose Active alarms cell reads every alarm (not a rule-limited `Read*`)."""
    portal = portal_for(org.kind, get_settings().enterprise)
    functionality = ALARMS.functionality_for(portal)
    matrix = load_matrix()
    out = []
    for role in matrix.portals[portal].roles:
        cell = matrix.cell(portal, role.name, functionality) if functionality else None
        if cell is not None and Action.READ in cell.actions and cell.rule is None:
            out.append(role.name)
    return out


def _email_roles(org: Organization, names: list[str]) -> list[str]:
    portal = portal_for(org.kind, get_settings().enterprise)
    known = {r.name for r in load_matrix().portals[portal].roles}
    allowed = set(selectable_roles(org))
    out: list[str] = []
    for i, name in enumerate(names):
        name = name.strip()
        field = f"input.emailRoles.{i}"
        if name not in known:
            raise BadInput(f"there is no role {name!r} in the {org.name} portal", field=field)
        if name not in allowed:
            raise BadInput(f"the role {name!r} does not see all alarms", field=field)
        if name not in out:
            out.append(name)
    return out


async def settings_for(p: Principal, org_id: int | None) -> AlarmNotificationSettings:
    """The organization's settings (the defaults, unsaved, when never set)."""
    org = await _organization(p, org_id, Action.READ, "organizationId")
    row = await AlarmNotificationSettings.filter(organization_id=org.id).first()
    if row is None:
        row = AlarmNotificationSettings(organization_id=org.id)
    row.organization = org
    return row


async def set_settings(
    actor: Actor,
    org_id: int | None,
    email_roles: list[str],
    min_severity: AlarmSeverity,
    digest: bool,
    digest_hour: int,
) -> AlarmNotificationSettings:
    org = await _organization(actor.p, org_id, Action.UPDATE, "input.organizationId")
    roles = _email_roles(org, email_roles)
    if not 0 <= digest_hour <= 23:
        raise BadInput("an hour of the day in UTC, 0 to 23", field="input.digestHour")
    severity = AlarmSeverity(min_severity)
    values: dict[str, Any] = {
        "email_roles": roles,
        "min_severity": severity,
        "digest": digest,
        "digest_hour": digest_hour,
    }
    async with audited(
        actor, "alarmNotificationSettingsSet", "AlarmNotificationSettings", org.id, org.id
    ) as entry:
        row = await AlarmNotificationSettings.filter(organization_id=org.id).first()
        if row is None:
            row = await AlarmNotificationSettings.create(organization_id=org.id, **values)
        else:
            await row.update_from_dict(values).save()
        entry.bind(
            org.id,
            emailRoles=roles,
            minSeverity=severity.value,
            digest=digest,
            digestHour=digest_hour,
        )
    row.organization = org
    return row


# --- webhooks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookWithSecret:
    webhook: AlarmWebhook
    secret: str


async def _url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise BadInput("an http:// or https:// URL with a host", field="input.url")
    if len(url) > 1000 or any(c.isspace() for c in url):
        raise BadInput("at most 1000 characters, without spaces", field="input.url")
    try:
        await asyncio.to_thread(check_public, url)  # DNS: off the event loop
    except PrivateAddress as exc:
        raise BadInput(f"webhooks go to public addresses only: {exc}", field="input.url") from None
    return url


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise BadInput("a name of 1 to 100 characters", field="input.name")
    return name


def webhooks_q(p: Principal, org_id: int | None = None) -> QuerySet[AlarmWebhook]:
    query = AlarmWebhook.filter(scope.org_q(p, "organization"))
    return query.filter(organization_id=org_id) if org_id is not None else query


async def webhook_in_scope(p: Principal, webhook_id: int) -> AlarmWebhook:
    row = await webhooks_q(p).filter(id=webhook_id).select_related("organization").first()
    if row is None:
        raise NotFound("alarm webhook")
    return row


def new_secret() -> str:
    return secrets.token_hex(32)  # 32 random bytes


async def _save_webhook(row: AlarmWebhook, create: bool) -> None:
    try:
        async with in_transaction(connection_name()):
            await row.save(force_create=create)
    except IntegrityError:
        raise Conflict(
            "the organization has a webhook with this name", field="input.name"
        ) from None


async def create_webhook(
    actor: Actor, org_id: int | None, name: str, url: str, min_severity: AlarmSeverity
) -> WebhookWithSecret:
    org = await _organization(actor.p, org_id, Action.CREATE, "input.organizationId")
    name, url, secret = _name(name), await _url(url), new_secret()
    async with audited(actor, "alarmWebhookCreate", "AlarmWebhook", "", org.id) as entry:
        row = AlarmWebhook(
            organization_id=org.id,
            name=name,
            url=url,
            min_severity=AlarmSeverity(min_severity),
            secret_encrypted=seal_secret(secret),
        )
        await _save_webhook(row, create=True)
        entry.bind(row.id, name=name, url=url, minSeverity=row.min_severity.value)
    row.organization = org
    return WebhookWithSecret(row, secret)


async def _webhook_for(actor: Actor, webhook_id: int, action: Action) -> AlarmWebhook:
    require(actor.p, ALARM_SETTINGS, action)
    row = await webhook_in_scope(actor.p, webhook_id)
    require(actor.p, ALARM_SETTINGS, action, target(row.organization))
    return row


async def update_webhook(
    actor: Actor,
    webhook_id: int,
    name: str | None = None,
    url: str | None = None,
    min_severity: AlarmSeverity | None = None,
    enabled: bool | None = None,
) -> AlarmWebhook:
    row = await _webhook_for(actor, webhook_id, Action.UPDATE)
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = row.name = _name(name)
    if url is not None:
        changes["url"] = row.url = await _url(url)
    if min_severity is not None:
        row.min_severity = AlarmSeverity(min_severity)
        changes["minSeverity"] = row.min_severity.value
    if enabled is not None:
        changes["enabled"] = row.enabled = enabled
    async with audited(
        actor, "alarmWebhookUpdate", "AlarmWebhook", row.id, row.organization.id
    ) as entry:
        await _save_webhook(row, create=False)
        entry.details.update(changes)
    return row


async def rotate_webhook_secret(actor: Actor, webhook_id: int) -> WebhookWithSecret:
    """A new secret, shown once; messages still waiting are signed with it when delivered."""
    row = await _webhook_for(actor, webhook_id, Action.UPDATE)
    secret = new_secret()
    async with audited(
        actor, "alarmWebhookRotateSecret", "AlarmWebhook", row.id, row.organization.id
    ) as entry:
        row.secret_encrypted = seal_secret(secret)
        await row.save(update_fields=["secret_encrypted"])
        entry.details.update(name=row.name)
    return WebhookWithSecret(row, secret)


async def delete_webhook(actor: Actor, webhook_id: int) -> AlarmWebhook:
    row = await _webhook_for(actor, webhook_id, Action.DELETE)
    async with audited(
        actor, "alarmWebhookDelete", "AlarmWebhook", row.id, row.organization.id
    ) as entry:
        await AlarmWebhook.filter(id=row.id).delete()
        entry.details.update(name=row.name, url=row.url)
    return row


def secret_of(row: AlarmWebhook) -> str:
    """For tests and support tools; the API never shows it again."""
    return open_secret(row.secret_encrypted)


# --- maintenance windows --------------------------------------------------------------------


def windows_q(p: Principal, org_id: int | None = None) -> QuerySet[MaintenanceWindow]:
    query = MaintenanceWindow.filter(scope.org_q(p, "organization"))
    return query.filter(organization_id=org_id) if org_id is not None else query


async def window_in_scope(p: Principal, window_id: int) -> MaintenanceWindow:
    row = await windows_q(p).filter(id=window_id).select_related("organization").first()
    if row is None:
        raise NotFound("maintenance window")
    return row


def _window_times(
    starts_at: datetime, ends_at: datetime, now: datetime
) -> tuple[datetime, datetime]:
    if starts_at.tzinfo is None:
        raise BadInput("a time with a time zone", field="input.startsAt")
    if ends_at.tzinfo is None:
        raise BadInput("a time with a time zone", field="input.endsAt")
    if ends_at <= starts_at:
        raise BadInput("the window must end after it starts", field="input.endsAt")
    if ends_at - starts_at > MAX_WINDOW:
        raise BadInput("a window lasts at most 30 days", field="input.endsAt")
    if ends_at <= now:
        raise BadInput("the window is already over", field="input.endsAt")
    return starts_at.astimezone(UTC), ends_at.astimezone(UTC)


async def create_window(
    actor: Actor,
    org_id: int,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    now: datetime | None = None,
) -> MaintenanceWindow:
    org = await _organization(actor.p, org_id, Action.CREATE, "input.organizationId")
    starts_at, ends_at = _window_times(starts_at, ends_at, now or datetime.now(UTC))
    reason = reason.strip()
    if len(reason) > 500:
        raise BadInput("at most 500 characters", field="input.reason")
    async with audited(actor, "maintenanceWindowCreate", "MaintenanceWindow", "", org.id) as entry:
        row = await MaintenanceWindow.create(
            organization_id=org.id,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=reason,
            created_by_id=actor.p.user_id,
        )
        entry.bind(
            row.id, startsAt=starts_at.isoformat(), endsAt=ends_at.isoformat(), reason=reason
        )
    row.organization = org
    return row


async def delete_window(actor: Actor, window_id: int) -> MaintenanceWindow:
    p = actor.p
    require(p, ALARM_SETTINGS, Action.DELETE)
    row = await window_in_scope(p, window_id)
    require(p, ALARM_SETTINGS, Action.DELETE, target(row.organization))
    async with audited(
        actor, "maintenanceWindowDelete", "MaintenanceWindow", row.id, row.organization.id
    ) as entry:
        await MaintenanceWindow.filter(id=row.id).delete()
        entry.details.update(startsAt=row.starts_at.isoformat(), endsAt=row.ends_at.isoformat())
    return row
