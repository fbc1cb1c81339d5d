"""Alarm notifications: e-mail recipients by role and severity, signed webhooks delivered to a
real local receiver, maintenance windows, dedup, the daily digest, and the ALARM_SETTINGS
row of every principal from the engine, cross-tenant NOT_FOUND."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.alarms.notify import notify, notify_many
from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import ALARM_SETTINGS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.models import Organization, OrgKind, User
from app.models.alarms import (
    Alarm,
    AlarmChange,
    AlarmSeverity,
    AlarmStatus,
    AlarmTemplate,
    AlarmWebhook,
    MaintenanceWindow,
    RuleKind,
)
from app.models.audit import AuditEntry
from app.models.billing import OutboxChannel, OutboxMessage, OutboxState
from app.services import alarm_notifications, outbox
from app.services.alarm_notifications import target
from tests.permission_cases import org_gid, outcome, subjects
from tests.querycount import count_queries
from tests.test_outbox import Receiver, data_dir, receiver  # noqa: F401 (fixtures)

NOW = datetime.now(UTC)
OWNER = ("A1", "Company Owner")
R1_ADMIN = ("R1", "Service Provider Global Administrator")

SET = """mutation($input: AlarmNotificationSettingsInput!) {
  alarmNotificationSettingsSet(input: $input) { organizationId emailRoles minSeverity digest
    digestHour selectableRoles viewerCanUpdate } }"""
GET = """query($org: ID) { alarmNotificationSettings(organizationId: $org) {
  organizationId emailRoles minSeverity } }"""
HOOK = """mutation($input: AlarmWebhookCreateInput!) { alarmWebhookCreate(input: $input) {
  secret webhook { id name url minSeverity enabled } } }"""
HOOKS = "query($org: ID) { alarmWebhooks(organizationId: $org) { nodes { id name } } }"
HOOK_UPDATE = """mutation($input: AlarmWebhookUpdateInput!) { alarmWebhookUpdate(input: $input) {
  id name enabled } }"""
ROTATE = "mutation($id: ID!) { alarmWebhookRotateSecret(id: $id) { secret webhook { id } } }"
HOOK_DELETE = "mutation($id: ID!) { alarmWebhookDelete(id: $id) { deletedId } }"
WINDOW = """mutation($input: MaintenanceWindowCreateInput!) { maintenanceWindowCreate(input: $input)
  { id organizationId startsAt endsAt reason } }"""
WINDOWS = "query($org: ID) { maintenanceWindows(organizationId: $org) { nodes { id reason } } }"
WINDOW_DELETE = "mutation($id: ID!) { maintenanceWindowDelete(id: $id) { deletedId } }"
NODE = "query($id: ID!) { node(id: $id) { id } }"


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


async def make_template(owner: Organization, name: str = "Job failed") -> AlarmTemplate:
    return await AlarmTemplate.create(
        owner=owner, catalogue_key="job_failed", name=name, kind=RuleKind.STATE_CHANGE
    )


_serial = [0]


async def make_alarm(
    template: AlarmTemplate,
    org: Organization,
    location_id: int | None = None,
    severity: AlarmSeverity = AlarmSeverity.ERROR,
    status: AlarmStatus = AlarmStatus.ACTIVE,
    seen: datetime = NOW,
) -> Alarm:
    _serial[0] += 1
    n = _serial[0]
    return await Alarm.create(
        template=template,
        organization_id=org.id,
        location_id=location_id,
        object_type="backup_job",
        object_id=n,
        object_name=f"job-{n}",
        status=status,
        severity=severity,
        message=f"job-{n} failed",
        active_key=None if status is AlarmStatus.RESOLVED else f"{template.id}:backup_job:{n}",
        first_seen_at=seen - timedelta(hours=1),
        last_seen_at=seen,
        raised_at=None if status is AlarmStatus.PENDING else seen - timedelta(hours=1),
    )


async def set_settings(gql, token: str, org: Organization, roles: list[str], **extra: Any):
    body = await gql(
        SET,
        {
            "input": {
                "organizationId": org_gid(org),
                "emailRoles": roles,
                "minSeverity": extra.pop("minSeverity", "WARNING"),
                **extra,
            }
        },
        token=token,
    )
    return body


async def emails() -> dict[str, list[str]]:
    """Queued e-mails: dedup key → [recipient]."""
    rows = await OutboxMessage.filter(channel=OutboxChannel.EMAIL).order_by("id")
    return {r.dedup_key: [r.recipient] for r in rows}


def email_of(world, org: str, role: str) -> str:
    return world.user(org, role).email


# --- e-mail recipients ------------------------------------------------------------------------


async def test_recipients_by_role_scope_and_severity(world, gql) -> None:
    a1 = world.orgs["A1"]
    body = await set_settings(
        gql,
        world.token(*OWNER),
        a1,
        ["Company Administrator", "Location Administrator"],
        minSeverity="WARNING",
    )
    got = body["data"]["alarmNotificationSettingsSet"]
    assert got["emailRoles"] == ["Company Administrator", "Location Administrator"]
    assert got["viewerCanUpdate"] is True
    # Only roles that see every alarm may be chosen (the Subtenant's Read*, auditors' N/A not).
    assert "Company Owner" in got["selectableRoles"]
    assert "Subtenant" not in got["selectableRoles"]
    assert "Company Invoice Auditor" not in got["selectableRoles"]

    template = await make_template(a1)
    default = await make_alarm(template, a1, world.locations["A1-Default"].id)
    east = await make_alarm(template, a1, world.locations["A1-East"].id)
    info = await make_alarm(template, a1, severity=AlarmSeverity.INFO)
    admin = email_of(world, "A1", "Company Administrator")
    location_admin = email_of(world, "A1", "Location Administrator")

    assert await notify(default, AlarmChange.TRIGGERED) == 1
    assert await notify(east, AlarmChange.TRIGGERED) == 2
    assert await notify(info, AlarmChange.TRIGGERED) == 0  # below WARNING
    admin_id = world.user("A1", "Company Administrator").id
    location_admin_id = world.user("A1", "Location Administrator").id
    assert await emails() == {
        # The Location Administrator is limited to A1-East: not told about the default location.
        f"alarm:{default.id}:TRIGGERED:1:u{admin_id}": [admin],
        f"alarm:{east.id}:TRIGGERED:1:u{admin_id}": [admin],
        f"alarm:{east.id}:TRIGGERED:1:u{location_admin_id}": [location_admin],
    }
    message = await OutboxMessage.get(dedup_key=f"alarm:{default.id}:TRIGGERED:1:u{admin_id}")
    assert message.subject == f"[ERROR] Job failed: {default.object_name} (raised)"
    assert "Organization: A1 / Default location" in message.body
    assert message.organization_id == a1.id

    # Re-notifying the same change queues nothing new; repeats and pending alarms tell nobody.
    assert await notify(default, AlarmChange.TRIGGERED) == 1
    assert await notify(default, AlarmChange.REPEATED) == 0
    pending = await make_alarm(template, a1, status=AlarmStatus.PENDING)
    assert await notify(pending, AlarmChange.TRIGGERED) == 0
    assert await notify(pending, AlarmChange.AUTO_RESOLVED) == 0  # never raised: never told
    assert await OutboxMessage.all().count() == 3

    # A disabled user gets nothing; a severity change and the resolution are told once each.
    await User.filter(id=location_admin_id).update(enabled=False)
    east.severity = AlarmSeverity.WARNING
    assert await notify(east, AlarmChange.SEVERITY_CHANGED) == 1
    east.status, east.resolved_at = AlarmStatus.RESOLVED, NOW
    assert await notify(east, AlarmChange.AUTO_RESOLVED) == 1
    assert await notify(east, AlarmChange.AUTO_RESOLVED) == 1
    keys = set(await emails())
    assert f"alarm:{east.id}:SEVERITY_CHANGED:1-WARNING:u{admin_id}" in keys
    assert f"alarm:{east.id}:AUTO_RESOLVED:1:u{admin_id}" in keys
    assert len(keys) == 5
    # Users of the same roles in other companies are never told about A1.
    others = await OutboxMessage.exclude(recipient__startswith="a1").count()
    assert others == 0


async def test_role_names_are_checked_against_the_portal(world, gql) -> None:
    token, a1 = world.token(*OWNER), world.orgs["A1"]
    for roles, bad in (
        (["Company Administrator", "Service Provider Administrator"], 1),  # another portal's
        (["No Such Role"], 0),
        (["Subtenant"], 0),  # Read*: only their own computers' alarms
        (["Company Invoice Auditor"], 0),  # N/A on Active alarms
    ):
        body = await set_settings(gql, token, a1, roles)
        assert code(body) == "BAD_USER_INPUT", body
        assert body["errors"][0]["extensions"]["field"] == f"input.emailRoles.{bad}", body
    body = await set_settings(gql, token, a1, ["Company Owner"], digestHour=24)
    assert code(body) == "BAD_USER_INPUT"
    assert not await AuditEntry.filter(action="alarmNotificationSettingsSet", outcome="SUCCESS")
    # The reseller's staff configure a company below them with that company's roles.
    body = await set_settings(gql, world.token(*R1_ADMIN), a1, ["Company Owner"], digest=True)
    assert body["data"]["alarmNotificationSettingsSet"]["digest"] is True
    body = await gql(GET, {"org": org_gid(a1)}, token=token)
    assert body["data"]["alarmNotificationSettings"]["emailRoles"] == ["Company Owner"]
    entry = await AuditEntry.get(action="alarmNotificationSettingsSet", outcome="SUCCESS")
    assert entry.organization_id == a1.id
    assert entry.details["emailRoles"] == ["Company Owner"]


# --- webhooks ---------------------------------------------------------------------------------


async def test_webhook_is_signed_with_the_secret_shown_once(
    world,
    gql,
    receiver: Receiver,  # noqa: F811
    data_dir,  # noqa: F811
) -> None:
    token, r1, a1 = world.token(*R1_ADMIN), world.orgs["R1"], world.orgs["A1"]
    body = await gql(HOOK, {"input": {"name": "pager", "url": "ftp://x.test/"}}, token=token)
    assert code(body) == "BAD_USER_INPUT"
    body = await gql(
        HOOK, {"input": {"name": "pager", "url": receiver.url, "minSeverity": "ERROR"}}, token=token
    )
    created = body["data"]["alarmWebhookCreate"]
    secret, hook_gid = created["secret"], created["webhook"]["id"]
    assert len(bytes.fromhex(secret)) == 32
    row = await AlarmWebhook.get(organization_id=r1.id)
    assert secret not in row.secret_encrypted  # stored encrypted
    assert alarm_notifications.secret_of(row) == secret
    body = await gql(HOOK, {"input": {"name": "pager", "url": receiver.url}}, token=token)
    assert code(body) == "CONFLICT"

    template = await make_template(r1, "Agent offline")
    warning = await make_alarm(template, a1, severity=AlarmSeverity.WARNING)
    error = await make_alarm(template, a1, world.locations["A1-East"].id)
    # Only the webhook: R1 chose no e-mail roles.
    assert await notify_many([(warning, AlarmChange.TRIGGERED), (error, "TRIGGERED")]) == 1
    message = await OutboxMessage.get(channel=OutboxChannel.WEBHOOK)
    assert message.dedup_key == f"alarm:{error.id}:TRIGGERED:1:w{row.id}"
    assert message.payload["secret_ref"] == f"alarm_webhook:{row.id}"
    assert (await outbox.deliver_due("w1"))["sent"] == 1
    raw = receiver.requests[0][1]
    assert receiver.verified(0, secret)  # by the receiver, on its own clock
    data = json.loads(raw)
    assert data["id"] == error.id
    assert data["template"] == {"id": template.id, "key": "job_failed", "name": "Agent offline"}
    assert (data["severity"], data["status"], data["change"]) == ("ERROR", "ACTIVE", "TRIGGERED")
    assert data["object"] == {
        "type": "backup_job",
        "id": error.object_id,
        "name": error.object_name,
    }
    assert data["organization"] == {"id": a1.id, "name": "A1"}
    assert data["location"] == {"id": world.locations["A1-East"].id, "name": "East"}
    assert data["message"] == error.message
    assert data["times"]["raisedAt"] == error.raised_at.isoformat()
    assert (await OutboxMessage.get(id=message.id)).state is OutboxState.SENT

    # Rotating: the new secret signs what is delivered afterwards, the old one no longer does.
    body = await gql(ROTATE, {"id": hook_gid}, token=token)
    new_secret = body["data"]["alarmWebhookRotateSecret"]["secret"]
    assert new_secret != secret
    error.status, error.resolved_at = AlarmStatus.RESOLVED, NOW
    assert await notify(error, AlarmChange.RESOLVED) == 1
    assert (await outbox.deliver_due("w1"))["sent"] == 1
    raw = receiver.requests[1][1]
    assert receiver.verified(1, new_secret)
    assert not receiver.verified(1, secret)
    assert json.loads(raw)["change"] == "RESOLVED"

    # Disabled: nothing queued; deleted: gone from the list.
    body = await gql(HOOK_UPDATE, {"input": {"id": hook_gid, "enabled": False}}, token=token)
    assert body["data"]["alarmWebhookUpdate"]["enabled"] is False
    another = await make_alarm(template, a1)
    assert await notify(another, AlarmChange.TRIGGERED) == 0
    body = await gql(HOOK_DELETE, {"id": hook_gid}, token=token)
    assert body["data"]["alarmWebhookDelete"]["deletedId"] == hook_gid
    body = await gql(HOOKS, token=token)
    assert body["data"]["alarmWebhooks"]["nodes"] == []
    actions = await AuditEntry.filter(object_type="AlarmWebhook", outcome="SUCCESS").values_list(
        "action", flat=True
    )
    assert sorted(actions) == sorted(
        [
            "alarmWebhookCreate",
            "alarmWebhookRotateSecret",
            "alarmWebhookUpdate",
            "alarmWebhookDelete",
        ]
    )


# --- maintenance windows ----------------------------------------------------------------------


async def test_maintenance_windows_silence_notifications_not_alarms(world, gql) -> None:
    token = world.token(*R1_ADMIN)
    provider, r1, a1, a2 = (world.orgs[k] for k in ("Provider", "R1", "A1", "A2"))
    body = await set_settings(gql, token, r1, ["Service Provider Administrator"])
    assert code(body) is None, body
    template = await make_template(r1)
    of_a1 = await make_alarm(template, a1)
    of_a2 = await make_alarm(template, a2)

    def window(org: Organization, start: timedelta, end: timedelta, reason: str = "upgrade"):
        return {
            "input": {
                "organizationId": org_gid(org),
                "startsAt": (NOW + start).isoformat(),
                "endsAt": (NOW + end).isoformat(),
                "reason": reason,
            }
        }

    for bad in (
        window(a1, timedelta(hours=2), timedelta(hours=1)),  # ends before it starts
        window(a1, timedelta(0), timedelta(days=31)),  # longer than 30 days
        window(a1, -timedelta(hours=3), -timedelta(hours=2)),  # over already
    ):
        body = await gql(WINDOW, bad, token=token)
        assert code(body) == "BAD_USER_INPUT", body
        assert body["errors"][0]["extensions"]["field"] == "input.endsAt"

    # A window of A1: A1's alarms are silent, A2's are not; a future window silences nothing.
    body = await gql(WINDOW, window(a1, -timedelta(minutes=1), timedelta(hours=1)), token=token)
    a1_window = body["data"]["maintenanceWindowCreate"]["id"]
    await gql(WINDOW, window(a2, timedelta(hours=1), timedelta(hours=2)), token=token)
    assert await notify(of_a1, AlarmChange.TRIGGERED) == 0
    assert await notify(of_a2, AlarmChange.TRIGGERED) == 1
    # The alarm itself is untouched.
    assert (await Alarm.get(id=of_a1.id)).status is AlarmStatus.ACTIVE
    # Removed: A1's alarms notify again.
    body = await gql(WINDOW_DELETE, {"id": a1_window}, token=token)
    assert code(body) is None
    assert await notify(of_a1, AlarmChange.TRIGGERED) == 1

    # A window of an organization above (the reseller, the provider) silences those below.
    for org, who in ((r1, token), (provider, world.token("Provider", R1_ADMIN[1]))):
        body = await gql(WINDOW, window(org, -timedelta(minutes=1), timedelta(hours=1)), who)
        assert code(body) is None, body
        row_id = body["data"]["maintenanceWindowCreate"]["id"]
        of_a1.severity = AlarmSeverity.WARNING
        assert await notify(of_a1, AlarmChange.SEVERITY_CHANGED, event_id=org.id) == 0
        await gql(WINDOW_DELETE, {"id": row_id}, token=who)
    assert await MaintenanceWindow.all().count() == 1  # the future one of A2
    body = await gql(WINDOWS, {"org": org_gid(a2)}, token=token)
    assert [n["reason"] for n in body["data"]["maintenanceWindows"]["nodes"]] == ["upgrade"]


async def test_a_batch_costs_a_constant_number_of_statements(world, gql) -> None:
    token, r1 = world.token(*R1_ADMIN), world.orgs["R1"]
    await set_settings(
        gql, token, r1, ["Service Provider Administrator", "Service Provider Operator"]
    )
    await gql(HOOK, {"input": {"name": "h", "url": "https://hooks.example.test/a"}}, token=token)
    template = await make_template(r1)
    companies = [world.orgs[k] for k in ("A1", "A2")]
    few = [
        await make_alarm(template, companies[i % 2], world.locations["A1-East"].id)
        for i in range(2)
    ]
    many = [
        await make_alarm(template, companies[i % 2], world.locations["A1-East"].id)
        for i in range(40)
    ]
    with count_queries() as small:
        assert await notify_many([(a, AlarmChange.TRIGGERED) for a in few]) == 6
    with count_queries() as large:
        assert await notify_many([(a, AlarmChange.TRIGGERED) for a in many]) == 120
    assert large.count == small.count <= 9, str(large)


# --- digest -----------------------------------------------------------------------------------


async def test_daily_digest(world, gql, dispatched) -> None:
    from app.models.jobs import Job, JobState
    from app.services import jobs
    from workers.actors.jobs import execute

    a1, b1 = world.orgs["A1"], world.orgs["B1"]
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    await set_settings(
        gql,
        world.token(*OWNER),
        a1,
        ["Company Owner", "Location Administrator"],
        digest=True,
        digestHour=hour.hour,
    )
    await set_settings(
        gql,
        world.token("B1", "Company Owner"),
        b1,
        ["Company Owner"],
        digest=True,
        digestHour=(hour.hour + 1) % 24,
    )
    template = await make_template(a1)
    b1_template = await make_template(b1)
    for i in range(22):
        await make_alarm(
            template,
            a1,
            world.locations["A1-East"].id if i < 2 else None,
            AlarmSeverity.WARNING if i % 2 else AlarmSeverity.ERROR,
            seen=NOW - timedelta(minutes=i),
        )
    await make_alarm(template, a1, status=AlarmStatus.RESOLVED)
    await make_alarm(template, a1, status=AlarmStatus.PENDING)
    await make_alarm(b1_template, b1)  # B1's digest hour is another one

    async def run() -> Job:
        job, _ = await jobs.create(None, "alarms.digest", None, {"at": NOW.isoformat()})
        assert await execute(job.id, "test-worker") == "succeeded"
        return await Job.get(id=job.id)

    job = await run()
    assert job.state is JobState.SUCCEEDED
    assert job.result == {"hour": hour.isoformat(), "organizations": 1, "emails": 2}
    day = hour.date().isoformat()
    owner = world.user("A1", "Company Owner")
    location_admin = world.user("A1", "Location Administrator")
    rows = {m.dedup_key: m for m in await OutboxMessage.all()}
    assert set(rows) == {
        f"alarm-digest:{a1.id}:{day}:{owner.id}",
        f"alarm-digest:{a1.id}:{day}:{location_admin.id}",
    }
    full = rows[f"alarm-digest:{a1.id}:{day}:{owner.id}"]
    assert full.subject == f"Alarm digest for A1, {day}: 22 open"
    assert "22 (11 error, 11 warning, 0 info)" in full.body
    assert "The newest 20:" in full.body
    assert full.body.count("\n- [") == 20
    # The Location Administrator's digest counts only the alarms of A1-East.
    limited = rows[f"alarm-digest:{a1.id}:{day}:{location_admin.id}"]
    assert "2 (1 error, 1 warning, 0 info)" in limited.body
    # A second run the same day queues nothing new.
    await run()
    assert await OutboxMessage.all().count() == 2


# --- the matrix and the tree ------------------------------------------------------------------


def expected(p: Principal, action: Action, org: Organization, in_scope: bool) -> str | None:
    if not engine.allows(p, ALARM_SETTINGS, action):
        return "FORBIDDEN"
    if not in_scope:
        return "NOT_FOUND"
    return None if engine.can(p, ALARM_SETTINGS, action, target(org)) else "FORBIDDEN"


@pytest.mark.parametrize("edition", ["service_provider", "enterprise"])
async def test_alarm_settings_follow_the_matrix(edition: str, use_settings, db, gql) -> None:
    from tests.factories import build_world

    use_settings(edition=edition)
    world = await build_world()
    answers: set[str | None] = set()
    for subject in subjects(edition):
        token = world.tokens[subject.key]
        p = await principal_for_bearer(token)
        assert p is not None
        # Their own organization, or for staff limited to companies the first of those.
        org = world.orgs[subject.org]
        if p.company_ids is not None:
            org = await Organization.get(id=min(p.company_ids))
        case = subject.id
        variables = {"org": org_gid(org)}

        want = expected(p, Action.READ, org, True)
        body = await gql(GET, variables, token=token)
        assert outcome(body, "alarmNotificationSettings") == want, (case, body)
        answers.add(want)

        want = expected(p, Action.UPDATE, org, True)
        body = await set_settings(gql, token, org, [], minSeverity="ERROR")
        assert outcome(body, "alarmNotificationSettingsSet") == want, (case, body)
        answers.add(want)

        want = expected(p, Action.CREATE, org, True)
        body = await gql(
            HOOK,
            {
                "input": {
                    "organizationId": org_gid(org),
                    "name": subject.key,
                    "url": "https://hooks.example.test/",
                }
            },
            token=token,
        )
        assert outcome(body, "alarmWebhookCreate") == want, (case, body)
        if want is None:
            hook = body["data"]["alarmWebhookCreate"]["webhook"]["id"]
            body = await gql(HOOK_DELETE, {"id": hook}, token=token)
            assert outcome(body, "alarmWebhookDelete") == expected(p, Action.DELETE, org, True)
        body = await gql(
            WINDOW,
            {
                "input": {
                    "organizationId": org_gid(org),
                    "startsAt": NOW.isoformat(),
                    "endsAt": (NOW + timedelta(hours=1)).isoformat(),
                }
            },
            token=token,
        )
        assert outcome(body, "maintenanceWindowCreate") == want, (case, body)
    assert answers == {None, "FORBIDDEN"}


async def test_other_tenants_settings_are_not_found(world, gql) -> None:
    r1_token, a1_token = world.token(*R1_ADMIN), world.token(*OWNER)
    b1, a2, r2 = world.orgs["B1"], world.orgs["A2"], world.orgs["R2"]
    b1_token = world.token("B1", "Company Owner")
    body = await gql(
        HOOK,
        {"input": {"name": "b1", "url": "https://hooks.example.test/b1"}},
        token=b1_token,
    )
    b1_hook = body["data"]["alarmWebhookCreate"]["webhook"]["id"]
    body = await gql(
        WINDOW,
        {
            "input": {
                "organizationId": org_gid(b1),
                "startsAt": NOW.isoformat(),
                "endsAt": (NOW + timedelta(hours=1)).isoformat(),
            }
        },
        token=b1_token,
    )
    b1_window = body["data"]["maintenanceWindowCreate"]["id"]
    for token, org in ((r1_token, b1), (r1_token, r2), (a1_token, a2), (a1_token, b1)):
        assert code(await gql(GET, {"org": org_gid(org)}, token=token)) == "NOT_FOUND"
        assert code(await set_settings(gql, token, org, [])) == "NOT_FOUND"
        body = await gql(
            HOOK,
            {"input": {"organizationId": org_gid(org), "name": "x", "url": "https://x.test/"}},
            token=token,
        )
        assert code(body) == "NOT_FOUND"
        for document, variables in (
            (HOOK_UPDATE, {"input": {"id": b1_hook, "name": "mine"}}),
            (ROTATE, {"id": b1_hook}),
            (HOOK_DELETE, {"id": b1_hook}),
            (WINDOW_DELETE, {"id": b1_window}),
            (NODE, {"id": b1_hook}),
            (NODE, {"id": b1_window}),
        ):
            assert code(await gql(document, variables, token=token)) == "NOT_FOUND", document
        body = await gql(HOOKS, token=token)
        assert body["data"]["alarmWebhooks"]["nodes"] == []
        body = await gql(WINDOWS, token=token)
        assert body["data"]["maintenanceWindows"]["nodes"] == []
    assert (await AlarmWebhook.get(organization_id=b1.id)).name == "b1"
    assert await MaintenanceWindow.filter(organization_id=b1.id).count() == 1
    # The provider sees B1's (below it), by node too.
    body = await gql(NODE, {"id": b1_hook}, token=world.token("Provider", R1_ADMIN[1]))
    assert body["data"]["node"] == {"id": b1_hook}
    assert OrgKind.COMPANY is b1.kind
