"""Invoice life cycle and access: paid / unpaid / overdue and the illegal transitions
(CONFLICT), resending, correction (credit note + new revision, the original CREDITED), the
Invoices row of the matrix for every principal of both editions (expected from the engine),
cross-tenant NOT_FOUND, and constant queries for a page of invoices with their lines."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import INVOICES
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.errors import Conflict
from app.models import AuditEntry, Job, Organization, OrgKind
from app.models.billing import (
    BillingItem,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    OutboxMessage,
    PlanRate,
)
from app.models.inventory import AgentEdition
from app.services import invoices, jobs
from app.services.actor import Actor
from app.services.invoice_generation import generate, generate_many
from tests.permission_cases import Subject, outcome
from tests.querycount import count_queries
from tests.test_allocations import ALL_SUBJECTS, code, gid
from tests.test_invoices import OCT1, agents, run_job, simple_billing

R1_ADMIN = ("R1", "Service Provider Administrator")
FIELDS = """id number kind state revision total subtotal tax discount currency dueOn issuedOn
  periodStart periodEnd generated pdfUrl customerName issuerName viewerCanMarkPaid
  viewerCanMarkUnpaid viewerCanResend viewerCanCorrect"""
READ = f"query($id: ID!) {{ invoice(id: $id) {{ {FIELDS} }} }}"
LIST = f"""query($filter: InvoiceFilter, $first: Int) {{ invoices(first: $first, filter: $filter)
  {{ totalCount nodes {{ {FIELDS} }} }} }}"""
PAID = "mutation($id: ID!) { invoiceMarkPaid(id: $id) { id state paidAt } }"
UNPAID = "mutation($id: ID!) { invoiceMarkUnpaid(id: $id) { id state paidAt } }"
RESEND = "mutation($id: ID!) { invoiceResend(id: $id) { id sentAt } }"
CORRECT = """mutation($id: ID!) { invoiceCorrect(id: $id) {
  corrected { id state creditNote { id } replacedBy { id } }
  creditNote { id kind state revision total lines { quantity amount } corrects { id } }
  invoice { id kind state revision total corrects { id } } } }"""


async def a1_invoice(world) -> Invoice:
    await simple_billing(world)
    (invoice,) = await generate(world.orgs["A1"].id, OCT1)
    return invoice


def iid(invoice: Invoice) -> str:
    return gid("Invoice", invoice.id)


async def state_of(invoice: Invoice) -> InvoiceState:
    return (await Invoice.get(id=invoice.id)).state


# --- states ---------------------------------------------------------------------------------


async def test_paid_and_unpaid_by_hand_and_the_illegal_moves(world, gql, dispatched) -> None:
    invoice = await a1_invoice(world)
    token = world.token(*R1_ADMIN)
    body = await gql(PAID, {"id": iid(invoice)}, token=token)
    assert body["data"]["invoiceMarkPaid"]["state"] == "PAID"
    assert body["data"]["invoiceMarkPaid"]["paidAt"] is not None
    assert code(await gql(PAID, {"id": iid(invoice)}, token=token)) == "CONFLICT"
    body = await gql(UNPAID, {"id": iid(invoice)}, token=token)
    # Back to UNPAID, or OVERDUE when its due date (31 October) has passed already.
    back = "OVERDUE" if invoice.due_on and invoice.due_on < invoices.today() else "UNPAID"
    assert body["data"]["invoiceMarkUnpaid"] == {"id": iid(invoice), "state": back, "paidAt": None}
    assert code(await gql(UNPAID, {"id": iid(invoice)}, token=token)) == "CONFLICT"
    outcomes = (
        await AuditEntry.filter(object_id=str(invoice.id))
        .order_by("id")
        .values_list("action", "outcome")
    )
    assert outcomes[1:] == [
        ("invoiceMarkPaid", "SUCCESS"),
        ("invoiceMarkPaid", "FAILURE"),
        ("invoiceMarkUnpaid", "SUCCESS"),
        ("invoiceMarkUnpaid", "FAILURE"),
    ]


async def test_overdue_after_the_due_date_and_back_to_overdue_when_unpaid(
    world, dispatched
) -> None:
    await simple_billing(world)
    await generate_many([world.orgs[k].id for k in ("A1", "A2", "B1")], OCT1)
    a1, a2, b1 = [await Invoice.get(customer_id=world.orgs[k].id) for k in ("A1", "A2", "B1")]
    assert a1.due_on == date(2026, 10, 31)
    actor = Actor(await principal_for_bearer(world.token(*R1_ADMIN)))
    await invoices.mark_paid(actor, a2.id)
    await Invoice.filter(id=b1.id).update(state=InvoiceState.INFORMATION)
    assert await invoices.mark_overdue(date(2026, 10, 31)) == 0
    job, _ = await jobs.create(None, "billing.overdue", None, {"on": "2026-11-01"})
    assert await run_job(job.id) == "succeeded"
    assert (await Job.get(id=job.id)).result == {"on": "2026-11-01", "overdue": 1}
    assert [await state_of(i) for i in (a1, a2, b1)] == [
        InvoiceState.OVERDUE,
        InvoiceState.PAID,
        InvoiceState.INFORMATION,
    ]
    # Paid by hand, then unpaid again after the due date: straight back to OVERDUE.
    await invoices.mark_paid(actor, a1.id)
    assert (await invoices.mark_unpaid(actor, a1.id, date(2026, 11, 2))).state is (
        InvoiceState.OVERDUE
    )
    await invoices.mark_paid(actor, a1.id)
    assert (await invoices.mark_unpaid(actor, a1.id, date(2026, 10, 2))).state is (
        InvoiceState.UNPAID
    )
    entries = await AuditEntry.filter(action="invoiceMarkOverdue").order_by("id")
    assert [(e.outcome, e.details) for e in entries] == [
        ("SUCCESS", {"on": "2026-10-31", "changed": 0}),
        ("SUCCESS", {"on": "2026-11-01", "changed": 1}),
    ]


async def test_resend_queues_the_notification_again(world, gql, dispatched) -> None:
    invoice = await a1_invoice(world)
    before = await OutboxMessage.all().count()
    body = await gql(RESEND, {"id": iid(invoice)}, token=world.token(*R1_ADMIN))
    assert body["data"]["invoiceResend"]["sentAt"] is not None
    assert await OutboxMessage.all().count() == before + 2  # the owner and the auditor
    assert (await Invoice.get(id=invoice.id)).sent_at is not None
    assert await AuditEntry.exists(action="invoiceResend", outcome="SUCCESS")


# --- correction --------------------------------------------------------------------------------


async def test_correction_issues_a_credit_note_and_a_new_revision(world, dispatched) -> None:
    await agents(world, "A1", AgentEdition.SERVER, 2)  # 3 server agents in all
    original = await a1_invoice(world)
    assert original.total == Decimal(30)
    plan_id = original.plan_id  # type: ignore[attr-defined]
    await PlanRate.filter(plan_id=plan_id, item=BillingItem.SERVER_AGENT).update(
        rate=Decimal("12.5")
    )
    actor = Actor(await principal_for_bearer(world.token(*R1_ADMIN)))
    day = date(2026, 10, 20)
    note, new = await invoices.correct(actor, original.id, day)
    note = await Invoice.get(id=note.id)
    new = await Invoice.get(id=new.id)
    assert (note.kind, note.state, note.revision, note.due_on) == (
        InvoiceKind.CREDIT_NOTE,
        InvoiceState.INFORMATION,
        1,
        None,
    )
    assert (note.subtotal, note.total) == (Decimal(-30), Decimal(-30))
    assert note.corrects_id == original.id  # type: ignore[attr-defined]
    assert [
        (x.quantity, x.billable_quantity, x.rate, x.amount)
        for x in await InvoiceLine.filter(invoice_id=note.id)
    ] == [(Decimal(-3), Decimal(-3), Decimal(10), Decimal(-30))]
    # The replacement: same period, the original's plan (10, not the 12.50 of now: plan edits
    # affect only future invoices), revision 1, due from today.
    assert (new.kind, new.state, new.revision, new.total) == (
        InvoiceKind.INVOICE,
        InvoiceState.UNPAID,
        1,
        Decimal(30),
    )
    assert (new.period_start, new.period_end, new.issued_on, new.due_on) == (
        date(2026, 9, 1),
        date(2026, 9, 30),
        day,
        date(2026, 11, 19),
    )
    assert await state_of(original) is InvoiceState.CREDITED
    assert [original.number, note.number, new.number] == [
        "R1-2026-000001",
        "R1-2026-000002",
        "R1-2026-000003",
    ]
    with pytest.raises(Conflict):
        await invoices.correct(actor, original.id, day)
    with pytest.raises(Conflict):
        await invoices.correct(actor, note.id, day)
    with pytest.raises(Conflict):
        await invoices.mark_paid(actor, original.id)
    # Nothing was deleted, and the next run starts after the corrected period.
    assert await Invoice.all().count() == 3
    (november,) = await generate(world.orgs["A1"].id, date(2026, 11, 1))
    assert november.period_start == OCT1


async def test_correction_through_graphql_links_the_three(world, gql, dispatched) -> None:
    original = await a1_invoice(world)
    body = await gql(CORRECT, {"id": iid(original)}, token=world.token(*R1_ADMIN))
    got = body["data"]["invoiceCorrect"]
    note, new = got["creditNote"], got["invoice"]
    assert got["corrected"] == {
        "id": iid(original),
        "state": "CREDITED",
        "creditNote": {"id": note["id"]},
        "replacedBy": {"id": new["id"]},
    }
    assert (note["kind"], note["state"], note["revision"], note["total"]) == (
        "CREDIT_NOTE",
        "INFORMATION",
        1,
        "-10.00",
    )
    assert note["lines"] == [{"quantity": "-1", "amount": "-10.00"}]
    assert note["corrects"] == {"id": iid(original)} == new["corrects"]
    assert (new["kind"], new["state"], new["revision"], new["total"]) == (
        "INVOICE",
        "UNPAID",
        1,
        "10.00",
    )
    body = await gql(READ, {"id": note["id"]}, token=world.token(*R1_ADMIN))
    flags = {k: v for k, v in body["data"]["invoice"].items() if k.startswith("viewerCan")}
    assert flags == {
        "viewerCanMarkPaid": False,
        "viewerCanMarkUnpaid": False,
        "viewerCanResend": True,
        "viewerCanCorrect": False,
    }


# --- the matrix, for every principal -----------------------------------------------------------


def customer_in_tree(p: Principal, customer: Organization) -> bool:
    """The tree's rule written out (not the SQL under test)."""
    if p.company_ids is not None:
        return customer.id in p.company_ids
    if p.organization_kind is OrgKind.PROVIDER:
        return True
    if p.organization_kind is OrgKind.RESELLER:
        parent = customer.parent_id  # type: ignore[attr-defined]
        return customer.id == p.organization_id or parent == p.organization_id
    return customer.id == p.organization_id


def target(invoice: Invoice, customer: Organization) -> Target:
    return Target(
        kind="invoice",
        organization_id=customer.id,
        organization_kind=customer.kind,
        generated=invoice.generated,
    )


def visible(p: Principal, invoice: Invoice, customer: Organization) -> bool:
    ours = p.organization_id in (invoice.issuer_id, invoice.customer_id)  # type: ignore[attr-defined]
    return (
        engine.allows(p, INVOICES, Action.READ)
        and customer_in_tree(p, customer)
        and ours
        and engine.can(p, INVOICES, Action.READ, target(invoice, customer))
    )


def expected(p: Principal, action: Action, invoice: Invoice, customer: Organization) -> str | None:
    if not engine.allows(p, INVOICES, action):
        return "FORBIDDEN"
    if not visible(p, invoice, customer):
        return "NOT_FOUND"
    return None if engine.can(p, INVOICES, action, target(invoice, customer)) else "FORBIDDEN"


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_the_invoices_row_for_every_principal(
    subject: Subject, use_settings, db, gql, dispatched
) -> None:
    from tests.factories import build_world

    use_settings(edition=subject.edition)
    world = await build_world()
    await simple_billing(world)
    keys = ("A1", "A2", "B1", "P1", "R1", "R2")
    await generate_many([world.orgs[k].id for k in keys], OCT1)
    # One invoice still being written (not generated): only full-cell roles may see it.
    draft = await Invoice.get(customer_id=world.orgs["A2"].id)
    draft.pk = None  # type: ignore[assignment]
    draft.period_start, draft.number, draft.generated = date(2026, 10, 1), "R1-DRAFT", False
    await draft.save()
    token = world.tokens[subject.key]
    p = await principal_for_bearer(token)
    rows = await Invoice.all().select_related("customer").order_by("id")
    want_list = sorted(iid(r) for r in rows if visible(p, r, r.customer))

    body = await gql(LIST, {"first": 100}, token=token)
    if engine.allows(p, INVOICES, Action.READ):
        assert sorted(n["id"] for n in body["data"]["invoices"]["nodes"]) == want_list
        for node in body["data"]["invoices"]["nodes"]:
            row = next(r for r in rows if iid(r) == node["id"])
            may = engine.can(p, INVOICES, Action.UPDATE, target(row, row.customer))
            assert node["viewerCanResend"] is may
            assert node["viewerCanMarkPaid"] is (may and row.state is InvoiceState.UNPAID)
    else:
        assert outcome(body, "invoices") == "FORBIDDEN"
    for row in rows:
        body = await gql(READ, {"id": iid(row)}, token=token)
        assert outcome(body, "invoice") == expected(p, Action.READ, row, row.customer), row.number
        body = await gql(PAID, {"id": iid(row)}, token=token)
        want = expected(p, Action.UPDATE, row, row.customer)
        if want is None and row.state is not InvoiceState.UNPAID:
            want = "CONFLICT"
        assert outcome(body, "invoiceMarkPaid") == want, row.number
    body = await gql("mutation { invoiceGenerate(input: {}) { id } }", token=token)
    allowed = engine.allows(p, INVOICES, Action.CREATE) and engine.can(
        p, INVOICES, Action.CREATE, Target(kind="invoice", generated=False)
    )
    assert outcome(body, "invoiceGenerate") == (None if allowed else "FORBIDDEN")


def test_the_matrix_cases_cover_both_answers() -> None:
    """The Invoices row really differs between the principals above: full, read only,
    generated only, and none at all."""
    from tests.permission_cases import make_principal

    read = {
        engine.allows(make_principal(s.portal, s.role), INVOICES, Action.READ) for s in ALL_SUBJECTS
    }
    update = {
        engine.allows(make_principal(s.portal, s.role), INVOICES, Action.UPDATE)
        for s in ALL_SUBJECTS
    }
    assert read == update == {True, False}
    auditor = make_principal(
        next(s for s in ALL_SUBJECTS if s.role == "Service Provider Invoice Auditor").portal,
        "Service Provider Invoice Auditor",
    )
    generated = Target(kind="invoice", generated=True)
    draft = Target(kind="invoice", generated=False)
    assert engine.can(auditor, INVOICES, Action.UPDATE, generated)
    assert not engine.can(auditor, INVOICES, Action.UPDATE, draft)
    assert not engine.can(auditor, INVOICES, Action.CREATE, draft)
    location_admin = make_principal(
        next(s for s in ALL_SUBJECTS if s.role == "Location Administrator").portal,
        "Location Administrator",
    )
    assert not engine.allows(location_admin, INVOICES, Action.READ)


# --- cross-tenant ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who",
    [
        ("R2", "Service Provider Global Administrator"),
        ("A2", "Company Owner"),
        ("B1", "Company Invoice Auditor"),
        # The provider does not see what a reseller bills its companies.
        ("Provider", "Service Provider Global Administrator"),
    ],
)
async def test_other_tenants_invoices_are_not_found(world, gql, dispatched, who) -> None:
    invoice = await a1_invoice(world)
    token = world.token(*who)
    assert code(await gql(READ, {"id": iid(invoice)}, token=token)) == "NOT_FOUND"
    node = "query($id: ID!) { node(id: $id) { id } }"
    assert code(await gql(node, {"id": iid(invoice)}, token=token)) == "NOT_FOUND"
    if who[1] != "Company Invoice Auditor" and who[0] != "A2":
        for document in (PAID, RESEND, CORRECT):
            assert code(await gql(document, {"id": iid(invoice)}, token=token)) == "NOT_FOUND"
    assert await state_of(invoice) is InvoiceState.UNPAID
    body = await gql(LIST, {}, token=token)
    assert iid(invoice) not in [n["id"] for n in body["data"]["invoices"]["nodes"]]


async def test_the_company_reads_its_own_invoices(world, gql, dispatched) -> None:
    invoice = await a1_invoice(world)
    for role in ("Company Owner", "Company Administrator", "Company Invoice Auditor"):
        body = await gql(LIST, {}, token=world.token("A1", role))
        nodes = body["data"]["invoices"]["nodes"]
        assert [(n["id"], n["issuerName"], n["total"]) for n in nodes] == [
            (iid(invoice), "R1", "10.00")
        ]
        assert nodes[0]["viewerCanMarkPaid"] is False
        assert code(await gql(PAID, {"id": iid(invoice)}, token=world.token("A1", role))) == (
            "FORBIDDEN"
        )
    assert code(await gql(LIST, {}, token=world.token("A1", "Location Administrator"))) == (
        "FORBIDDEN"
    )


async def test_list_filters(world, gql, dispatched) -> None:
    await simple_billing(world)
    await generate_many([world.orgs[k].id for k in ("A1", "A2")], date(2026, 11, 1))
    token = world.token(*R1_ADMIN)
    a1 = gid("Company", world.orgs["A1"].id)
    body = await gql(LIST, {"filter": {"customerId": a1}}, token=token)
    nodes = body["data"]["invoices"]["nodes"]
    assert [n["periodStart"] for n in nodes] == ["2026-10-01", "2026-09-01"]  # newest first
    body = await gql(LIST, {"filter": {"from": "2026-10-02", "to": "2026-11-01"}}, token=token)
    assert {n["issuedOn"] for n in body["data"]["invoices"]["nodes"]} == {"2026-11-01"}
    assert body["data"]["invoices"]["totalCount"] == 2
    await Invoice.filter(number="R1-2026-000001").update(state=InvoiceState.PAID)
    body = await gql(LIST, {"filter": {"state": "PAID", "kind": "INVOICE"}}, token=token)
    assert [n["number"] for n in body["data"]["invoices"]["nodes"]] == ["R1-2026-000001"]
    bad = {"filter": {"customerId": gid("Location", 1)}}
    assert code(await gql(LIST, bad, token=token)) == "BAD_USER_INPUT"


# --- query counts ------------------------------------------------------------------------------


PAGE = """query($first: Int) { invoices(first: $first) { nodes { id number total customerName
  viewerCanCorrect lines { item quantity rate amount } creditNote { id number }
  replacedBy { id } corrects { id number } } } }"""


async def test_a_page_of_invoices_with_lines_costs_the_same_whatever_its_size(
    world, gql, dispatched
) -> None:
    await simple_billing(world)
    await agents(world, "A1", AgentEdition.WORKSTATION, 2)
    await generate_many([world.orgs[k].id for k in ("A1", "A2")], date(2027, 1, 1))
    actor = Actor(await principal_for_bearer(world.token(*R1_ADMIN)))
    first = await Invoice.filter(customer_id=world.orgs["A1"].id).order_by("id").first()
    assert first is not None
    await invoices.correct(actor, first.id, date(2027, 1, 2))
    token = world.token(*R1_ADMIN)
    counts = []
    for size in (2, 10):
        with count_queries() as queries:
            body = await gql(PAGE, {"first": size}, token=token)
        assert len(body["data"]["invoices"]["nodes"]) == size, body
        counts.append(queries.count)
    assert counts[0] == counts[1], counts
    assert counts[0] <= 6, counts
