"""The usage ledger's writers: period quantities that invoices sum (app.services.billing_usage).

The ledger is append-only: this module inserts and nothing else — there is no update or delete
path anywhere (a correction would be a new entry with its own source key). Each entry has a
`source_key` naming the event that caused it, unique in the table, so writing the same event
twice — a job re-run after a crash, a retried transaction — adds nothing: `record` returns
False and raises nothing. Called inside the caller's transaction, the insert runs in a
savepoint, so a duplicate leaves the caller's transaction usable (PostgreSQL aborts a
transaction on a failed statement otherwise); the entry commits or rolls back with the change
that caused it.

Writers:

- COMPUTE_HOUR, when an undo returns a failed-over replica to READY (the RELEASE step of an
  UNDO session, app.services.failover_progress.commit_step, in the step's transaction): the
  hours from the end of the replica's latest POWER_ON step of a FAILOVER or RETRY session of
  the same plan to the release, rounded half-up to 6 decimals (3.6 ms). Key
  "failover:<session that powered it on>:<replica>", company = the plan's, no location. Test
  failovers (isolated, powered off by the test itself) are not billed.
- TRANSFER_OUT_GB, when a file-level restore completes (app.jobs.file_restore, in the
  transaction that marks it COMPLETED) from a restore point held in a cloud repository
  (target CLOUD): restored bytes / 10^9 (decimal GB, as transfer is metered), rounded half-up
  to 6 decimals (1 kB); nothing for a local restore point or zero bytes. Key
  "file_restore:<request id>", at the computer's location.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from app.db import connection_name
from app.models.backups import RestorePoint, TargetKind
from app.models.billing import BillingItem, UsageEntry
from app.models.failover import (
    FailoverSession,
    FailoverStep,
    SessionKind,
    StepKind,
    StepState,
)
from app.models.inventory import ManagedComputer
from app.models.operations import FileRestoreRequest

PLACES = Decimal("0.000001")
BYTES_PER_GB = Decimal(10) ** 9
SECONDS_PER_HOUR = Decimal(3600)


def quantity_of(value: Decimal | int | str) -> Decimal:
    """A ledger quantity: 6 decimals, half-up."""
    return Decimal(value).quantize(PLACES, rounding=ROUND_HALF_UP)


async def record(
    company_id: int,
    item: BillingItem,
    quantity: Decimal,
    at: datetime,
    source_key: str,
    location_id: int | None = None,
) -> bool:
    """Append one entry; False (and nothing written) when `source_key` is already there."""
    try:
        async with in_transaction(connection_name()):
            await UsageEntry.create(
                company_id=company_id,
                location_id=location_id,
                item=item,
                quantity=quantity_of(quantity),
                at=at,
                source_key=source_key,
            )
    except IntegrityError:
        if await UsageEntry.filter(source_key=source_key).exists():
            return False
        raise  # another constraint (an unknown company): not a duplicate
    return True


async def record_failover_compute(undo: FailoverSession, replica_id: int, at: datetime) -> bool:
    """The compute hours of a replica an UNDO session just released (see the module doc)."""
    plan_id: int = undo.plan_id  # type: ignore[attr-defined]
    power_on = (
        await FailoverStep.filter(
            session__plan_id=plan_id,
            session__kind__in=[SessionKind.FAILOVER, SessionKind.RETRY],
            session_id__lt=undo.id,
            replica_id=replica_id,
            kind=StepKind.POWER_ON,
            state=StepState.DONE,
        )
        .order_by("-session_id", "-id")
        .first()
    )
    if power_on is None or power_on.finished_at is None:
        return False  # never powered on by a failover: nothing ran
    seconds = Decimal(str(max((at - power_on.finished_at).total_seconds(), 0.0)))
    session_id: int = power_on.session_id  # type: ignore[attr-defined]
    return await record(
        undo.company_id,
        BillingItem.COMPUTE_HOUR,
        seconds / SECONDS_PER_HOUR,
        at,
        f"failover:{session_id}:{replica_id}",
    )


async def record_restore_transfer(
    restore: FileRestoreRequest,
    computer: ManagedComputer,
    point: RestorePoint,
    restored_bytes: int,
    at: datetime,
) -> bool:
    """The data a completed file-level restore brought out of the cloud (see the module doc)."""
    if point.target_kind is not TargetKind.CLOUD or restored_bytes <= 0:
        return False
    return await record(
        computer.company_id,  # type: ignore[attr-defined]
        BillingItem.TRANSFER_OUT_GB,
        Decimal(restored_bytes) / BYTES_PER_GB,
        at,
        f"file_restore:{restore.id}",
        location_id=computer.location_id,  # type: ignore[attr-defined]
    )
