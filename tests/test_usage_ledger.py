"""The usage ledger: one entry per source key (a duplicate is a quiet no-op that leaves the
caller's transaction usable), written by a real failover undo on the simulator (compute hours
from each replica's power-on to its release, once even when the undo is cancelled and run
again) and by a completed file-level restore from a cloud restore point (GB transferred out),
and no code path that updates or deletes entries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.jobs.context import JobContext
from app.jobs.file_restore import run as run_restore
from app.models import FileRestoreRequest, Job, ManagedComputer, RestorePoint, RestoreState
from app.models.backups import TargetKind
from app.models.billing import BillingItem, UsageEntry
from app.models.failover import FailoverSession, FailoverStep, SessionKind, StepKind, StepState
from app.services import failover_runs, file_restore, usage_ledger
from tests.test_failover_runs import actor_of, driver, run, site  # noqa: F401
from tests.test_file_restore import broker  # noqa: F401
from workers.runtime import run_queued_inline

AT = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
SIX = Decimal("0.000001")
OWNER = ("A1", "Company Owner")


async def test_record_once_per_source_key(world) -> None:
    a1 = world.orgs["A1"].id
    assert await usage_ledger.record(a1, BillingItem.COMPUTE_HOUR, Decimal("1.2345674"), AT, "k1")
    assert not await usage_ledger.record(a1, BillingItem.COMPUTE_HOUR, Decimal(9), AT, "k1")
    assert not await usage_ledger.record(
        world.orgs["A2"].id, BillingItem.TRANSFER_OUT_GB, Decimal(1), AT, "k1"
    )
    rows = await UsageEntry.all().values("company_id", "item", "quantity", "at", "source_key")
    assert rows == [
        {
            "company_id": a1,
            "item": BillingItem.COMPUTE_HOUR,
            "quantity": Decimal("1.234567"),  # 6 decimals, half up
            "at": AT,
            "source_key": "k1",
        }
    ]
    # Another constraint is not a duplicate: it is raised.
    with pytest.raises(IntegrityError):
        await usage_ledger.record(10**9, BillingItem.COMPUTE_HOUR, Decimal(1), AT, "k2")
    assert await UsageEntry.all().count() == 1


async def test_a_duplicate_inside_a_transaction_leaves_it_usable(world) -> None:
    a1 = world.orgs["A1"].id
    async with in_transaction(connection_name()):
        assert await usage_ledger.record(a1, BillingItem.COMPUTE_HOUR, Decimal(1), AT, "t1")
        assert not await usage_ledger.record(a1, BillingItem.COMPUTE_HOUR, Decimal(1), AT, "t1")
        # The transaction goes on (PostgreSQL would refuse this after a failed statement).
        assert await usage_ledger.record(a1, BillingItem.COMPUTE_HOUR, Decimal(2), AT, "t2")
    assert sorted(await UsageEntry.all().values_list("source_key", flat=True)) == ["t1", "t2"]
    # The entry rolls back with the transaction that wrote it.
    with pytest.raises(RuntimeError):
        async with in_transaction(connection_name()):
            await usage_ledger.record(a1, BillingItem.COMPUTE_HOUR, Decimal(1), AT, "t3")
            raise RuntimeError("the caller's change failed")
    assert not await UsageEntry.filter(source_key="t3").exists()


def test_no_code_updates_or_deletes_ledger_entries() -> None:
    source = Path(usage_ledger.__file__).read_text()
    assert not re.search(r"\.(delete|update|bulk_update|select_for_update)\(", source)
    assert not re.search(r"\b(DELETE|UPDATE)\b", source)
    app = Path(usage_ledger.__file__).parents[1]
    for path in app.rglob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if "UsageEntry" in line or "usage_ledger" in line:
                assert not re.search(r"\.(delete|update)\(|DELETE|UPDATE ", line), (path, line)


# --- compute hours from failover undo -------------------------------------------------------------


def hours(later: datetime, earlier: datetime) -> Decimal:
    seconds = Decimal(str((later - earlier).total_seconds()))
    return (seconds / 3600).quantize(SIX, rounding=ROUND_HALF_UP)


async def power_ons(session_id: int) -> dict[int, FailoverStep]:
    steps = await FailoverStep.filter(session_id=session_id, kind=StepKind.POWER_ON)
    return {int(s.replica_id): s for s in steps if s.replica_id is not None}


async def test_failover_undo_writes_compute_hours_once(world, driver) -> None:  # noqa: F811
    plan, replicas = await site(world)
    actor = await actor_of(world)
    failover = await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    await run(driver)
    # The VMs ran for three, two and one hours.
    for i, replica in enumerate(replicas):
        step = (await power_ons(failover.id))[replica.id]
        assert step.finished_at is not None
        await FailoverStep.filter(id=step.id).update(
            finished_at=step.finished_at - timedelta(hours=3 - i)
        )
    assert await UsageEntry.all().count() == 0  # running is not billed until it ends

    # An undo cancelled after the first power-off releases nothing: no entry yet.
    undo = await failover_runs.start(actor, plan.id, SessionKind.UNDO)

    async def cancel() -> None:
        await failover_runs.cancel(actor, undo.id)

    driver.hooks[("power_off", "vm3")] = cancel
    await run(driver)
    assert await UsageEntry.all().count() == 0
    again = await failover_runs.start(actor, plan.id, SessionKind.UNDO)
    await run(driver)
    assert (await FailoverSession.get(id=again.id)).state.value == "SUCCEEDED"

    started = await power_ons(failover.id)
    releases = {
        int(s.replica_id): s
        for s in await FailoverStep.filter(session_id=again.id, kind=StepKind.RELEASE)
        if s.replica_id is not None
    }
    entries = {e.source_key: e for e in await UsageEntry.all()}
    assert set(entries) == {f"failover:{failover.id}:{r.id}" for r in replicas}
    for i, replica in enumerate(replicas):
        entry = entries[f"failover:{failover.id}:{replica.id}"]
        release = releases[replica.id]
        assert release.state is StepState.DONE and release.finished_at is not None
        on = started[replica.id].finished_at
        assert on is not None
        assert entry.quantity == hours(release.finished_at, on)
        assert Decimal(3 - i) <= entry.quantity < Decimal(3 - i) + Decimal("0.01")
        assert entry.at == release.finished_at
        assert (entry.company_id, entry.item, entry.location_id) == (  # type: ignore[attr-defined]
            world.orgs["A1"].id,
            BillingItem.COMPUTE_HOUR,
            None,
        )

    # Writing the same release again adds nothing.
    session = await FailoverSession.get(id=again.id)
    assert not await usage_ledger.record_failover_compute(session, replicas[0].id, AT)
    # A second failover and undo of the same plan is billed on its own.
    second = await failover_runs.start(actor, plan.id, SessionKind.FAILOVER)
    await run(driver)
    await failover_runs.start(actor, plan.id, SessionKind.UNDO)
    await run(driver)
    keys = set(await UsageEntry.all().values_list("source_key", flat=True))
    assert len(keys) == 6
    assert {f"failover:{second.id}:{r.id}" for r in replicas} <= keys


async def test_a_test_failover_is_not_billed(world, driver) -> None:  # noqa: F811
    plan, _ = await site(world, ("vm1",))
    await failover_runs.start(await actor_of(world), plan.id, SessionKind.TEST)
    await run(driver)
    assert await UsageEntry.all().count() == 0


# --- data transfer out from file-level restores ----------------------------------------------


async def restore_from(world, target: TargetKind, location: str = "A1-East") -> int:
    loc = world.locations[location]
    computer = await ManagedComputer.create(
        company=world.orgs["A1"], location=loc, uid=f"pc-{target.value}", hostname="pc"
    )
    point = await RestorePoint.create(
        computer=computer,
        uid="rp",
        company_id=computer.company_id,
        created_at=AT,
        target_kind=target,  # type: ignore[attr-defined]
    )
    actor = await actor_of(world, OWNER)
    restore = await file_restore.request(
        actor, computer.id, ["/etc/hosts", "/home/alice/"], "/restore", point.id
    )
    return restore.id


async def test_a_cloud_restore_bills_the_bytes_once(world, broker) -> None:  # noqa: F811
    restore_id = await restore_from(world, TargetKind.CLOUD)
    await run_queued_inline(broker)
    row = await FileRestoreRequest.get(id=restore_id)
    assert row.state is RestoreState.COMPLETED and row.restored_bytes > 0
    entry = await UsageEntry.get(source_key=f"file_restore:{restore_id}")
    assert entry.quantity == (Decimal(row.restored_bytes) / 10**9).quantize(
        SIX, rounding=ROUND_HALF_UP
    )
    assert entry.quantity > 0
    assert (entry.item, entry.company_id, entry.location_id, entry.at) == (  # type: ignore[attr-defined]
        BillingItem.TRANSFER_OUT_GB,
        world.orgs["A1"].id,
        world.locations["A1-East"].id,
        row.finished_at,
    )
    # A second delivery of the job finds it completed and writes nothing more.
    job = await Job.get(id=row.job_id)  # type: ignore[attr-defined]
    await Job.filter(id=job.id).update(worker_id="w2")
    assert await run_restore(JobContext(await Job.get(id=job.id), "w2")) == {"state": "COMPLETED"}
    assert await UsageEntry.all().count() == 1


async def test_a_local_restore_is_not_billed(world, broker) -> None:  # noqa: F811
    restore_id = await restore_from(world, TargetKind.LOCAL)
    await run_queued_inline(broker)
    assert (await FileRestoreRequest.get(id=restore_id)).state is RestoreState.COMPLETED
    assert await UsageEntry.all().count() == 0
