"""A monthly billing run of 1,500 companies (three of the job's batches) on real `tenantry worker`
processes, PostgreSQL and Redis: the worker group is killed with `kill -9` inside a batch's
transaction once the first batch is committed (normally the second: a batch after it is still
to run), a new worker takes the job back once the dead one's heartbeat is stale, and the run
ends with exactly one invoice per company for the period (the unique key holds, none is
missing), numbers without gaps per issuer, totals equal to an independent recomputation (one
SQL aggregate of the usage and `Decimal` arithmetic written from the documented pricing
rules), and the job SUCCEEDED on its second attempt. Also: two runs at once on two worker
processes, then a third, write each invoice once (numbers without gaps; the third writes
nothing).

CI's second pass runs this (TENANTRY_TEST_DATABASE_URL, TENANTRY_TEST_REDIS_URL and
TENANTRY_REQUIRE_SERVICES=1); without those variables it is skipped, and with
TENANTRY_REQUIRE_SERVICES=1 a missing service fails it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from tortoise.connection import get_connection

from app.authz.matrix import Portal, load_matrix
from app.db import connection_name
from app.jobs.billing import BATCH
from app.models import AuditEntry, Job, JobState
from app.models.billing import Invoice, OutboxMessage, PlanAssignment
from app.services import jobs
from app.services.invoices import RUN_KIND
from tests.bench.billing_check import recompute
from tests.bench.billing_seed import seed_usage
from tests.factories import password_hash
from tests.workerproc import (
    WorkerProcess,
    redis_broker,
    require_services,
    wait_for,
    worker_processes,
)

# A Redis database of its own (worker: 7, discovery: 8, failover: 9, scheduler: 13,
# benchmarks: 11, 12, 14).
REDIS_DB = 10
COMPANIES = 3 * BATCH  # 1,500: killed in the second batch, the third still to run
AS_OF = date(2026, 11, 1)
PERIOD = (date(2026, 10, 1), date(2026, 10, 31))
KILL_AFTER = BATCH  # invoices committed before the kill: the first batch, whole


@pytest.fixture(autouse=True)
def services():
    require_services()


@pytest.fixture
def broker(db, monkeypatch):
    with redis_broker(REDIS_DB, "tenantry-billing", monkeypatch) as (_, settings):
        yield settings


@pytest.fixture
def workers(broker, tmp_path: Path):
    with worker_processes(broker, tmp_path) as start:
        yield start


async def add_companies(world, count: int) -> tuple[list[tuple[int, int]], dict[int, list[int]]]:
    """`count` companies (a third directly under the provider, the others under R1 and R2),
    two locations and an owner each, by COPY; ((id, parent id)), locations by company."""
    parents = [world.orgs[k].id for k in ("Provider", "R1", "R2")]
    owner = next(r for r in load_matrix().portals[Portal.CLIENT].roles if r.primary)
    now = datetime.now(UTC)
    conn = get_connection(connection_name())
    async with conn.acquire_connection() as raw:
        first_org = int(await raw.fetchval("SELECT MAX(id) FROM organizations")) + 1
        first_loc = int(await raw.fetchval("SELECT MAX(id) FROM locations")) + 1
        first_user = int(await raw.fetchval("SELECT MAX(id) FROM users")) + 1
        companies = [(first_org + n, parents[n % 3]) for n in range(count)]
        locations = {
            c: [first_loc + 2 * n, first_loc + 2 * n + 1] for n, (c, _) in enumerate(companies)
        }
        orgs = [
            (c, "COMPANY", f"Billed {n:04d}", p, True, f"billed{n}@example.test", now, now, False)
            for n, (c, p) in enumerate(companies)
        ]
        locs = [
            (loc, c, f"Site {k + 1}", k == 0, now)
            for c, ids in locations.items()
            for k, loc in enumerate(ids)
        ]
        users = [
            (first_user + n, f"owner{n}@billed.example.test", f"Owner {n}", password_hash(),
             owner.name, c, True, False, now, now)
            for n, (c, _) in enumerate(companies)
        ]  # fmt: skip
        async with raw.transaction():
            await raw.copy_records_to_table(
                "organizations", records=orgs,
                columns=["id", "kind", "name", "parent_id", "enabled", "email", "created_at",
                         "updated_at", "baas"],
            )  # fmt: skip
            await raw.copy_records_to_table(
                "locations", records=locs,
                columns=["id", "company_id", "name", "is_default", "created_at"],
            )  # fmt: skip
            await raw.copy_records_to_table(
                "users", records=users,
                columns=["id", "email", "name", "password_hash", "role", "organization_id",
                         "enabled", "scope_restricted", "created_at", "updated_at"],
            )  # fmt: skip
            for table in ("organizations", "locations", "users"):
                await raw.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT MAX(id) FROM {table}))"
                )
        await seed_usage(raw, companies, locations, *PERIOD, computers=(1, 5))
    return companies, locations


async def in_write_transaction() -> bool:
    """A worker's transaction is open and holds an issuer's invoice-number lock (an
    advisory lock): invoices are being written and not committed yet."""
    conn = get_connection(connection_name())
    async with conn.acquire_connection() as raw:
        return bool(
            await raw.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() "
                "AND a.pid <> pg_backend_pid() AND a.state LIKE 'idle in transaction%'"
            )
        )


async def kill_mid_run(first: WorkerProcess, job_id: int) -> int:
    """kill -9 the worker group once KILL_AFTER invoices are committed, in the middle of a
    batch (one transaction for the batch's customers of every issuer): the group is frozen
    (SIGSTOP) and killed only when its open transaction holds invoice-number locks, otherwise
    let go on. Returns the invoices committed."""

    async def in_the_window() -> bool:
        if first.proc.poll() is not None:
            raise AssertionError(f"the worker died by itself:\n{first.output()}")
        if await Invoice.all().count() < KILL_AFTER:
            return False
        first.pause()
        if await in_write_transaction():
            return True
        first.unpause()
        return False

    await wait_for(in_the_window, 60, f"{KILL_AFTER} invoices and a batch in flight", every=0.005)
    first.kill()
    at_kill = await Invoice.all().count()
    job = await Job.get(id=job_id)
    assert job.state is JobState.RUNNING and job.attempts == 1, (job.state, job.attempts)
    assert KILL_AFTER <= at_kill < COMPANIES, f"{at_kill} invoices: the kill proved nothing"
    return at_kill


async def resume(workers, job_id: int) -> Job:
    """A new worker; the job sent again once the dead worker's heartbeat is stale (the
    scheduler's recovery sweep runs `jobs.recover`; called here so the test does not wait for
    it); the job run to its end."""
    workers().wait_ready()

    async def stale() -> bool:
        job = await Job.get(id=job_id)
        return job.heartbeat_at < jobs.now() - jobs.STALE_AFTER

    await wait_for(stale, 10, "the dead worker's heartbeat to go stale")
    assert job_id in await jobs.recover()

    async def ended() -> Job | None:
        job = await Job.get(id=job_id)
        return job if job.state not in (JobState.QUEUED, JobState.RUNNING) else None

    return await wait_for(ended, 60, "the new worker to finish the run")  # type: ignore[return-value]


async def test_killed_run_ends_with_one_invoice_each(world, workers):
    companies, _ = await add_companies(world, COMPANIES)
    first = workers()
    first.wait_ready()
    job, _ = await jobs.create(None, RUN_KIND, None, {"as_of": AS_OF.isoformat()})
    at_kill = await kill_mid_run(first, job.id)

    job = await resume(workers, job.id)
    assert (job.state, job.error, job.attempts) == (JobState.SUCCEEDED, None, 2)
    assert job.result == {"as_of": "2026-11-01", "customers": COMPANIES, "invoices": COMPANIES}
    assert await Invoice.filter(job_id=job.id).count() == COMPANIES
    print(f"killed with {at_kill} of {COMPANIES} invoices written")

    # Exactly one invoice per company for the period, and nothing else.
    rows = await Invoice.all().values(
        "customer_id", "issuer_id", "kind", "type", "revision", "period_start", "period_end",
        "issued_on", "number", "generated", "state", "job_id",
    )  # fmt: skip
    assert len(rows) == COMPANIES
    assert {r["customer_id"] for r in rows} == {c for c, _ in companies}
    keys = {
        (r["customer_id"], r["kind"], r["type"], r["period_start"], r["revision"]) for r in rows
    }
    assert len(keys) == COMPANIES
    starts = dict(await PlanAssignment.all().values_list("customer_id", "billing_start"))
    parent = dict(companies)
    for r in rows:
        assert r["issuer_id"] == parent[r["customer_id"]]
        assert (r["kind"], r["revision"], r["generated"], r["job_id"]) == (
            "INVOICE",
            0,
            True,
            job.id,
        )
        assert r["period_end"] == PERIOD[1] and r["issued_on"] == AS_OF
        assert r["period_start"] == starts[r["customer_id"]]
        assert r["state"] == "UNPAID"

    await assert_one_numbered_invoice_each(companies)

    # One audit entry and one e-mail (to the company's owner) per invoice: the transaction
    # the kill cut left none behind, the resumed run wrote them once.
    audits = await AuditEntry.filter(action="invoiceGenerate").values_list("object_id", flat=True)
    assert sorted(map(int, audits)) == sorted(await Invoice.all().values_list("id", flat=True))
    mails = await OutboxMessage.filter(dedup_key__startswith="invoice-issued:").count()
    assert mails == COMPANIES

    # Every invoice's lines and totals equal the independent recomputation: usage from one
    # SQL aggregate (FLOOR_SQL), prices from the plan's rows with Decimal.
    async with get_connection(connection_name()).acquire_connection() as raw:
        checked = await recompute(raw, AS_OF)
    assert (checked.mismatches, checked.wrong) == (0, [])
    assert checked.invoices == COMPANIES
    assert checked.with_money > COMPANIES // 2  # not a comparison of empty invoices


async def assert_one_numbered_invoice_each(companies: list[tuple[int, int]]) -> None:
    """One invoice per company; numbers per issuer 1..n without a gap or a repeat."""
    rows = await Invoice.all().values("customer_id", "issuer_id", "number")
    assert sorted(r["customer_id"] for r in rows) == sorted(c for c, _ in companies)
    by_issuer: dict[int, list[str]] = {}
    for r in rows:
        by_issuer.setdefault(r["issuer_id"], []).append(r["number"])
    for numbers in by_issuer.values():
        code = numbers[0].split("-")[0]
        assert sorted(numbers) == [f"{code}-2026-{n:06d}" for n in range(1, len(numbers) + 1)]


async def test_two_runs_at_once_and_a_rerun_write_each_invoice_once(world, workers):
    """Two billing.run jobs for everyone on two worker processes at the same time (the
    scheduler's and one asked for by hand), then a third after them: each invoice is
    written once, numbered once, and the third run writes nothing."""
    companies, _ = await add_companies(world, 400)
    for w in (workers(), workers()):
        w.wait_ready()
    params = {"as_of": AS_OF.isoformat()}
    created = [(await jobs.create(None, RUN_KIND, None, params))[0] for _ in range(2)]

    async def ended() -> list[Job] | None:
        rows = [await Job.get(id=j.id) for j in created]
        return (
            rows if all(j.state not in (JobState.QUEUED, JobState.RUNNING) for j in rows) else None
        )

    done: list[Job] = await wait_for(ended, 60, "both runs to end")  # type: ignore[assignment]
    assert [(j.state, j.error) for j in done] == [(JobState.SUCCEEDED, None)] * 2
    first, second = sorted(done, key=lambda j: j.started_at)
    assert second.started_at < first.finished_at, "the runs did not overlap: nothing was proven"
    written = [await Invoice.filter(job_id=j.id).count() for j in done]
    print(f"invoices written by each run: {written}")
    assert sum(written) == 400, written
    await assert_one_numbered_invoice_each(companies)

    again, _ = await jobs.create(None, RUN_KIND, None, params)

    async def finished() -> Job | None:
        job = await Job.get(id=again.id)
        return job if job.state not in (JobState.QUEUED, JobState.RUNNING) else None

    job: Job = await wait_for(finished, 30, "the third run to end")  # type: ignore[assignment]
    assert (job.state, job.result["invoices"]) == (JobState.SUCCEEDED, 0)
    assert await Invoice.all().count() == 400
    await assert_one_numbered_invoice_each(companies)
