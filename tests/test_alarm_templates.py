"""Alarm templates through the API: each organization configures its own portal's copy of the
catalogue; validation names its field; assignment only below the owner and inside the
caller's scope (NOT_FOUND otherwise); disabling resolves the template's alarms; clone, reset
and delete rules; who may configure (a Location Administrator may not)."""

from __future__ import annotations

from typing import Any

import pytest

from app.alarms.catalogue import CATALOGUE
from app.graphql.ids import to_global_id
from app.models import AuditEntry
from app.models.alarms import Alarm, AlarmChange, AlarmEvent, AlarmStatus, AlarmTemplate
from tests.factories import World
from tests.permission_cases import outcome
from tests.test_alarms_api import raise_alarm

OWNER = "Company Owner"
R1_ADMIN = "R1:Service Provider Administrator"
KEY = "cloud_storage_quota"

FIELDS = """id key custom name enabled severity thresholds triggerAfter suppressAfter
  nameInclude nameExclude viewerCanUpdate viewerCanDelete
  assignment { all allNew companyIds locationIds excludeCompanyIds resellerIds }"""
LIST = f"{{ alarmTemplates {{ {FIELDS} }} }}"
UPDATE = f"""mutation($input: AlarmTemplateUpdateInput!) {{
  alarmTemplateUpdate(input: $input) {{ {FIELDS} }} }}"""
CLONE = f"""mutation($input: AlarmTemplateCloneInput!) {{
  alarmTemplateClone(input: $input) {{ {FIELDS} }} }}"""
RESET = f"mutation($id: ID!) {{ alarmTemplateReset(id: $id) {{ {FIELDS} }} }}"
DELETE = "mutation($id: ID!) { alarmTemplateDelete(id: $id) { deletedId } }"


async def templates(gql, token: str) -> dict[str, dict[str, Any]]:
    body = await gql(LIST, token=token)
    return {t["key"]: t for t in body["data"]["alarmTemplates"] if not t["custom"]}


def tid(row: AlarmTemplate) -> str:
    return to_global_id("AlarmTemplate", row.id)


def error(body: dict[str, Any]) -> dict[str, Any]:
    return body["errors"][0]["extensions"]


async def test_each_organization_configures_its_own_copy(world: World, gql) -> None:
    a1_token, r1_token = world.token("A1", OWNER), world.tokens[R1_ADMIN]
    a1 = await templates(gql, a1_token)
    assert set(a1) == set(CATALOGUE)
    assert await AlarmTemplate.filter(owner_id=world.orgs["A1"].id).count() == len(CATALOGUE)
    await templates(gql, a1_token)  # created once
    assert await AlarmTemplate.filter(owner_id=world.orgs["A1"].id).count() == len(CATALOGUE)
    r1 = await templates(gql, r1_token)
    assert set(a1[k]["id"] for k in a1).isdisjoint(r1[k]["id"] for k in r1)
    assert a1[KEY]["thresholds"] == {"warning": 80, "error": 95}
    assert a1[KEY]["viewerCanUpdate"] is True and a1[KEY]["viewerCanDelete"] is False

    body = await gql(
        UPDATE,
        {
            "input": {
                "id": a1[KEY]["id"],
                "severity": "ERROR",
                "thresholds": {"warning": 70},
                "triggerAfter": 3,
                "suppressAfter": 50,
                "nameInclude": [" sql* ", "sql*", "db-?"],
                "nameExclude": ["*-test"],
            }
        },
        token=a1_token,
    )
    got = body["data"]["alarmTemplateUpdate"]
    assert got["thresholds"] == {"warning": 70, "error": 95}
    assert (got["severity"], got["triggerAfter"], got["suppressAfter"]) == ("ERROR", 3, 50)
    assert got["nameInclude"] == ["sql*", "db-?"] and got["nameExclude"] == ["*-test"]
    # The reseller's copy is untouched, and A1's other settings stay when one changes.
    assert (await templates(gql, r1_token))[KEY]["thresholds"] == {"warning": 80, "error": 95}
    body = await gql(UPDATE, {"input": {"id": a1[KEY]["id"], "enabled": False}}, token=a1_token)
    assert body["data"]["alarmTemplateUpdate"]["thresholds"] == {"warning": 70, "error": 95}
    entry = await AuditEntry.filter(action="alarmTemplateUpdate").order_by("id").first()
    assert entry is not None and entry.organization_id == world.orgs["A1"].id
    assert entry.details["changes"]["thresholds"] == {"warning": 70, "error": 95}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"thresholds": {"speed": 3}}, "input.thresholds.speed"),
        ({"thresholds": {"warning": 101}}, "input.thresholds.warning"),
        ({"thresholds": {"warning": 96}}, "input.thresholds.warning"),  # above the error level
        ({"thresholds": {"warning": "80"}}, "input.thresholds.warning"),
        ({"triggerAfter": 0}, "input.triggerAfter"),
        ({"triggerAfter": 101}, "input.triggerAfter"),
        ({"suppressAfter": -1}, "input.suppressAfter"),
        ({"suppressAfter": 10_001}, "input.suppressAfter"),
        ({"nameInclude": [f"m{i}*" for i in range(21)]}, "input.nameInclude"),
        ({"nameExclude": ["x" * 101]}, "input.nameExclude"),
        ({"nameExclude": ["  "]}, "input.nameExclude"),
        ({"assignment": {"all": False}}, "input.assignment"),
    ],
)
async def test_invalid_settings_name_their_field(
    world: World, gql, changes: dict[str, Any], field: str
) -> None:
    token = world.token("A1", OWNER)
    row = (await templates(gql, token))[KEY]
    body = await gql(UPDATE, {"input": {"id": row["id"], **changes}}, token=token)
    assert error(body) == {"code": "BAD_USER_INPUT", "field": field}
    assert (await templates(gql, token))[KEY] == row


async def test_assignment_below_the_owner_and_in_scope(world: World, gql) -> None:
    o, loc = world.orgs, world.locations
    token = world.tokens[R1_ADMIN]
    row = (await templates(gql, token))[KEY]
    assignment = {
        "all": False,
        "allNew": True,
        "companyIds": [to_global_id("Company", o["A1"].id)],
        "locationIds": [to_global_id("Location", loc["A2-Default"].id)],
        "excludeCompanyIds": [to_global_id("Company", o["A2"].id)],
    }
    body = await gql(UPDATE, {"input": {"id": row["id"], "assignment": assignment}}, token=token)
    got = body["data"]["alarmTemplateUpdate"]["assignment"]
    assert got == {
        "all": False,
        "allNew": True,
        "companyIds": assignment["companyIds"],
        "locationIds": assignment["locationIds"],
        "excludeCompanyIds": assignment["excludeCompanyIds"],
        "resellerIds": [],
    }
    stored = (await AlarmTemplate.get(id=_pk(row["id"]))).assignment
    assert stored["companies"] == [o["A1"].id] and stored["since"]

    outside = [
        (token, {"companyIds": [to_global_id("Company", o["B1"].id)]}, "companyIds"),
        (token, {"locationIds": [to_global_id("Location", loc["B1-Default"].id)]}, "locationIds"),
        (token, {"resellerIds": [to_global_id("Reseller", o["R2"].id)]}, "resellerIds"),
    ]
    a1_token = world.token("A1", OWNER)
    a1_row = (await templates(gql, a1_token))[KEY]
    b1_location = [to_global_id("Location", loc["B1-Default"].id)]
    operator = world.tokens["Provider:Service Provider Operator:P1"]
    op_row = (await templates(gql, operator))[KEY]
    for tok, given, name in outside:
        body = await gql(
            UPDATE, {"input": {"id": row["id"], "assignment": {"all": False, **given}}}, token=tok
        )
        assert error(body) == {"code": "NOT_FOUND", "field": f"input.assignment.{name}"}, name
    body = await gql(
        UPDATE,
        {"input": {"id": a1_row["id"], "assignment": {"all": False, "locationIds": b1_location}}},
        token=a1_token,
    )
    assert error(body) == {"code": "NOT_FOUND", "field": "input.assignment.locationIds"}
    # A provider operator limited to P1 assigns the provider's template to P1, not to A1.
    for company, want in (("A1", "NOT_FOUND"), ("P1", None)):
        ids = [to_global_id("Company", o[company].id)]
        body = await gql(
            UPDATE,
            {"input": {"id": op_row["id"], "assignment": {"all": False, "companyIds": ids}}},
            token=operator,
        )
        assert outcome(body, "alarmTemplateUpdate") == want, company
    # A Location Administrator's locations do not make it a configurator.
    body = await gql(LIST, token=world.token("A1", "Location Administrator"))
    assert outcome(body, "alarmTemplates") == "FORBIDDEN"


def _pk(global_id: str) -> int:
    from app.graphql.ids import pk_of

    return pk_of(global_id, "AlarmTemplate")


async def test_disabling_resolves_the_templates_open_alarms(world: World, gql) -> None:
    a1 = world.orgs["A1"]
    token = world.token("A1", OWNER)
    row = (await templates(gql, token))[KEY]
    tpl = await AlarmTemplate.get(id=_pk(row["id"]))
    other = await AlarmTemplate.get(owner_id=a1.id, catalogue_key="backup_agent_offline")
    open_ = await raise_alarm(tpl, a1)
    acked = await raise_alarm(tpl, a1, status=AlarmStatus.ACKNOWLEDGED)
    untouched = await raise_alarm(other, a1)
    body = await gql(UPDATE, {"input": {"id": row["id"], "severity": "ERROR"}}, token=token)
    assert (await Alarm.get(id=open_.id)).status is AlarmStatus.ACTIVE  # still enabled
    body = await gql(UPDATE, {"input": {"id": row["id"], "enabled": False}}, token=token)
    assert body["data"]["alarmTemplateUpdate"]["enabled"] is False
    for alarm in (open_, acked):
        fresh = await Alarm.get(id=alarm.id)
        assert fresh.status is AlarmStatus.RESOLVED and fresh.active_key is None
        last = await AlarmEvent.filter(alarm_id=alarm.id).order_by("-id").first()
        assert last is not None and last.change is AlarmChange.AUTO_RESOLVED
    assert (await Alarm.get(id=untouched.id)).status is AlarmStatus.ACTIVE


async def test_clone_reset_and_delete_rules(world: World, gql) -> None:
    token = world.token("A1", OWNER)
    row = (await templates(gql, token))[KEY]
    await gql(UPDATE, {"input": {"id": row["id"], "thresholds": {"warning": 50}}}, token=token)
    body = await gql(CLONE, {"input": {"id": row["id"], "name": "  Quota, strict  "}}, token=token)
    clone = body["data"]["alarmTemplateClone"]
    assert (clone["custom"], clone["key"], clone["name"]) == (True, KEY, "Quota, strict")
    assert clone["thresholds"] == {"warning": 50, "error": 95}
    assert clone["viewerCanDelete"] is True
    body = await gql(CLONE, {"input": {"id": row["id"], "name": "Quota, strict"}}, token=token)
    assert error(body) == {"code": "CONFLICT", "field": "input.name"}
    body = await gql(CLONE, {"input": {"id": row["id"], "name": " "}}, token=token)
    assert error(body) == {"code": "BAD_USER_INPUT", "field": "input.name"}

    body = await gql(RESET, {"id": row["id"]}, token=token)
    reset = body["data"]["alarmTemplateReset"]
    d = CATALOGUE[KEY]
    assert reset["thresholds"] == d.default_thresholds and reset["severity"] == d.default_severity
    assert (reset["triggerAfter"], reset["suppressAfter"], reset["enabled"]) == (1, 0, True)
    assert outcome(await gql(RESET, {"id": clone["id"]}, token=token), "alarmTemplateReset") == (
        "CONFLICT"
    )

    assert outcome(await gql(DELETE, {"id": row["id"]}, token=token), "alarmTemplateDelete") == (
        "CONFLICT"
    )
    custom = await AlarmTemplate.get(id=_pk(clone["id"]))
    alarm = await raise_alarm(custom, world.orgs["A1"])
    body = await gql(DELETE, {"id": clone["id"]}, token=token)
    assert body["data"]["alarmTemplateDelete"]["deletedId"] == clone["id"]
    assert not await AlarmTemplate.exists(id=custom.id)
    assert not await Alarm.exists(id=alarm.id)
    actions = await AuditEntry.filter(object_type="AlarmTemplate").values_list("action", "outcome")
    assert ("alarmTemplateClone", "SUCCESS") in actions
    assert ("alarmTemplateDelete", "FAILURE") in actions
    assert ("alarmTemplateDelete", "SUCCESS") in actions


async def test_who_may_configure(world: World, gql) -> None:
    a1_row = (await templates(gql, world.token("A1", OWNER)))[KEY]
    # Reading without configuring: the staff's read-only user.
    sp_user = world.token("R1", "Service Provider User")
    r1_row = (await templates(gql, sp_user))[KEY]
    assert r1_row["viewerCanUpdate"] is False
    body = await gql(UPDATE, {"input": {"id": r1_row["id"], "enabled": False}}, token=sp_user)
    assert outcome(body, "alarmTemplateUpdate") == "FORBIDDEN"
    # "Only portal users": a Location Administrator configures no alarms.
    loc_admin = world.token("A1", "Location Administrator")
    body = await gql(UPDATE, {"input": {"id": a1_row["id"], "enabled": False}}, token=loc_admin)
    assert outcome(body, "alarmTemplateUpdate") == "FORBIDDEN"
    for role in ("Location User", "Subtenant", "Company Invoice Auditor"):
        assert outcome(await gql(LIST, token=world.token("A1", role)), "alarmTemplates") == (
            "FORBIDDEN"
        )
    # Another organization's template is not found, also to the staff above it.
    for key in ("B1:Company Owner", "A2:Company Administrator", R1_ADMIN):
        body = await gql(
            UPDATE, {"input": {"id": a1_row["id"], "enabled": False}}, token=world.tokens[key]
        )
        assert outcome(body, "alarmTemplateUpdate") == "NOT_FOUND", key
        body = await gql(
            "query($id: ID!) { alarmTemplate(id: $id) { id } }",
            {"id": a1_row["id"]},
            token=world.tokens[key],
        )
        assert outcome(body, "alarmTemplate") == "NOT_FOUND", key
    assert (await AlarmTemplate.get(id=_pk(a1_row["id"]))).enabled is True
