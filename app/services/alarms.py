"""Triggered alarms as users see and handle them: row scope, acknowledge and resolve.

Who sees which alarm (`alarm_q`, always SQL):
- the alarm's organization is in the caller's tree (`scope.org_q`; alarms hold the
  organization id as a plain integer, so the organizations in scope are a subquery);
- the alarm was raised by a template of the caller's own organization or of an organization
  below it in scope: the provider's staff see the alarms of the provider's, resellers' and
  companies' templates; a reseller's, its own and its companies'; a company user only its
  company's. A company does not see the alarms its reseller's templates raise about it:
  those are the reseller's to handle, with the reseller's thresholds;
- a principal limited to locations sees the alarms of those locations only. Company-wide
  alarms (no location: quota, lease, invoice, certificate …) are not about any of its
  locations and stay with the company-wide roles, as workload rows without a location do;
- a principal whose role's scope is its own computers (a Subtenant, `Read*`) sees only
  alarms about computers backing up to one of its Subtenant accounts (`subtenant_id`);
- PENDING alarms (seen fewer times than the template's "trigger after") are never shown.

Acknowledging (ACTIVE → ACKNOWLEDGED) and resolving (ACTIVE or ACKNOWLEDGED → RESOLVED) are
conditional UPDATEs, so a user and the evaluation resolving one alarm at once never both win:
the loser gets CONFLICT.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.expressions import Q, Subquery

from app.alarms.changes import Changes, publish
from app.alarms.notify import notify
from app.authz import scope
from app.authz.capabilities import ALARMS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import BadInput, Conflict, NotFound
from app.models import Organization
from app.models.alarms import Alarm, AlarmChange, AlarmEvent, AlarmStatus, AlarmTemplate
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require

MAX_COMMENT = 1000
ACKNOWLEDGEABLE = (AlarmStatus.ACTIVE,)
RESOLVABLE = (AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED)


def alarm_q(p: Principal) -> Q:
    """Alarms the principal may see (see the module's docstring)."""
    orgs = Organization.filter(scope.org_q(p)).values("id")
    # (An empty Q OR-ed with another is the other alone: the tree goes in as a subquery.)
    templates = AlarmTemplate.filter(
        Q(owner_id__in=Subquery(orgs)) | Q(owner_id=p.organization_id)
    ).values("id")
    q = Q(organization_id__in=Subquery(orgs), template_id__in=Subquery(templates))
    q &= ~Q(status=AlarmStatus.PENDING)
    return q & scope.within_q(p)


async def alarm_in_scope(p: Principal, pk: int) -> Alarm:
    row = await Alarm.filter(alarm_q(p), id=pk).select_related("template").first()
    if row is None:
        raise NotFound("alarm")
    return row


def alarm_target(alarm: Alarm) -> Target:
    return Target(kind=ALARMS.kind, organization_id=alarm.organization_id)


def _comment(comment: str | None) -> str:
    text = (comment or "").strip()
    if len(text) > MAX_COMMENT:
        raise BadInput(f"longer than {MAX_COMMENT} characters", field="input.comment")
    return text


async def _move(
    actor: Actor,
    alarm_id: int,
    comment: str | None,
    *,
    mutation: str,
    allowed_from: tuple[AlarmStatus, ...],
    to: AlarmStatus,
    change: AlarmChange,
) -> Alarm:
    p = actor.p
    require(p, ALARMS, Action.UPDATE)
    alarm = await alarm_in_scope(p, alarm_id)
    require(p, ALARMS, Action.UPDATE, alarm_target(alarm))
    text = _comment(comment)
    async with audited(actor, mutation, "Alarm", alarm.id, alarm.organization_id) as entry:
        entry.details.update(
            template=alarm.template.name,
            object=f"{alarm.object_type}:{alarm.object_name}",
            status=alarm.status.value,
            comment=text,
        )
        now = datetime.now(UTC)
        changes: dict[str, object] = {"status": to, "updated_at": now}
        if to is AlarmStatus.RESOLVED:
            changes.update(active_key=None, resolved_at=now)
        # Conditional: the evaluation may have resolved it since it was read.
        moved = await Alarm.filter(id=alarm.id, status__in=list(allowed_from)).update(**changes)
        if not moved:
            current = await Alarm.get(id=alarm.id)
            raise Conflict(
                f"the alarm is {current.status.value.lower()}: only "
                + " or ".join(s.value.lower() for s in allowed_from)
                + f" alarms can be {to.value.lower()}"
            )
        event = await AlarmEvent.create(
            alarm_id=alarm.id,
            change=change,
            status=to,
            severity=alarm.severity,
            actor_id=p.user_id,
            comment=text,
        )
        moved_row = await Alarm.get(id=alarm.id).select_related("template")
        # A resolution by hand is told like an automatic one (acknowledging is not).
        await notify(moved_row, change, event.id)
        entry.details["newStatus"] = to.value
    # Wake-ups for `alarmRaised` after the commit, on the engine's channels.
    await publish(
        Changes(
            changed=[(moved_row, change)],
            owners={moved_row.template_id: moved_row.template.owner_id},  # type: ignore[attr-defined]
        )
    )
    return moved_row


async def acknowledge(actor: Actor, alarm_id: int, comment: str | None = None) -> Alarm:
    return await _move(
        actor,
        alarm_id,
        comment,
        mutation="alarmAcknowledge",
        allowed_from=ACKNOWLEDGEABLE,
        to=AlarmStatus.ACKNOWLEDGED,
        change=AlarmChange.ACKNOWLEDGED,
    )


async def resolve(actor: Actor, alarm_id: int, comment: str | None = None) -> Alarm:
    return await _move(
        actor,
        alarm_id,
        comment,
        mutation="alarmResolve",
        allowed_from=RESOLVABLE,
        to=AlarmStatus.RESOLVED,
        change=AlarmChange.RESOLVED,
    )
