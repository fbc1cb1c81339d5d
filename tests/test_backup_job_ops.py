"""Operating backup jobs: start / stop / retry / enable / disable with every legal and illegal
transition (CONFLICT with its reason), settings (name, cron schedule), agent jobs created by a
company or by staff for it (assigned by the provider), removal; the matrix decides who may do
what for every principal of the world, jobs outside scope are NOT_FOUND, and every attempt
leaves an audit entry."""

from __future__ import annotations

from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz import capabilities, engine
from app.authz.matrix import Action
from app.errors import Conflict
from app.graphql.ids import to_global_id
from app.models import AuditEntry, BackupJob, BackupJobKind, JobRunState, SessionResult
from app.services import backup_jobs, workloads
from app.services.actor import Actor
from tests.workload_fleet import build_fleet

OWNER = "Company Owner"
GA = "Service Provider Global Administrator"
JOB = "id runState pendingCommand enabled lastResult name schedule assignedByProvider kind"
START = "mutation($id: ID!) { backupJobStart(id: $id) { " + JOB + " } }"
STOP = "mutation($id: ID!) { backupJobStop(id: $id) { " + JOB + " } }"
RETRY = "mutation($id: ID!) { backupJobRetry(id: $id) { " + JOB + " } }"
ENABLE = "mutation($id: ID!) { backupJobEnable(id: $id) { " + JOB + " } }"
DISABLE = "mutation($id: ID!) { backupJobDisable(id: $id) { " + JOB + " } }"
UPDATE = (
    "mutation($input: BackupJobUpdateInput!) { backupJobUpdate(input: $input) { " + JOB + " } }"
)
CREATE = (
    "mutation($input: BackupJobCreateInput!) { backupJobCreate(input: $input) { "
    + JOB
    + " functionality viewerCanOperate viewerCanConfigure } }"
)
DELETE = "mutation($id: ID!) { backupJobDelete(id: $id) { deletedId } }"


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


def message(body: dict[str, Any]) -> str:
    return body["errors"][0]["message"]


@pytest.fixture
async def fleet(world):
    return await build_fleet(world)


async def _job(fleet, location_key: str, assigned: bool = False) -> BackupJob:
    computer = fleet.computer(location_key)
    return await BackupJob.get(computer_id=computer.id, assigned_by_provider=assigned)


async def _set(job: BackupJob, **changes: Any) -> None:
    await BackupJob.filter(id=job.id).update(**changes)


async def test_run_state_transitions_and_refusals(world, fleet, gql):
    token = world.token("A1", OWNER)
    job = await _job(fleet, "A1-Default")
    jid = gid("BackupJob", job.id)

    body = await gql(START, {"id": jid}, token=token)
    assert body["data"]["backupJobStart"]["runState"] == "STARTING"
    assert body["data"]["backupJobStart"]["pendingCommand"] == "START"
    body = await gql(START, {"id": jid}, token=token)
    assert (code(body), message(body)) == ("CONFLICT", "the job is already starting")

    # The backup server picked the command up and runs the job.
    await _set(job, run_state=JobRunState.RUNNING, pending_command=None)
    body = await gql(START, {"id": jid}, token=token)
    assert (code(body), message(body)) == ("CONFLICT", "the job is already running")
    body = await gql(RETRY, {"id": jid}, token=token)
    assert code(body) == "CONFLICT" and "only an idle job can be retried" in message(body)
    body = await gql(STOP, {"id": jid}, token=token)
    assert (
        body["data"]["backupJobStop"]["runState"],
        body["data"]["backupJobStop"]["pendingCommand"],
    ) == ("STOPPING", "STOP")
    body = await gql(STOP, {"id": jid}, token=token)
    assert (code(body), message(body)) == ("CONFLICT", "the job is already stopping")

    # Stopped, last run succeeded: nothing to stop, nothing to retry.
    await _set(
        job, run_state=JobRunState.IDLE, pending_command=None, last_result=SessionResult.SUCCESS
    )
    body = await gql(STOP, {"id": jid}, token=token)
    assert (code(body), message(body)) == ("CONFLICT", "the job is not running")
    body = await gql(RETRY, {"id": jid}, token=token)
    assert code(body) == "CONFLICT"
    assert message(body) == "only a failed job can be retried (its last result is SUCCESS)"

    await _set(job, last_result=SessionResult.FAILED)
    body = await gql(RETRY, {"id": jid}, token=token)
    assert body["data"]["backupJobRetry"]["runState"] == "STARTING"
    assert body["data"]["backupJobRetry"]["pendingCommand"] == "RETRY"

    # Disabled: neither started nor retried; enabling is idempotent.
    await _set(job, run_state=JobRunState.IDLE, pending_command=None)
    body = await gql(DISABLE, {"id": jid}, token=token)
    assert body["data"]["backupJobDisable"]["enabled"] is False
    body = await gql(START, {"id": jid}, token=token)
    assert (code(body), message(body)) == (
        "CONFLICT",
        "the job is disabled: enable it before starting it",
    )
    body = await gql(RETRY, {"id": jid}, token=token)
    assert (code(body), message(body)) == (
        "CONFLICT",
        "the job is disabled: enable it before retrying it",
    )
    for _ in range(2):
        body = await gql(ENABLE, {"id": jid}, token=token)
        assert body["data"]["backupJobEnable"]["enabled"] is True
    body = await gql(START, {"id": jid}, token=token)
    assert body["data"]["backupJobStart"]["runState"] == "STARTING"

    row = await BackupJob.get(id=job.id)
    assert (row.run_state, row.pending_command, row.enabled) == (
        JobRunState.STARTING,
        "START",
        True,
    )
    starts = await AuditEntry.filter(action="backupJobStart", object_id=str(job.id)).values_list(
        "outcome", flat=True
    )
    assert sorted(starts) == ["FAILURE", "FAILURE", "FAILURE", "SUCCESS", "SUCCESS"]
    failure = await AuditEntry.filter(action="backupJobStop", outcome="FAILURE").first()
    assert failure is not None and failure.details["error"] == "CONFLICT"
    assert failure.organization_id == world.orgs["A1"].id


async def test_a_concurrent_change_is_a_conflict(world, fleet):
    owner = Actor(await principal_for_bearer(world.token("A1", OWNER)))
    job = await _job(fleet, "A1-Default")

    def checked_then_raced(row: BackupJob) -> str | None:
        # Another request starts the job between this one's check and its UPDATE.
        row.run_state = JobRunState.STOPPING
        return None

    with pytest.raises(Conflict, match="the job changed meanwhile"):
        await backup_jobs._operate(
            owner, job.id, "backupJobStart", checked_then_raced, {"run_state": JobRunState.STARTING}
        )
    assert (await BackupJob.get(id=job.id)).run_state is JobRunState.IDLE


async def test_settings_are_validated(world, fleet, gql):
    token = world.token("A1", OWNER)
    jid = gid("BackupJob", (await _job(fleet, "A1-Default")).id)
    for schedule in ("every night", "* * * * * */5", "61 * * * *"):
        body = await gql(UPDATE, {"input": {"id": jid, "schedule": schedule}}, token=token)
        assert code(body) == "BAD_USER_INPUT", schedule
        assert body["errors"][0]["extensions"]["field"] == "input.schedule"
    body = await gql(UPDATE, {"input": {"id": jid, "name": "  "}}, token=token)
    assert (code(body), body["errors"][0]["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "input.name",
    )
    body = await gql(
        UPDATE, {"input": {"id": jid, "name": " Nightly ", "schedule": "0  3 * * 1-5"}}, token=token
    )
    assert body["data"]["backupJobUpdate"]["name"] == "Nightly"
    assert body["data"]["backupJobUpdate"]["schedule"] == "0 3 * * 1-5"
    body = await gql(UPDATE, {"input": {"id": jid, "schedule": ""}}, token=token)
    assert body["data"]["backupJobUpdate"]["schedule"] == ""
    entry = (
        await AuditEntry.filter(action="backupJobUpdate", outcome="SUCCESS").order_by("id").first()
    )
    assert entry is not None and entry.details["name"] == "Nightly"


async def test_create_by_the_company_or_assigned_by_the_provider(world, fleet, gql):
    computer = fleet.computer("A1-East")
    make = {
        "computerId": gid("ManagedComputer", computer.id),
        "name": "Agent nightly",
        "schedule": "0 1 * * *",
    }
    body = await gql(CREATE, {"input": make}, token=world.token("A1", OWNER))
    own = body["data"]["backupJobCreate"]
    assert (own["assignedByProvider"], own["kind"], own["functionality"]) == (
        False,
        "AGENT",
        "BACKUP_AGENTS",
    )
    assert (own["viewerCanOperate"], own["viewerCanConfigure"]) == (True, True)

    body = await gql(
        CREATE, {"input": {**make, "name": "Provider policy"}}, token=world.token("R1", GA)
    )
    assigned = body["data"]["backupJobCreate"]
    assert assigned["assignedByProvider"] is True
    row = await BackupJob.get(
        id=int(assigned["id"] and (await BackupJob.get(name="Provider policy")).id)
    )
    assert (row.company_id, row.location_id, row.computer_id) == (
        world.orgs["A1"].id,
        computer.location_id,
        computer.id,
    )  # type: ignore[attr-defined]

    # The company sees and operates the provider's job, but does not change or remove it.
    owner = world.token("A1", OWNER)
    body = await gql(START, {"id": assigned["id"]}, token=owner)
    assert body["data"]["backupJobStart"]["runState"] == "STARTING"
    body = await gql(
        UPDATE, {"input": {"id": assigned["id"], "schedule": "0 2 * * *"}}, token=owner
    )
    assert code(body) == "FORBIDDEN"
    body = await gql(DELETE, {"id": assigned["id"]}, token=owner)
    assert code(body) == "FORBIDDEN"
    # Running jobs are not removed; the provider removes its job once idle.
    body = await gql(DELETE, {"id": assigned["id"]}, token=world.token("R1", GA))
    assert (code(body), message(body)) == (
        "CONFLICT",
        "the job is starting: stop it before deleting it",
    )
    await _set(row, run_state=JobRunState.IDLE, pending_command=None)
    body = await gql(DELETE, {"id": assigned["id"]}, token=world.token("R1", GA))
    assert body["data"]["backupJobDelete"]["deletedId"] == assigned["id"]
    body = await gql(DELETE, {"id": own["id"]}, token=owner)
    assert body["data"]["backupJobDelete"]["deletedId"] == own["id"]
    assert not await BackupJob.filter(name__in=["Agent nightly", "Provider policy"]).exists()

    # Bad input and foreign computers.
    body = await gql(CREATE, {"input": {**make, "schedule": "nightly"}}, token=owner)
    assert code(body) == "BAD_USER_INPUT"
    foreign = {**make, "computerId": gid("ManagedComputer", fleet.computer("A2-Default").id)}
    body = await gql(CREATE, {"input": foreign}, token=owner)
    assert code(body) == "NOT_FOUND"
    body = await gql(CREATE, {"input": make}, token=world.token("A1", "Location User"))
    assert code(body) == "FORBIDDEN"
    created = await AuditEntry.filter(action="backupJobCreate", outcome="SUCCESS").count()
    assert created == 2


def _expected(p, job: BackupJob, in_scope: bool, target, settings: bool = False) -> str | None:
    caps = (capabilities.BACKUP_JOB_SETTINGS if settings else capabilities.BACKUP_JOBS).values()
    if not any(engine.allows(p, cap, Action.UPDATE) for cap in caps):
        return "FORBIDDEN"  # the field guard
    if not workloads.readable_job_kinds(p):
        return "FORBIDDEN"
    if not in_scope:
        return "NOT_FOUND"
    cap = capabilities.backup_job(job.kind, job.assigned_by_provider, settings=settings)
    return None if engine.can(p, cap, Action.UPDATE, target) else "FORBIDDEN"


@pytest.mark.parametrize("assigned", [False, True])
async def test_the_matrix_decides_for_every_principal(world, fleet, gql, assigned):
    job = (
        await _job(fleet, "A1-East", assigned=assigned)
        if not assigned
        else (fleet.jobs[("A1", BackupJobKind.AGENT, True)])
    )
    target = await backup_jobs.target(job)
    outcomes: dict[str, str | None] = {}
    for key, token in world.tokens.items():
        p = await principal_for_bearer(token)
        in_scope = await BackupJob.filter(workloads.job_q(p), id=job.id).exists()
        body = await gql(START, {"id": gid("BackupJob", job.id)}, token=token)
        got = code(body)
        assert got == _expected(p, job, in_scope, target), (key, body)
        outcomes[key] = got
        if got is None:
            await _set(job, run_state=JobRunState.IDLE, pending_command=None)
        settings_body = await gql(
            UPDATE, {"input": {"id": gid("BackupJob", job.id), "name": job.name}}, token=token
        )
        assert code(settings_body) == _expected(p, job, in_scope, target, settings=True), (
            key,
            settings_body,
        )
    # The seeds' cells, spelled out.
    assert outcomes["A1:Company Owner"] is None
    assert outcomes["A1:Location User"] == "FORBIDDEN"  # Read
    assert outcomes["Provider:Service Provider User"] == "FORBIDDEN"  # Read
    assert outcomes["A2:Company Owner"] == "NOT_FOUND"
    assert outcomes["R2:" + GA] == "NOT_FOUND"
    assert outcomes["R1:" + GA] is None
    if assigned:
        # The company operates the provider's job; its settings are the provider's.
        assert outcomes["A1:Location Administrator"] == "NOT_FOUND"  # A1-Default, not East
        body = await gql(
            UPDATE,
            {"input": {"id": gid("BackupJob", job.id), "name": "x"}},
            token=world.token("A1", OWNER),
        )
        assert code(body) == "FORBIDDEN"
    else:
        assert outcomes["A1:Location Administrator"] is None
