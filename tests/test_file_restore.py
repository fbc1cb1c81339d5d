"""File-level restores: request validation (paths, destination, the computer's own restore
point, the latest by default), the state machine REQUESTED → IN_PROGRESS → COMPLETED | FAILED
and → CANCELLED (with the background job), every illegal transition a CONFLICT, resumption
after the last path done, and permissions: Subtenants restore their own computers only, the
Department Portal has no file-level restore, cross-tenant is NOT_FOUND."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.auth.authenticate import principal_for_bearer
from app.authz.capabilities import FILE_RESTORES
from app.authz.engine import allows, can
from app.authz.matrix import Action
from app.graphql.ids import to_global_id
from app.integrations import override_agents
from app.integrations.simulated_agents import SimulatedAgents
from app.jobs.context import JobCancelled, JobContext
from app.jobs.file_restore import run as run_restore
from app.models import (
    AuditEntry,
    FileRestoreRequest,
    Job,
    JobState,
    ManagedComputer,
    RestorePoint,
    RestoreState,
)
from app.services import file_restore, jobs, workloads
from app.services.file_restore import transition
from tests.conftest import TEST_SETTINGS
from tests.factories import build_world
from tests.workload_fleet import build_fleet
from workers.broker import setup
from workers.runtime import run_queued_inline

OWNER = "Company Owner"
GA = "Service Provider Global Administrator"
FIELDS = "id state paths destination overwrite restorePointId jobId restoredFiles restoredBytes error startedAt finishedAt viewerCanCancel computer { hostname }"
REQUEST = (
    "mutation($input: FileRestoreRequestInput!) { fileRestoreRequest(input: $input) { "
    + FIELDS
    + " } }"
)
CANCEL = "mutation($id: ID!) { fileRestoreCancel(id: $id) { " + FIELDS + " } }"
ONE = "query($id: ID!) { fileRestore(id: $id) { " + FIELDS + " } }"
LIST = "query { fileRestores { totalCount nodes { id state } } }"


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


@pytest.fixture
def broker():
    previous = jobs._dispatcher
    b = setup(TEST_SETTINGS, stub=True)
    yield b
    jobs.set_dispatcher(previous)
    override_agents(None)


@pytest.fixture
async def fleet(world):
    return await build_fleet(world)


def ask(computer, **changes: Any) -> dict[str, Any]:
    return {
        "input": {
            "computerId": gid("ManagedComputer", computer.id),
            "paths": ["/etc/hosts", "/home/alice/"],
            "destination": "/restore",
            **changes,
        }
    }


async def test_request_validation(world, fleet, gql, broker):
    token = world.token("A1", OWNER)
    computer = fleet.computer("A1-Default")
    other_point = fleet.restore_points["A1-East"]
    cases = [
        ({"paths": []}, "BAD_USER_INPUT", "input.paths"),
        ({"paths": [f"/f{i}" for i in range(101)]}, "BAD_USER_INPUT", "input.paths"),
        ({"paths": ["/ok", "relative/file"]}, "BAD_USER_INPUT", "input.paths.1"),
        ({"paths": ["/a/../etc/shadow"]}, "BAD_USER_INPUT", "input.paths.0"),
        ({"destination": ""}, "BAD_USER_INPUT", "input.destination"),
        ({"destination": "restore-here"}, "BAD_USER_INPUT", "input.destination"),
        (
            {"restorePointId": gid("RestorePoint", other_point.id)},
            "BAD_USER_INPUT",
            "input.restorePointId",
        ),
    ]
    for changes, expected, where in cases:
        body = await gql(REQUEST, ask(computer, **changes), token=token)
        assert (code(body), body["errors"][0]["extensions"].get("field")) == (expected, where), (
            changes
        )
    assert await FileRestoreRequest.all().count() == 0
    # Windows and UNC paths are absolute; duplicates are dropped; the latest point by default.
    newer = await RestorePoint.create(
        computer=computer,
        uid="newer",
        company_id=computer.company_id,  # type: ignore[attr-defined]
        created_at=fleet.restore_points["A1-Default"].created_at + timedelta(hours=1),
    )
    body = await gql(
        REQUEST,
        ask(
            computer,
            paths=["C:\\Users\\bob\\a.docx", "\\\\srv\\share\\x", "C:\\Users\\bob\\a.docx"],
            destination="D:\\restore",
        ),
        token=token,
    )
    made = body["data"]["fileRestoreRequest"]
    assert made["paths"] == ["C:\\Users\\bob\\a.docx", "\\\\srv\\share\\x"]
    assert (made["state"], made["restorePointId"]) == ("REQUESTED", gid("RestorePoint", newer.id))
    assert made["jobId"] is not None and made["viewerCanCancel"] is True
    # A computer without restore points has nothing to restore from.
    await RestorePoint.filter(computer_id=computer.id).delete()
    body = await gql(REQUEST, ask(computer), token=token)
    assert code(body) == "CONFLICT"


async def test_completed_failed_and_illegal_transitions(world, fleet, gql, broker):
    token = world.token("A1", OWNER)
    computer = fleet.computer("A1-Default")
    body = await gql(REQUEST, ask(computer), token=token)
    restore_id = body["data"]["fileRestoreRequest"]["id"]
    await run_queued_inline(broker)
    done = (await gql(ONE, {"id": restore_id}, token=token))["data"]["fileRestore"]
    assert done["state"] == "COMPLETED" and done["error"] is None
    assert done["restoredFiles"] >= 2 and done["restoredBytes"] > 0
    assert done["startedAt"] is not None and done["finishedAt"] is not None
    assert done["viewerCanCancel"] is False
    row = await FileRestoreRequest.get(state=RestoreState.COMPLETED)
    job = await Job.get(id=row.job_id)  # type: ignore[attr-defined]
    assert (job.state, job.result["files"], job.result["paths"]) == (
        JobState.SUCCEEDED,
        done["restoredFiles"],
        2,
    )
    body = await gql(CANCEL, {"id": restore_id}, token=token)
    assert (code(body), body["errors"][0]["message"]) == (
        "CONFLICT",
        "the restore is already completed",
    )

    # The simulator fails on *.locked: FAILED with its reason, the job too.
    body = await gql(
        REQUEST, ask(computer, paths=["/etc/hosts", "/data/db.locked", "/var/x"]), token=token
    )
    failed_id = body["data"]["fileRestoreRequest"]["id"]
    await run_queued_inline(broker)
    failed = (await gql(ONE, {"id": failed_id}, token=token))["data"]["fileRestore"]
    assert failed["state"] == "FAILED"
    assert failed["error"] == f"access denied restoring /data/db.locked on {computer.hostname}"
    assert failed["restoredFiles"] == 1  # the path before it
    body = await gql(CANCEL, {"id": failed_id}, token=token)
    assert (code(body), body["errors"][0]["message"]) == (
        "CONFLICT",
        "the restore is already failed",
    )

    # The transition table: nothing leaves a final state.
    for state in (RestoreState.COMPLETED, RestoreState.FAILED):
        pk = (
            row.id
            if state is RestoreState.COMPLETED
            else (await FileRestoreRequest.get(state=state)).id
        )
        for to in RestoreState:
            assert await transition(pk, to) is False
    assert await AuditEntry.filter(action="fileRestoreCancel", outcome="FAILURE").count() == 2


async def test_cancel_requested_and_in_progress(world, fleet, gql, broker):
    token = world.token("A1", OWNER)
    computer = fleet.computer("A1-Default")
    # REQUESTED: the queued job is cancelled at once; the request never runs.
    body = await gql(REQUEST, ask(computer), token=token)
    first = body["data"]["fileRestoreRequest"]
    cancelled = (await gql(CANCEL, {"id": first["id"]}, token=token))["data"]["fileRestoreCancel"]
    assert (cancelled["state"], cancelled["viewerCanCancel"]) == ("CANCELLED", False)
    row = await FileRestoreRequest.get(state=RestoreState.CANCELLED)
    assert (await Job.get(id=row.job_id)).state is JobState.CANCELLED  # type: ignore[attr-defined]
    await run_queued_inline(broker)
    assert (await FileRestoreRequest.get(id=row.id)).state is RestoreState.CANCELLED
    body = await gql(CANCEL, {"id": first["id"]}, token=token)
    assert (code(body), body["errors"][0]["message"]) == (
        "CONFLICT",
        "the restore is already cancelled",
    )

    # IN_PROGRESS: the running job is asked to stop and stops at its next path.
    body = await gql(REQUEST, ask(computer), token=token)
    second = body["data"]["fileRestoreRequest"]
    row = await FileRestoreRequest.filter(state=RestoreState.REQUESTED).first()
    assert row is not None
    job = await jobs.claim(row.job_id, "w1")  # type: ignore[attr-defined]
    assert job is not None
    assert await transition(row.id, RestoreState.IN_PROGRESS)
    cancelled = (await gql(CANCEL, {"id": second["id"]}, token=token))["data"]["fileRestoreCancel"]
    assert cancelled["state"] == "CANCELLED"
    assert (await Job.get(id=job.id)).cancel_requested is True
    with pytest.raises(JobCancelled):
        await run_restore(JobContext(await Job.get(id=job.id), "w1"))
    assert (await FileRestoreRequest.get(id=row.id)).state is RestoreState.CANCELLED
    assert (await FileRestoreRequest.get(id=row.id)).restored_files == 0


class Counting(SimulatedAgents):
    def __init__(self) -> None:
        super().__init__()
        self.restored: list[str] = []

    async def restore_files(self, computer, restore_point, paths, destination, overwrite, progress):  # type: ignore[no-untyped-def]
        self.restored.extend(paths)
        return await super().restore_files(
            computer, restore_point, paths, destination, overwrite, progress
        )


async def test_a_resumed_restore_does_only_the_remaining_paths(world, fleet, gql, broker):
    counting = Counting()
    override_agents(counting)
    paths = ["/a", "/b", "/c"]
    await gql(
        REQUEST, ask(fleet.computer("A1-Default"), paths=paths), token=world.token("A1", OWNER)
    )
    row = await FileRestoreRequest.first()
    assert row is not None
    broker.flush_all()  # the first delivery is lost with its worker
    job = await jobs.claim(row.job_id, "crashed")  # type: ignore[attr-defined]
    assert job is not None
    await transition(row.id, RestoreState.IN_PROGRESS)
    await jobs.progress(job.id, "crashed", 33, "restored /a", {"done": 1, "files": 1, "bytes": 100})
    # A new worker takes over the job (as its claim after the stale heartbeat would).
    await Job.filter(id=job.id).update(worker_id="w2")
    result = await run_restore(JobContext(await Job.get(id=job.id), "w2"))
    assert counting.restored == ["/b", "/c"]
    assert result["paths"] == 3
    final = await FileRestoreRequest.get(id=row.id)
    assert final.state is RestoreState.COMPLETED and final.restored_files == 3


async def test_permissions_for_every_principal(world, fleet, gql, broker):
    computer = fleet.computer("A1-Default")
    target = await file_restore.target(computer)
    for key, token in world.tokens.items():
        p = await principal_for_bearer(token)
        body = await gql(REQUEST, ask(computer), token=token)
        if not allows(p, FILE_RESTORES, Action.CREATE):
            expected = "FORBIDDEN"
        elif not await ManagedComputer.filter(workloads.computer_q(p), id=computer.id).exists():
            expected = "NOT_FOUND"
        else:
            expected = None if can(p, FILE_RESTORES, Action.CREATE, target) else "FORBIDDEN"
        assert code(body) == expected, (key, body)
    assert (
        code(await gql(REQUEST, ask(computer), token=world.token("A1", "Location User")))
        == "FORBIDDEN"
    )
    assert (
        code(
            await gql(
                REQUEST, ask(computer), token=world.token("Provider", "Service Provider User")
            )
        )
        == "FORBIDDEN"
    )
    assert code(await gql(REQUEST, ask(computer), token=world.token("A2", OWNER))) == "NOT_FOUND"

    # The Subtenant restores its own computer only, and sees only those restores.
    sub = world.token("A1", "Subtenant")
    body = await gql(REQUEST, ask(computer), token=sub)
    assert code(body) == "NOT_FOUND"
    own = fleet.subtenant_computers["A1:own"]
    await RestorePoint.create(
        computer=own,
        uid="own-rp",
        company_id=own.company_id,
        created_at=fleet.restore_points["A1-Default"].created_at,
    )  # type: ignore[attr-defined]
    body = await gql(REQUEST, ask(own), token=sub)
    mine = body["data"]["fileRestoreRequest"]
    assert mine["state"] == "REQUESTED"
    listed = (await gql(LIST, {}, token=sub))["data"]["fileRestores"]
    assert [n["id"] for n in listed["nodes"]] == [mine["id"]]
    staff = (await gql(LIST, {}, token=world.token("Provider", GA)))["data"]["fileRestores"]
    assert staff["totalCount"] == await FileRestoreRequest.all().count() > 1
    # Another company's restore is not found, not forbidden.
    body = await gql(CANCEL, {"id": mine["id"]}, token=world.token("A2", OWNER))
    assert code(body) == "NOT_FOUND"
    body = await gql(CANCEL, {"id": mine["id"]}, token=sub)
    assert body["data"]["fileRestoreCancel"]["state"] == "CANCELLED"


async def test_department_portal_has_no_file_level_restore(db, gql, use_settings):
    use_settings(edition="enterprise")
    world = await build_world()
    fleet = await build_fleet(world)
    body = await gql(
        REQUEST, ask(fleet.computer("A1-Default")), token=world.token("A1", "Department Owner")
    )
    assert code(body) == "FORBIDDEN"
    body = await gql(LIST, {}, token=world.token("A1", "Department Owner"))
    assert code(body) == "FORBIDDEN"
