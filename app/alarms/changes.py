"""What an evaluation or a resolution changed (`Changes`), and the wake-ups published on the
event hub after it committed (`publish`, on `alarm:<organization>` channels)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from app.models.alarms import Alarm, AlarmChange, AlarmSeverity, AlarmStatus
from app.models.tenancy import Organization
from app.services import events

log = logging.getLogger(__name__)


def alarm_channel(organization_id: int) -> str:
    return f"alarm:{organization_id}"


@dataclass
class Changes:
    """What one apply (or resolution) changed. `changed` lists the alarms told about and
    published: raised, severity changed, resolved."""

    changed: list[tuple[Alarm, AlarmChange]] = field(default_factory=list)
    owners: dict[int, int] = field(default_factory=dict)  # template id → owner id
    pending: int = 0  # new PENDING rows and PENDING seen again
    repeated: int = 0  # ACTIVE / ACKNOWLEDGED seen again with a new occurrence (rewritten)
    unchanged: int = 0  # ACTIVE / ACKNOWLEDGED seen again as they were (not rewritten)
    refreshed: int = 0  # of those, the ones whose last_seen_at was due (one set-based UPDATE)
    suppressed: int = 0  # not raised because of suppress_after
    discarded: int = 0  # PENDING alarms whose condition cleared (deleted)

    def of(self, change: AlarmChange) -> list[Alarm]:
        return [a for a, c in self.changed if c is change]

    def merge(self, other: Changes) -> None:
        self.changed += other.changed
        self.owners.update(other.owners)
        self.pending += other.pending
        self.repeated += other.repeated
        self.unchanged += other.unchanged
        self.refreshed += other.refreshed
        self.suppressed += other.suppressed
        self.discarded += other.discarded

    def counts(self) -> dict[str, int]:
        out = {c.value.lower(): 0 for c in AlarmChange if c is not AlarmChange.ACKNOWLEDGED}
        for _, change in self.changed:
            out[change.value.lower()] += 1
        out.update(
            pending=self.pending,
            repeated=self.repeated,
            unchanged=self.unchanged,
            refreshed=self.refreshed,
            suppressed=self.suppressed,
            discarded=self.discarded,
        )
        out.pop("resolved", None)
        return out


async def publish(changes: Changes) -> None:
    """Wake-ups on the hub after commit: `alarm:<organization>` for the object's organization,
    its ancestors and the template owner's. Never fails the caller (already committed)."""
    if not changes.changed:
        return
    # Every ancestor's channel too (company → reseller → provider): a subscriber listens on
    # its own organization's channel only, whatever the size of its tree.
    ancestors: dict[int, set[int]] = {}
    try:
        orgs = {alarm.organization_id for alarm, _ in changes.changed}
        for row in await Organization.filter(id__in=sorted(orgs)).values(
            "id", "parent_id", "parent__parent_id"
        ):
            ancestors[row["id"]] = {
                i for i in (row["parent_id"], row["parent__parent_id"]) if i is not None
            }
    except Exception as exc:
        log.warning("could not read the ancestors of alarmed organizations: %s", exc)
    for alarm, change in changes.changed:
        template_id: int = alarm.template_id  # type: ignore[attr-defined]
        payload = {
            "alarm": alarm.id,
            "change": change.value,
            "status": AlarmStatus(alarm.status).value,
            "severity": AlarmSeverity(alarm.severity).value,
            "template": template_id,
            "organization": alarm.organization_id,
        }
        channels = {
            alarm.organization_id,
            changes.owners.get(template_id, alarm.organization_id),
            *ancestors.get(alarm.organization_id, ()),
        }
        for org in sorted(channels):
            try:
                await events.publish(alarm_channel(org), payload)
            except Exception as exc:
                log.warning("could not publish alarm %s: %s", alarm.id, exc)
