"""Jobs in the API: `job` / `jobs` scoped by organization and functionality (NOT_FOUND, never
FORBIDDEN, outside it), `jobCancel` (QUEUED → CANCELLED, RUNNING → cancelRequested, finished →
CONFLICT, read-only → FORBIDDEN) and `auditLogExportStart`. Job state is driven through
app.services.jobs directly, with a dispatcher that only records ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz.matrix import Functionality
from app.graphql.ids import to_global_id
from app.jobs import registry
from app.models import AuditEntry, Job
from app.services import jobs
from app.services.actor import Actor

GA = "Service Provider Global Administrator"
OWNER = "Company Owner"
WORKER = "test-worker"

JOB_FIELDS = """
    id kind label state progressPercent progressMessage params result error attempts
    maxAttempts cancelRequested createdAt startedAt finishedAt heartbeatAt viewerCanCancel
    organization { id name kind } requestedBy { id email }
"""
JOB = "query($id: ID!) { job(id: $id) {" + JOB_FIELDS + "} }"
JOBS = (
    "query($first: Int, $after: String, $filter: JobFilter) {"
    " jobs(first: $first, after: $after, filter: $filter) {"
    " totalCount pageInfo { hasNextPage endCursor } nodes { id kind state } } }"
)
CANCEL = "mutation($id: ID!) { jobCancel(id: $id) { id state cancelRequested viewerCanCancel } }"
EXPORT = (
    "mutation($input: AuditLogExportInput!) { auditLogExportStart(input: $input) {"
    + JOB_FIELDS
    + "} }"
)


async def _noop(ctx):  # type: ignore[no-untyped-def]
    return None


def ensure_kind(name: str, functionality: Functionality) -> None:
    """Test-only kinds, registered once per process (the registry refuses duplicates)."""
    registry.load_kinds()
    if name not in registry.KINDS:
        registry.register(registry.JobKind(name, f"Test {name}", functionality, _noop))


LOGS_KIND = "test.logs"
MONITORING_KIND = "test.monitoring"


@pytest.fixture
def dispatched() -> Iterator[list[int]]:
    previous = jobs._dispatcher
    sent: list[int] = []
    jobs.set_dispatcher(lambda job_id, delay_ms: sent.append(job_id))
    ensure_kind(LOGS_KIND, Functionality.LOGS)
    ensure_kind(MONITORING_KIND, Functionality.MONITORING)
    yield sent
    jobs.set_dispatcher(previous)


def gid(pk: int) -> str:
    return to_global_id("Job", pk)


async def new_job(world, org: str = "A1", kind: str = LOGS_KIND, actor: Actor | None = None) -> Job:
    job, created = await jobs.create(actor, kind, world.orgs[org], {"n": 1})
    assert created
    return job


def code(body: dict) -> str:
    return body["errors"][0]["extensions"]["code"]


async def test_job_is_visible_to_its_organizations_staff_with_the_logs_row(gql, world, dispatched):
    job = await new_job(world)
    assert dispatched == [job.id]

    for org in ("R1", "Provider"):
        body = await gql(JOB, {"id": gid(job.id)}, token=world.token(org, GA))
        assert "errors" not in body, body
        got = body["data"]["job"]
        assert got["id"] == gid(job.id)
        assert (got["kind"], got["label"], got["state"]) == (LOGS_KIND, "Test test.logs", "QUEUED")
        assert got["organization"] == {
            "id": to_global_id("Company", world.orgs["A1"].id),
            "name": "A1",
            "kind": "COMPANY",
        }
        assert got["params"] == {"n": 1}
        assert (got["progressPercent"], got["attempts"], got["maxAttempts"]) == (0, 0, 3)
        assert got["requestedBy"] is None and got["viewerCanCancel"] is True

        listed = (await gql(JOBS, {}, token=world.token(org, GA)))["data"]["jobs"]
        assert [n["id"] for n in listed["nodes"]] == [gid(job.id)]


async def test_job_of_another_tenant_is_not_found_and_absent(gql, world, dispatched):
    job = await new_job(world)
    body = await gql(JOB, {"id": gid(job.id)}, token=world.token("R2", GA))
    assert code(body) == "NOT_FOUND"
    assert body["data"] == {"job": None}
    listed = await gql(JOBS, {}, token=world.token("R2", GA))
    assert listed["data"]["jobs"]["nodes"] == [] and listed["data"]["jobs"]["totalCount"] == 0


async def test_company_owner_has_no_logs_row_so_the_job_is_not_found(gql, world, dispatched):
    job = await new_job(world)
    monitoring = await new_job(world, kind=MONITORING_KIND)
    token = world.token("A1", OWNER)
    assert code(await gql(JOB, {"id": gid(job.id)}, token=token)) == "NOT_FOUND"
    listed = (await gql(JOBS, {}, token=token))["data"]["jobs"]
    # The Monitoring job of the same company is readable by the owner; the Logs one is not.
    assert [n["id"] for n in listed["nodes"]] == [gid(monitoring.id)]


async def test_jobs_need_authentication(gql, world, dispatched):
    job = await new_job(world)
    assert code(await gql(JOB, {"id": gid(job.id)})) == "UNAUTHENTICATED"
    assert code(await gql(JOBS, {})) == "UNAUTHENTICATED"


async def test_jobs_newest_first_paginated_and_filtered(gql, world, dispatched):
    a = await new_job(world, "A1")
    b = await new_job(world, "A2")
    c = await new_job(world, "A1", MONITORING_KIND)
    await jobs.claim(c.id, WORKER)
    token = world.token("R1", GA)

    page = (await gql(JOBS, {"first": 2}, token=token))["data"]["jobs"]
    assert [n["id"] for n in page["nodes"]] == [gid(c.id), gid(b.id)]
    assert page["pageInfo"]["hasNextPage"] is True and page["totalCount"] == 3
    rest = (await gql(JOBS, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=token))[
        "data"
    ]["jobs"]
    assert [n["id"] for n in rest["nodes"]] == [gid(a.id)]
    assert rest["pageInfo"]["hasNextPage"] is False

    async def ids(filter: dict) -> list[str]:
        body = await gql(JOBS, {"filter": filter}, token=token)
        assert "errors" not in body, body
        return [n["id"] for n in body["data"]["jobs"]["nodes"]]

    assert await ids({"state": "RUNNING"}) == [gid(c.id)]
    assert await ids({"kind": LOGS_KIND}) == [gid(b.id), gid(a.id)]
    a1 = to_global_id("Company", world.orgs["A1"].id)
    assert await ids({"organizationId": a1}) == [gid(c.id), gid(a.id)]
    assert await ids({"organizationId": a1, "kind": LOGS_KIND, "state": "QUEUED"}) == [gid(a.id)]
    bad = await gql(JOBS, {"filter": {"organizationId": gid(a.id)}}, token=token)
    assert code(bad) == "BAD_USER_INPUT"
    assert bad["errors"][0]["extensions"]["field"] == "filter.organizationId"


async def test_requester_outside_the_viewers_scope_reads_as_null(gql, world, dispatched):
    provider_ga = Actor(await principal_for_bearer(world.token("Provider", GA)))
    job = await new_job(world, actor=provider_ga)
    provider_view = await gql(JOB, {"id": gid(job.id)}, token=world.token("Provider", GA))
    assert provider_view["data"]["job"]["requestedBy"] == {
        "id": to_global_id("User", world.user("Provider", GA).id),
        "email": world.user("Provider", GA).email,
    }
    reseller_view = await gql(JOB, {"id": gid(job.id)}, token=world.token("R1", GA))
    assert "errors" not in reseller_view, reseller_view
    assert reseller_view["data"]["job"]["requestedBy"] is None


async def test_cancel_a_queued_job_cancels_it_at_once(gql, world, dispatched):
    job = await new_job(world)
    body = await gql(CANCEL, {"id": gid(job.id)}, token=world.token("R1", GA))
    assert body["data"]["jobCancel"] == {
        "id": gid(job.id),
        "state": "CANCELLED",
        "cancelRequested": True,
        "viewerCanCancel": False,
    }
    row = await Job.get(id=job.id)
    assert row.state == "CANCELLED" and row.finished_at is not None
    entry = await AuditEntry.get(action="jobCancel")
    assert entry.object_id == str(job.id) and entry.outcome == "SUCCESS"


async def test_cancel_a_running_job_asks_it_to_stop(gql, world, dispatched):
    job = await new_job(world)
    assert await jobs.claim(job.id, WORKER) is not None
    body = await gql(CANCEL, {"id": gid(job.id)}, token=world.token("R1", GA))
    assert body["data"]["jobCancel"] == {
        "id": gid(job.id),
        "state": "RUNNING",
        "cancelRequested": True,
        "viewerCanCancel": True,
    }
    assert await jobs.cancel_requested(job.id) is True


async def test_cancel_a_finished_job_is_a_conflict(gql, world, dispatched):
    job = await new_job(world)
    await jobs.claim(job.id, WORKER)
    assert await jobs.succeed(job.id, WORKER, {"rows": 3})
    body = await gql(CANCEL, {"id": gid(job.id)}, token=world.token("R1", GA))
    assert code(body) == "CONFLICT"
    assert (await Job.get(id=job.id)).state == "SUCCEEDED"


async def test_cancel_with_only_read_on_the_functionality_is_forbidden(gql, world, dispatched):
    # Monitoring is "Read" for a Global Administrator: they see the job, may not cancel it.
    job = await new_job(world, kind=MONITORING_KIND)
    token = world.token("R1", GA)
    seen = await gql(JOB, {"id": gid(job.id)}, token=token)
    assert seen["data"]["job"]["viewerCanCancel"] is False
    body = await gql(CANCEL, {"id": gid(job.id)}, token=token)
    assert code(body) == "FORBIDDEN"
    row = await Job.get(id=job.id)
    assert row.state == "QUEUED" and row.cancel_requested is False


async def test_cancel_out_of_scope_is_not_found(gql, world, dispatched):
    job = await new_job(world)
    assert code(await gql(CANCEL, {"id": gid(job.id)}, token=world.token("R2", GA))) == "NOT_FOUND"
    assert code(await gql(CANCEL, {"id": gid(job.id)}, token=world.token("A1", OWNER))) == (
        "NOT_FOUND"
    )
    assert (await Job.get(id=job.id)).state == "QUEUED"


def ensure_export_kind() -> bool:
    """The worker engineer registers "audit_log_export"; stand in for it when missing.
    Returns whether the real kind was there."""
    registry.load_kinds()
    if "audit_log_export" in registry.KINDS:
        return True
    ensure_kind("audit_log_export", Functionality.LOGS)
    return False


async def test_audit_log_export_start_queues_a_job_for_the_callers_organization(
    gql, world, dispatched
):
    ensure_export_kind()
    user = world.user("R1", GA)
    body = await gql(
        EXPORT,
        {"input": {"from": "2026-01-01T00:00:00+00:00", "to": "2026-02-01T00:00:00+00:00"}},
        token=world.token("R1", GA),
    )
    assert "errors" not in body, body
    got = body["data"]["auditLogExportStart"]
    assert (got["kind"], got["state"]) == ("audit_log_export", "QUEUED")
    assert got["organization"]["id"] == to_global_id("Reseller", world.orgs["R1"].id)
    assert got["requestedBy"] == {"id": to_global_id("User", user.id), "email": user.email}
    assert got["params"] == {"from": "2026-01-01T00:00:00+00:00", "to": "2026-02-01T00:00:00+00:00"}
    row = await Job.get(kind="audit_log_export")
    assert row.functionality == "LOGS" and row.organization_id == world.orgs["R1"].id  # type: ignore[attr-defined]
    assert dispatched == [row.id]
    assert await AuditEntry.filter(action="jobCreate", object_id=str(row.id)).count() == 1
    # The caller sees it in their list; another reseller does not.
    listed = (await gql(JOBS, {}, token=world.token("R1", GA)))["data"]["jobs"]["nodes"]
    assert [n["id"] for n in listed] == [got["id"]]
    assert code(await gql(JOB, {"id": got["id"]}, token=world.token("R2", GA))) == "NOT_FOUND"


async def test_audit_log_export_start_is_guarded_and_checks_its_period(gql, world, dispatched):
    ensure_export_kind()
    body = await gql(EXPORT, {"input": {}}, token=world.token("A1", OWNER))
    assert code(body) == "FORBIDDEN"
    body = await gql(
        EXPORT,
        {"input": {"from": "2026-02-01T00:00:00+00:00", "to": "2026-01-01T00:00:00+00:00"}},
        token=world.token("R1", GA),
    )
    assert code(body) == "BAD_USER_INPUT" and body["errors"][0]["extensions"]["field"] == "input.to"
    assert await Job.all().count() == 0 and dispatched == []


async def test_a_job_resolves_through_node_within_scope(world, gql):
    from app.graphql.ids import to_global_id
    from app.models import Job

    job = await Job.create(
        kind="audit_log_export", functionality="LOGS", organization=world.orgs["A1"]
    )
    gid = to_global_id("Job", job.id)
    query = "query($id: ID!) { node(id: $id) { __typename id } }"
    seen = await gql(
        query, {"id": gid}, token=world.token("R1", "Service Provider Global Administrator")
    )
    assert seen["data"]["node"] == {"__typename": "Job", "id": gid}
    hidden = await gql(
        query, {"id": gid}, token=world.token("R2", "Service Provider Global Administrator")
    )
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert hidden["data"] == {"node": None}
