"""GraphQL for alarm notifications: the e-mail settings of an organization, its signed webhooks
(the secret is shown once, when created or rotated) and its maintenance windows. The rules are
in app.services.alarm_notifications; delivery in app.alarms.notify and the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.authz.capabilities import ALARM_SETTINGS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.alarms.types import AlarmSeverityEnum
from app.graphql.common import Node, actor, principal, register_node, viewer_can
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, pk_of, to_global_id
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.graphql.workloads.plugins import organization_pk
from app.models import Organization
from app.models.alarms import (
    AlarmNotificationSettings,
    AlarmSeverity,
    AlarmWebhook,
    MaintenanceWindow,
)
from app.services import alarm_notifications as service

Info = strawberry.Info[Context, Any]


def _org_gid(org: Organization) -> strawberry.ID:
    return strawberry.ID(to_global_id(ORG_TYPE_NAMES[org.kind], org.id))


def _org_pk(global_id: strawberry.ID | None, field: str) -> int | None:
    return None if global_id is None else organization_pk(global_id, field)


@strawberry.type(name="AlarmNotificationSettings")
class AlarmNotificationSettingsType:
    organization_id: strawberry.ID
    organization_name: str
    email_roles: list[str] = strawberry.field(
        description="Roles of the organization's portal whose users get its alarms by e-mail."
    )
    selectable_roles: list[str] = strawberry.field(
        description="The roles that may be chosen: those that see every alarm."
    )
    min_severity: AlarmSeverityEnum  # type: ignore[valid-type]
    digest: bool = strawberry.field(description="A daily e-mail summarising the open alarms.")
    digest_hour: int = strawberry.field(description="The hour (UTC) the digest is sent.")
    _org: strawberry.Private[Organization]

    @classmethod
    def from_row(cls, row: AlarmNotificationSettings) -> AlarmNotificationSettingsType:
        org = row.organization
        return cls(
            organization_id=_org_gid(org),
            organization_name=org.name,
            email_roles=list(row.email_roles),
            selectable_roles=service.selectable_roles(org),
            min_severity=row.min_severity,
            digest=row.digest,
            digest_hour=row.digest_hour,
            _org=org,
        )

    @strawberry.field
    def viewer_can_update(self, info: Info) -> bool:
        return viewer_can(info, ALARM_SETTINGS, Action.UPDATE, service.target(self._org))


@strawberry.type(name="AlarmWebhook")
class AlarmWebhookType(Node):
    id: strawberry.ID
    organization_id: strawberry.ID
    name: str
    url: str
    enabled: bool
    min_severity: AlarmSeverityEnum  # type: ignore[valid-type]
    created_at: datetime

    @classmethod
    def from_row(cls, row: AlarmWebhook) -> AlarmWebhookType:
        return cls(
            id=strawberry.ID(to_global_id("AlarmWebhook", row.id)),
            organization_id=_org_gid(row.organization),
            name=row.name,
            url=row.url,
            enabled=row.enabled,
            min_severity=row.min_severity,
            created_at=row.created_at,
        )


@strawberry.type(name="MaintenanceWindow")
class MaintenanceWindowType(Node):
    id: strawberry.ID
    organization_id: strawberry.ID
    organization_name: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: MaintenanceWindow) -> MaintenanceWindowType:
        return cls(
            id=strawberry.ID(to_global_id("MaintenanceWindow", row.id)),
            organization_id=_org_gid(row.organization),
            organization_name=row.organization.name,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            reason=row.reason,
            created_at=row.created_at,
        )


@strawberry.type
class AlarmWebhookSecretPayload:
    webhook: AlarmWebhookType
    secret: str = strawberry.field(
        description=(
            "The HMAC-SHA256 key of the X-Tenantry-Signature header, shown only now. The header"
            " signs the X-Tenantry-Timestamp value, a full stop, then the exact body bytes;"
            " reject timestamps more than 5 minutes from your clock (replays)."
        )
    )


@strawberry.input
class AlarmNotificationSettingsInput:
    organization_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: your own organization."
    )
    email_roles: list[str]
    min_severity: AlarmSeverityEnum  # type: ignore[valid-type]
    digest: bool = False
    digest_hour: int = 7


@strawberry.input
class AlarmWebhookCreateInput:
    organization_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: your own organization."
    )
    name: str
    url: str = strawberry.field(description="An http:// or https:// URL.")
    min_severity: AlarmSeverityEnum = AlarmSeverity.WARNING  # type: ignore[valid-type]


@strawberry.input
class AlarmWebhookUpdateInput:
    id: strawberry.ID
    name: str | None = None
    url: str | None = None
    min_severity: AlarmSeverityEnum | None = None  # type: ignore[valid-type]
    enabled: bool | None = None


@strawberry.input
class MaintenanceWindowCreateInput:
    organization_id: strawberry.ID
    starts_at: datetime
    ends_at: datetime = strawberry.field(description="After startsAt, at most 30 days later.")
    reason: str = ""


async def _webhook(p: Principal, pk: int) -> AlarmWebhookType:
    return AlarmWebhookType.from_row(await service.webhook_in_scope(p, pk))


async def _window(p: Principal, pk: int) -> MaintenanceWindowType:
    return MaintenanceWindowType.from_row(await service.window_in_scope(p, pk))


register_node("AlarmWebhook", ALARM_SETTINGS, _webhook)
register_node("MaintenanceWindow", ALARM_SETTINGS, _window)


@strawberry.type
class AlarmNotificationQuery:
    @strawberry.field(extensions=guard(ALARM_SETTINGS, Action.READ))
    async def alarm_notification_settings(
        self, info: Info, organization_id: strawberry.ID | None = None
    ) -> AlarmNotificationSettingsType | None:
        row = await service.settings_for(
            principal(info), _org_pk(organization_id, "organizationId")
        )
        return AlarmNotificationSettingsType.from_row(row)

    @strawberry.field(extensions=guard(ALARM_SETTINGS, Action.READ))
    async def alarm_webhooks(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        organization_id: strawberry.ID | None = None,
    ) -> Connection[AlarmWebhookType] | None:
        query = service.webhooks_q(principal(info), _org_pk(organization_id, "organizationId"))
        return await paginate(
            query.select_related("organization"), first, after, AlarmWebhookType.from_row
        )

    @strawberry.field(extensions=guard(ALARM_SETTINGS, Action.READ))
    async def maintenance_windows(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        organization_id: strawberry.ID | None = None,
    ) -> Connection[MaintenanceWindowType] | None:
        query = service.windows_q(principal(info), _org_pk(organization_id, "organizationId"))
        return await paginate(
            query.select_related("organization"),
            first,
            after,
            MaintenanceWindowType.from_row,
            descending=True,
        )


@strawberry.type
class AlarmNotificationMutation:
    @strawberry.mutation(extensions=guard(ALARM_SETTINGS, Action.UPDATE))
    async def alarm_notification_settings_set(
        self, info: Info, input: AlarmNotificationSettingsInput
    ) -> AlarmNotificationSettingsType:
        row = await service.set_settings(
            actor(info),
            _org_pk(input.organization_id, "input.organizationId"),
            input.email_roles,
            AlarmSeverity(input.min_severity),
            input.digest,
            input.digest_hour,
        )
        return AlarmNotificationSettingsType.from_row(row)

    @strawberry.mutation(
        extensions=guard(ALARM_SETTINGS, Action.CREATE),
        description="A signed webhook for an organization's alarms; its secret is returned once.",
    )
    async def alarm_webhook_create(
        self, info: Info, input: AlarmWebhookCreateInput
    ) -> AlarmWebhookSecretPayload:
        made = await service.create_webhook(
            actor(info),
            _org_pk(input.organization_id, "input.organizationId"),
            input.name,
            input.url,
            AlarmSeverity(input.min_severity),
        )
        return AlarmWebhookSecretPayload(
            webhook=AlarmWebhookType.from_row(made.webhook), secret=made.secret
        )

    @strawberry.mutation(extensions=guard(ALARM_SETTINGS, Action.UPDATE))
    async def alarm_webhook_update(
        self, info: Info, input: AlarmWebhookUpdateInput
    ) -> AlarmWebhookType:
        row = await service.update_webhook(
            actor(info),
            pk_of(input.id, "AlarmWebhook", "input.id"),
            name=input.name,
            url=input.url,
            min_severity=AlarmSeverity(input.min_severity) if input.min_severity else None,
            enabled=input.enabled,
        )
        return AlarmWebhookType.from_row(row)

    @strawberry.mutation(
        extensions=guard(ALARM_SETTINGS, Action.UPDATE),
        description="A new secret for the webhook, returned once; the old one stops working.",
    )
    async def alarm_webhook_rotate_secret(
        self, info: Info, id: strawberry.ID
    ) -> AlarmWebhookSecretPayload:
        made = await service.rotate_webhook_secret(actor(info), pk_of(id, "AlarmWebhook"))
        return AlarmWebhookSecretPayload(
            webhook=AlarmWebhookType.from_row(made.webhook), secret=made.secret
        )

    @strawberry.mutation(extensions=guard(ALARM_SETTINGS, Action.DELETE))
    async def alarm_webhook_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await service.delete_webhook(actor(info), pk_of(id, "AlarmWebhook"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(ALARM_SETTINGS, Action.CREATE),
        description="Silences the notifications (not the alarms) of an organization and of the "
        "organizations below it between startsAt and endsAt.",
    )
    async def maintenance_window_create(
        self, info: Info, input: MaintenanceWindowCreateInput
    ) -> MaintenanceWindowType:
        row = await service.create_window(
            actor(info),
            organization_pk(input.organization_id, "input.organizationId"),
            input.starts_at,
            input.ends_at,
            input.reason,
        )
        return MaintenanceWindowType.from_row(row)

    @strawberry.mutation(extensions=guard(ALARM_SETTINGS, Action.DELETE))
    async def maintenance_window_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await service.delete_window(actor(info), pk_of(id, "MaintenanceWindow"))
        return DeletePayload(deleted_id=id)
