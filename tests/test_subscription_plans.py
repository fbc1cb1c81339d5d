"""Subscription plans: validation errors with their fields, rates that round-trip exactly,
assignment (who bills whom), scope (a reseller never sees the provider's plans; cross-tenant
NOT_FOUND), the matrix for every principal from the engine, audit, and query counts."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import SUBSCRIPTION_PLANS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.billing.pricing import RateSpec
from app.models import AuditEntry, Organization, OrgKind
from app.models.billing import (
    BillingItem,
    PlanAssignment,
    PlanRate,
    StorageMode,
    SubscriptionPlan,
)
from app.services import subscription_plans
from tests.conftest import ON_POSTGRES
from tests.permission_cases import outcome, subjects
from tests.querycount import count_queries
from tests.test_allocations import code, gid

ADMIN = ("Provider", "Service Provider Global Administrator")
R1_ADMIN = ("R1", "Service Provider Global Administrator")
R2_ADMIN = ("R2", "Service Provider Administrator")

PLAN_FIELDS = """id ownerId name description currency taxType taxRatePercent discountPercent
  billingDay dueDays invoiceType assignedCustomerCount viewerCanUpdate viewerCanDelete
  viewerCanAssign rates { item rate freeAllowance storageMode blockGb roundUp }"""
CREATE = f"""mutation($input: SubscriptionPlanCreateInput!) {{
  subscriptionPlanCreate(input: $input) {{ {PLAN_FIELDS} }} }}"""
UPDATE = f"""mutation($input: SubscriptionPlanUpdateInput!) {{
  subscriptionPlanUpdate(input: $input) {{ {PLAN_FIELDS} }} }}"""
DELETE = "mutation($id: ID!) { subscriptionPlanDelete(id: $id) { deletedId } }"
SET_RATES = f"""mutation($input: SubscriptionPlanSetRatesInput!) {{
  subscriptionPlanSetRates(input: $input) {{ {PLAN_FIELDS} }} }}"""
READ = f"query($id: ID!) {{ subscriptionPlan(id: $id) {{ {PLAN_FIELDS} }} }}"
NODE = "query($id: ID!) { node(id: $id) { id ... on SubscriptionPlan { name } } }"
LIST = "{ subscriptionPlans(first: 100) { nodes { id name } } }"
ASSIGN = """mutation($input: PlanAssignInput!) { planAssign(input: $input) {
  id customerId planId billingStart customer { id name } plan { id name } } }"""
UNASSIGN = "mutation($id: ID!) { planUnassign(customerId: $id) { deletedId } }"
ASSIGNMENTS = """query($filter: PlanAssignmentFilter) { planAssignments(first: 100, filter: $filter)
  { nodes { customerId planId billingStart } } }"""


def customer_gid(org: Organization) -> str:
    return gid("Company" if org.kind is OrgKind.COMPANY else "Reseller", org.id)


async def make_plan(owner: Organization, name: str = "Standard", **kw: Any) -> SubscriptionPlan:
    return await SubscriptionPlan.create(owner=owner, name=name, currency="EUR", **kw)


def field_of(body: dict[str, Any]) -> str | None:
    return body["errors"][0]["extensions"].get("field") if body.get("errors") else None


# --- validation -----------------------------------------------------------------------------

BAD_PLANS = [
    ({"currency": "XXX"}, "input.currency"),
    ({"currency": "eur"}, "input.currency"),
    ({"name": "  "}, "input.name"),
    ({"name": "n" * 201}, "input.name"),
    ({"taxType": "VAT", "taxRatePercent": "100.0001"}, "input.taxRatePercent"),
    ({"taxType": "VAT", "taxRatePercent": "-1"}, "input.taxRatePercent"),
    ({"taxType": "VAT", "taxRatePercent": "7.12345"}, "input.taxRatePercent"),
    ({"taxType": "VAT", "taxRatePercent": "NaN"}, "input.taxRatePercent"),
    ({"taxRatePercent": "8"}, "input.taxType"),  # a rate without a tax type
    ({"discountPercent": "101"}, "input.discountPercent"),
    ({"billingDay": 0}, "input.billingDay"),
    ({"billingDay": 29}, "input.billingDay"),
    ({"dueDays": -1}, "input.dueDays"),
    ({"dueDays": 366}, "input.dueDays"),
]


@pytest.mark.parametrize(("change", "field"), BAD_PLANS, ids=[f for _, f in BAD_PLANS])
async def test_plan_fields_are_validated(world, gql, change: dict, field: str) -> None:
    plan_input = {"name": "Standard", "currency": "EUR", **change}
    body = await gql(CREATE, {"input": plan_input}, token=world.token(*ADMIN))
    assert code(body) == "BAD_USER_INPUT", body
    assert field_of(body) == field, body
    assert await SubscriptionPlan.all().count() == 0
    # The same check on an edit, and the plan stays as it was.
    plan = await make_plan(world.orgs["Provider"])
    body = await gql(
        UPDATE,
        {"input": {"id": gid("SubscriptionPlan", plan.id), **change}},
        token=world.token(*ADMIN),
    )
    assert (code(body), field_of(body)) == ("BAD_USER_INPUT", field), body
    again = await SubscriptionPlan.get(id=plan.id)
    assert (again.name, again.currency, again.billing_day) == ("Standard", "EUR", 1)


BAD_RATES = [
    ({"item": "SERVER_AGENT", "rate": "-0.01"}, "input.rates.2.rate"),
    ({"item": "SERVER_AGENT", "rate": "1.00001"}, "input.rates.2.rate"),
    ({"item": "SERVER_AGENT", "rate": "10000000000"}, "input.rates.2.rate"),
    ({"item": "SERVER_AGENT", "rate": "Infinity"}, "input.rates.2.rate"),
    ({"item": "SERVER_AGENT", "rate": "1", "freeAllowance": "-1"}, "input.rates.2.freeAllowance"),
    ({"item": "SERVER_AGENT", "blockGb": 10}, "input.rates.2.blockGb"),
    ({"item": "MANAGED_VM", "storageMode": "CONSUMED"}, "input.rates.2.storageMode"),
    ({"item": "COMPUTE_HOUR", "roundUp": False}, "input.rates.2.roundUp"),
    ({"item": "WORKSTATION_AGENT", "rate": "1"}, "input.rates.2.item"),  # listed twice
    (
        {"item": "CLOUD_STORAGE_GB", "rate": "1", "storageMode": "CONSUMED", "blockGb": 0},
        "input.rates.2.blockGb",
    ),
    ({"item": "CLOUD_STORAGE_GB", "rate": "1", "blockGb": 10}, "input.rates.2.blockGb"),
    ({"item": "CLOUD_STORAGE_GB", "rate": "1", "roundUp": True}, "input.rates.2.roundUp"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_RATES, ids=[str(b) for b, _ in BAD_RATES])
async def test_a_bad_rate_names_its_field_and_changes_nothing(
    world, gql, bad: dict, field: str
) -> None:
    plan = await make_plan(world.orgs["Provider"])
    await PlanRate.create(plan=plan, item=BillingItem.MANAGED_VM, rate=Decimal("3.5"))
    rates = [
        {"item": "WORKSTATION_AGENT", "rate": "2"},
        {"item": "TRANSFER_OUT_GB", "rate": "0.05"},
        bad,
    ]
    variables = {"input": {"id": gid("SubscriptionPlan", plan.id), "rates": rates}}
    body = await gql(SET_RATES, variables, token=world.token(*ADMIN))
    assert (code(body), field_of(body)) == ("BAD_USER_INPUT", field), body
    # All or nothing: the previous list is intact.
    assert await PlanRate.filter(plan_id=plan.id).values_list("item", "rate") == [
        (BillingItem.MANAGED_VM, Decimal("3.5000"))
    ]


async def test_a_duplicate_name_is_a_conflict_per_owner(world, gql) -> None:
    await make_plan(world.orgs["Provider"], "Gold")
    body = await gql(
        CREATE, {"input": {"name": "Gold", "currency": "EUR"}}, token=world.token(*ADMIN)
    )
    assert (code(body), field_of(body)) == ("CONFLICT", "input.name"), body
    # Another owner may use the name.
    body = await gql(
        CREATE, {"input": {"name": "Gold", "currency": "JPY"}}, token=world.token(*R1_ADMIN)
    )
    assert body["data"]["subscriptionPlanCreate"]["ownerId"] == gid("Reseller", world.orgs["R1"].id)
    other = await make_plan(world.orgs["Provider"], "Silver")
    body = await gql(
        UPDATE,
        {"input": {"id": gid("SubscriptionPlan", other.id), "name": "Gold"}},
        token=world.token(*ADMIN),
    )
    assert (code(body), field_of(body)) == ("CONFLICT", "input.name"), body


# --- round trips ----------------------------------------------------------------------------

RATES = [
    {"item": "WORKSTATION_AGENT", "rate": "0.0001", "freeAllowance": "0"},
    {"item": "SERVER_AGENT", "rate": "1234567.8912", "freeAllowance": "2.5"},
    {"item": "MANAGED_VM", "rate": None, "freeAllowance": "0"},
    {"item": "REPLICATED_VM", "rate": "9999999999.9999", "freeAllowance": "9999999999.9999"},
    {"item": "TRANSFER_OUT_GB", "rate": "0.1", "freeAllowance": "100"},
    {
        "item": "CLOUD_STORAGE_GB",
        "rate": "0.0300",
        "freeAllowance": "50",
        "storageMode": "CONSUMED",
        "blockGb": 100,
        "roundUp": True,
    },
]


async def test_a_plan_and_its_rates_round_trip_exactly(world, gql) -> None:
    token = world.token(*ADMIN)
    plan_input = {
        "name": "Gold",
        "currency": "BHD",
        "description": "three-decimal currency",
        "taxType": "VAT",
        "taxRatePercent": "19.5",
        "discountPercent": "0.0001",
        "billingDay": 28,
        "dueDays": 0,
        "invoiceType": "DETAILED",
        "rates": RATES,
    }
    body = await gql(CREATE, {"input": plan_input}, token=token)
    created = body["data"]["subscriptionPlanCreate"]
    body = await gql(READ, {"id": created["id"]}, token=token)
    got = body["data"]["subscriptionPlan"]
    assert got == created
    assert (got["taxRatePercent"], got["discountPercent"]) == ("19.5000", "0.0001")
    assert (got["currency"], got["billingDay"], got["dueDays"], got["invoiceType"]) == (
        "BHD",
        28,
        0,
        "DETAILED",
    )
    # In the items' declared order, each value exactly as given (stored with 4 places).
    by_item = {r["item"]: r for r in got["rates"]}
    assert [r["item"] for r in got["rates"]] == [i.value for i in BillingItem if i in by_item]
    for sent in RATES:
        back = by_item[sent["item"]]
        assert (back["rate"] is None) == (sent["rate"] is None)
        if sent["rate"] is not None:
            assert Decimal(back["rate"]) == Decimal(sent["rate"])
            assert back["rate"] == str(Decimal(sent["rate"]).quantize(Decimal("0.0001")))
        assert Decimal(back["freeAllowance"]) == Decimal(sent["freeAllowance"])
    assert by_item["CLOUD_STORAGE_GB"]["storageMode"] == "CONSUMED"
    assert (by_item["CLOUD_STORAGE_GB"]["blockGb"], by_item["CLOUD_STORAGE_GB"]["roundUp"]) == (
        100,
        True,
    )
    assert by_item["SERVER_AGENT"]["storageMode"] is None  # storage settings: storage only

    # Pricing gets the same values as RateSpecs.
    plan = await SubscriptionPlan.get(name="Gold")
    specs = await subscription_plans.rate_specs(plan)
    assert specs[BillingItem.SERVER_AGENT] == RateSpec(
        BillingItem.SERVER_AGENT, Decimal("1234567.8912"), Decimal("2.5")
    )
    assert specs[BillingItem.MANAGED_VM].rate is None
    assert specs[BillingItem.CLOUD_STORAGE_GB] == RateSpec(
        BillingItem.CLOUD_STORAGE_GB,
        Decimal("0.03"),
        Decimal(50),
        StorageMode.CONSUMED,
        100,
        True,
    )
    assert BillingItem.COMPUTE_HOUR not in specs

    # Replacing the list drops what was left out.
    body = await gql(
        SET_RATES,
        {"input": {"id": created["id"], "rates": [{"item": "COMPUTE_HOUR", "rate": "0.25"}]}},
        token=token,
    )
    assert body["data"]["subscriptionPlanSetRates"]["rates"] == [
        {
            "item": "COMPUTE_HOUR",
            "rate": "0.2500",
            "freeAllowance": "0.0000",
            "storageMode": None,
            "blockGb": None,
            "roundUp": None,
        }
    ]
    assert list(await subscription_plans.rate_specs(plan)) == [BillingItem.COMPUTE_HOUR]
    # An edit changes only what is given.
    body = await gql(UPDATE, {"input": {"id": created["id"], "dueDays": 14}}, token=token)
    edited = body["data"]["subscriptionPlanUpdate"]
    assert (edited["dueDays"], edited["taxRatePercent"], edited["name"]) == (14, "19.5000", "Gold")
    entries = await AuditEntry.filter(object_id=str(plan.id)).values_list(
        "action", "organization_id"
    )
    assert sorted(entries) == sorted(
        [
            (a, world.orgs["Provider"].id)
            for a in (
                "subscriptionPlanCreate",
                "subscriptionPlanSetRates",
                "subscriptionPlanUpdate",
            )
        ]
    )


# --- assignment -----------------------------------------------------------------------------


async def assign(gql, token: str, customer: Organization, plan: SubscriptionPlan, start=None):
    data: dict[str, Any] = {
        "customerId": customer_gid(customer),
        "planId": gid("SubscriptionPlan", plan.id),
    }
    if start is not None:
        data["billingStart"] = start
    return await gql(ASSIGN, {"input": data}, token=token)


async def test_who_a_plan_may_bill(world, gql) -> None:
    o = world.orgs
    provider_plan = await make_plan(o["Provider"], "Provider plan")
    r1_plan = await make_plan(o["R1"], "R1 plan")
    r2_plan = await make_plan(o["R2"], "R2 plan")
    admin, r1, r2 = world.token(*ADMIN), world.token(*R1_ADMIN), world.token(*R2_ADMIN)

    # The provider bills its resellers and its direct companies.
    body = await assign(gql, admin, o["R1"], provider_plan, "2026-01-01")
    got = body["data"]["planAssign"]
    assert (got["customerId"], got["billingStart"], got["customer"]["name"]) == (
        gid("Reseller", o["R1"].id),
        "2026-01-01",
        "R1",
    )
    assert got["plan"]["name"] == "Provider plan"
    body = await assign(gql, admin, o["P1"], provider_plan, "2026-02-01")
    assert body["data"]["planAssign"]["customerId"] == gid("Company", o["P1"].id)
    # A reseller bills its companies.
    body = await assign(gql, r1, o["A1"], r1_plan, "2026-03-01")
    assert body["data"]["planAssign"]["billingStart"] == "2026-03-01"

    # The provider does not bill a reseller's company, nor a reseller itself.
    body = await assign(gql, admin, o["A1"], provider_plan)
    assert (code(body), field_of(body)) == ("BAD_USER_INPUT", "input.customerId"), body
    body = await assign(gql, r1, o["R1"], r1_plan)
    assert (code(body), field_of(body)) == ("BAD_USER_INPUT", "input.customerId"), body
    # Another reseller's company, another reseller's plan, the provider's plan: not found.
    body = await assign(gql, r1, o["B1"], r1_plan)
    assert (code(body), field_of(body)) == ("NOT_FOUND", "input.customerId"), body
    body = await assign(gql, r1, o["A2"], r2_plan)
    assert (code(body), field_of(body)) == ("NOT_FOUND", "input.planId"), body
    body = await assign(gql, r1, o["A2"], provider_plan)
    assert (code(body), field_of(body)) == ("NOT_FOUND", "input.planId"), body
    body = await assign(gql, r2, o["A1"], r2_plan)
    assert (code(body), field_of(body)) == ("NOT_FOUND", "input.customerId"), body
    # A company id given as a location's id is refused before any lookup.
    body = await gql(
        ASSIGN,
        {
            "input": {
                "customerId": gid("Location", 1),
                "planId": gid("SubscriptionPlan", r1_plan.id),
            }
        },
        token=r1,
    )
    assert (code(body), field_of(body)) == ("BAD_USER_INPUT", "input.customerId"), body

    rows = (
        await PlanAssignment.all()
        .order_by("id")
        .values_list("customer_id", "plan_id", "billing_start")
    )
    assert rows == [
        (o["R1"].id, provider_plan.id, date(2026, 1, 1)),
        (o["P1"].id, provider_plan.id, date(2026, 2, 1)),
        (o["A1"].id, r1_plan.id, date(2026, 3, 1)),
    ]

    # Changing the plan keeps the billing start unless a new one is given.
    other = await make_plan(o["R1"], "R1 other")
    body = await assign(gql, r1, o["A1"], other)
    assert body["data"]["planAssign"]["billingStart"] == "2026-03-01"
    body = await assign(gql, r1, o["A1"], r1_plan, "2026-04-01")
    assert body["data"]["planAssign"]["billingStart"] == "2026-04-01"
    assert await PlanAssignment.filter(customer_id=o["A1"].id).count() == 1

    # Each sees the assignments of its own plans only.
    body = await gql(ASSIGNMENTS, {}, token=admin)
    assert {n["customerId"] for n in body["data"]["planAssignments"]["nodes"]} == {
        gid("Reseller", o["R1"].id),
        gid("Company", o["P1"].id),
    }
    body = await gql(ASSIGNMENTS, {"filter": {"customerId": gid("Company", o["A1"].id)}}, token=r2)
    assert body["data"]["planAssignments"]["nodes"] == []
    body = await gql(
        ASSIGNMENTS, {"filter": {"planId": gid("SubscriptionPlan", r1_plan.id)}}, token=r1
    )
    assert body["data"]["planAssignments"]["nodes"] == [
        {
            "customerId": gid("Company", o["A1"].id),
            "planId": gid("SubscriptionPlan", r1_plan.id),
            "billingStart": "2026-04-01",
        }
    ]

    # A plan that bills customers is not removed; the count is in the error.
    body = await gql(DELETE, {"id": gid("SubscriptionPlan", provider_plan.id)}, token=admin)
    assert code(body) == "CONFLICT" and body["errors"][0]["extensions"]["customers"] == 2, body
    body = await gql(READ, {"id": gid("SubscriptionPlan", provider_plan.id)}, token=admin)
    assert body["data"]["subscriptionPlan"]["assignedCustomerCount"] == 2

    # Unassigning: not another reseller's customer; then the plan can go.
    body = await gql(UNASSIGN, {"id": gid("Company", o["A1"].id)}, token=r2)
    assert code(body) == "NOT_FOUND", body
    body = await gql(UNASSIGN, {"id": gid("Reseller", o["R1"].id)}, token=r1)
    assert code(body) == "NOT_FOUND", body  # R1 does not keep the provider's assignments
    for customer in ("R1", "P1"):
        body = await gql(UNASSIGN, {"id": customer_gid(o[customer])}, token=admin)
        assert body["data"]["planUnassign"]["deletedId"].startswith(gid("PlanAssignment", 0)[:4])
    body = await gql(DELETE, {"id": gid("SubscriptionPlan", provider_plan.id)}, token=admin)
    assert body["data"]["subscriptionPlanDelete"]["deletedId"] == gid(
        "SubscriptionPlan", provider_plan.id
    )
    assert not await SubscriptionPlan.filter(id=provider_plan.id).exists()

    actions = await AuditEntry.filter(action__in=["planAssign", "planUnassign"]).values_list(
        "action", "outcome"
    )
    assert actions.count(("planAssign", "SUCCESS")) == 5
    assert actions.count(("planUnassign", "SUCCESS")) == 2
    # Each change in the owner's log, saying what it replaced.
    last = await AuditEntry.filter(action="planAssign").first()
    assert last is not None and last.organization_id == o["R1"].id
    assert (last.details["previousPlanId"], last.details["billingStart"]) == (
        other.id,
        "2026-04-01",
    )


async def test_a_default_billing_start_is_today(world) -> None:
    from datetime import UTC, datetime

    from app.services.actor import Actor

    plan = await make_plan(world.orgs["R1"])
    actor = Actor(await principal_for_bearer(world.token(*R1_ADMIN)))
    row = await subscription_plans.assign(actor, world.orgs["A2"].id, plan.id)
    assert row.billing_start == datetime.now(UTC).date()


# --- scope ----------------------------------------------------------------------------------


async def test_a_reseller_neither_reads_nor_edits_the_providers_plans(world, gql) -> None:
    provider_plan = await make_plan(world.orgs["Provider"], "Provider plan")
    r2_plan = await make_plan(world.orgs["R2"], "R2 plan")
    own = await make_plan(world.orgs["R1"], "R1 plan")
    r1 = world.token(*R1_ADMIN)
    for plan in (provider_plan, r2_plan):
        pid = gid("SubscriptionPlan", plan.id)
        for document, variables, name in (
            (READ, {"id": pid}, "subscriptionPlan"),
            (NODE, {"id": pid}, "node"),
            (UPDATE, {"input": {"id": pid, "name": "mine"}}, "subscriptionPlanUpdate"),
            (SET_RATES, {"input": {"id": pid, "rates": []}}, "subscriptionPlanSetRates"),
            (DELETE, {"id": pid}, "subscriptionPlanDelete"),
        ):
            body = await gql(document, variables, token=r1)
            assert outcome(body, name) == "NOT_FOUND", (plan.name, name, body)
    body = await gql(LIST, token=r1)
    assert body["data"]["subscriptionPlans"]["nodes"] == [
        {"id": gid("SubscriptionPlan", own.id), "name": "R1 plan"}
    ]
    # And the provider does not see the resellers' plans either: each keeps its own.
    body = await gql(LIST, token=world.token(*ADMIN))
    assert [n["name"] for n in body["data"]["subscriptionPlans"]["nodes"]] == ["Provider plan"]
    assert (await SubscriptionPlan.get(id=provider_plan.id)).name == "Provider plan"
    assert await SubscriptionPlan.all().count() == 3


# --- the matrix, for every principal --------------------------------------------------------


def keeps_plans_of(p: Principal, owner: Organization) -> bool:
    """The tree's rule, written out: staff seeing their whole provider or reseller keep its
    plans; nobody else keeps any."""
    return (
        p.organization_kind is not OrgKind.COMPANY
        and p.company_ids is None
        and p.location_ids is None
        and owner.id == p.organization_id
    )


def target(owner: Organization) -> Target:
    return Target(
        kind=SUBSCRIPTION_PLANS.kind, organization_id=owner.id, organization_kind=owner.kind
    )


def expected(p: Principal, action: Action, owner: Organization) -> str | None:
    if not engine.allows(p, SUBSCRIPTION_PLANS, action):
        return "FORBIDDEN"
    if not keeps_plans_of(p, owner):
        return "NOT_FOUND"
    return None if engine.can(p, SUBSCRIPTION_PLANS, action, target(owner)) else "FORBIDDEN"


CUSTOMER_OF = {"Provider": "P1", "R1": "A1", "R2": "B1"}


@pytest.mark.parametrize("edition", ["service_provider", "enterprise"])
async def test_plan_operations_follow_the_matrix(edition: str, use_settings, db, gql) -> None:
    from tests.factories import build_world

    use_settings(edition=edition)
    world = await build_world()
    answers: dict[str, set[str | None]] = {}
    for subject in subjects(edition):
        token = world.tokens[subject.key]
        p = await principal_for_bearer(token)
        own = world.orgs[subject.org]
        # The own organization's plans (when it keeps any) and the provider's.
        owners = sorted({own.id: own, world.orgs["Provider"].id: world.orgs["Provider"]}.items())
        visible: list[str] = []
        for _, owner in owners:
            if owner.kind is OrgKind.COMPANY:
                continue
            plan = await make_plan(owner, f"{subject.key} plan")
            pid = gid("SubscriptionPlan", plan.id)
            case = f"{subject.id} on {owner.name}"

            want = expected(p, Action.READ, owner)
            answers.setdefault("READ", set()).add(want)
            body = await gql(READ, {"id": pid}, token=token)
            assert outcome(body, "subscriptionPlan") == want, (case, body)
            if want is None:
                visible.append(pid)
                got = body["data"]["subscriptionPlan"]
                for name, action in (
                    ("viewerCanUpdate", Action.UPDATE),
                    ("viewerCanDelete", Action.DELETE),
                    ("viewerCanAssign", Action.UPDATE),
                ):
                    assert got[name] == engine.can(p, SUBSCRIPTION_PLANS, action, target(owner))

            want = expected(p, Action.UPDATE, owner)
            answers.setdefault("UPDATE", set()).add(want)
            body = await gql(UPDATE, {"input": {"id": pid, "dueDays": 10}}, token=token)
            assert outcome(body, "subscriptionPlanUpdate") == want, (case, body)
            body = await gql(
                SET_RATES,
                {"input": {"id": pid, "rates": [{"item": "SERVER_AGENT", "rate": "5"}]}},
                token=token,
            )
            assert outcome(body, "subscriptionPlanSetRates") == want, (case, body)
            assert await PlanRate.filter(plan_id=plan.id).count() == (1 if want is None else 0)
            customer = world.orgs[CUSTOMER_OF[owner.name]]
            body = await assign(gql, token, customer, plan, "2026-01-01")
            assert outcome(body, "planAssign") == want, (case, body)
            assigned = await PlanAssignment.filter(plan_id=plan.id).exists()
            assert assigned == (want is None)
            if assigned:
                body = await gql(UNASSIGN, {"id": customer_gid(customer)}, token=token)
                assert outcome(body, "planUnassign") is None, (case, body)

            want = expected(p, Action.DELETE, owner)
            answers.setdefault("DELETE", set()).add(want)
            body = await gql(DELETE, {"id": pid}, token=token)
            assert outcome(body, "subscriptionPlanDelete") == want, (case, body)
            assert await SubscriptionPlan.filter(id=plan.id).exists() == (want is not None)
            if want is None:
                visible.remove(pid)

        # Creation is always for one's own organization.
        body = await gql(
            CREATE, {"input": {"name": f"{subject.key} new", "currency": "USD"}}, token=token
        )
        want = expected(p, Action.CREATE, own)
        want = "FORBIDDEN" if want == "NOT_FOUND" else want
        answers.setdefault("CREATE", set()).add(want)
        assert outcome(body, "subscriptionPlanCreate") == want, (subject.id, body)
        if want is None:
            visible.append(body["data"]["subscriptionPlanCreate"]["id"])

        body = await gql(LIST, token=token)
        if not engine.allows(p, SUBSCRIPTION_PLANS, Action.READ):
            assert outcome(body, "subscriptionPlans") == "FORBIDDEN"
        else:
            got_ids = {n["id"] for n in body["data"]["subscriptionPlans"]["nodes"]}
            own_plans = await SubscriptionPlan.filter(owner_id=own.id).values_list("id", flat=True)
            assert got_ids == {gid("SubscriptionPlan", pk) for pk in own_plans}, subject.id
            assert set(visible) <= got_ids, (subject.id, body)
    # The principals exercise every answer: allowed, refused by the matrix, out of scope.
    for action, seen in answers.items():
        wanted = {None, "FORBIDDEN"} if action == "CREATE" else {None, "FORBIDDEN", "NOT_FOUND"}
        assert seen == wanted, (action, seen)


# --- query counts ---------------------------------------------------------------------------

PAGE = f"{{ subscriptionPlans(first: 50) {{ nodes {{ {PLAN_FIELDS} }} }} }}"


async def test_a_page_of_plans_costs_the_same_whatever_its_size(world, gql) -> None:
    token = world.token(*ADMIN)
    customers = [world.orgs["R1"], world.orgs["R2"], world.orgs["P1"]]

    async def build(n: int, start: int) -> None:
        for i in range(start, start + n):
            plan = await make_plan(world.orgs["Provider"], f"plan{i}")
            await PlanRate.bulk_create(
                [PlanRate(plan=plan, item=item, rate=Decimal(i)) for item in BillingItem]
            )
            if i < len(customers):
                await PlanAssignment.create(
                    customer=customers[i], plan=plan, billing_start=date(2026, 1, 1)
                )

    await build(2, 0)
    with count_queries() as small:
        body = await gql(PAGE, token=token)
    assert len(body["data"]["subscriptionPlans"]["nodes"]) == 2
    await build(10, 2)
    with count_queries() as large:
        body = await gql(PAGE, token=token)
    nodes = body["data"]["subscriptionPlans"]["nodes"]
    assert len(nodes) == 12
    assert sum(len(n["rates"]) for n in nodes) == 12 * len(BillingItem)
    assert [n["assignedCustomerCount"] for n in nodes] == [1, 1, 1] + [0] * 9
    assert large.count == small.count, f"{small}\n{large}"
    assert len(large.matching("plan_rates")) == 1 and len(large.matching("plan_assignments")) == 1


# --- concurrency (PostgreSQL) ---------------------------------------------------------------


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent transactions need PostgreSQL")
async def test_concurrent_assignments_and_removals(world) -> None:
    from app.errors import Conflict, NotFound
    from app.services.actor import Actor

    actor = Actor(await principal_for_bearer(world.token(*R1_ADMIN)))
    a2 = world.orgs["A2"]

    async def run(coro: Any) -> str:
        try:
            await coro
            return "ok"
        except (Conflict, NotFound) as exc:
            return exc.code

    for round_ in range(5):
        # Two first assignments of one customer: both succeed, one after the other.
        await PlanAssignment.filter(customer_id=a2.id).delete()
        plans = [await make_plan(world.orgs["R1"], f"r{round_}p{i}") for i in range(2)]
        results = await asyncio.gather(
            *(run(subscription_plans.assign(actor, a2.id, p.id, date(2026, 1, 1))) for p in plans)
        )
        assert results == ["ok", "ok"]
        rows = await PlanAssignment.filter(customer_id=a2.id).values_list("plan_id", flat=True)
        assert len(rows) == 1 and rows[0] in {p.id for p in plans}
        # Removing a plan while it is being assigned: one of them wins, never both.
        spare = await make_plan(world.orgs["R1"], f"r{round_}spare")
        results = await asyncio.gather(
            run(subscription_plans.delete(actor, spare.id)),
            run(subscription_plans.assign(actor, a2.id, spare.id)),
        )
        assert sorted(results) in (["NOT_FOUND", "ok"], ["CONFLICT", "ok"]), results
        exists = await SubscriptionPlan.filter(id=spare.id).exists()
        billed = await PlanAssignment.filter(plan_id=spare.id).exists()
        assert exists == billed, results
