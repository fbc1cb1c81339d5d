"""Usage measured for billing: every item's counting rule with exact figures on the world
(companies, a reseller as the sum of its companies, customers with nothing), the ledger's
period bounds, per-location figures with their names, and a statement count that does not grow
with the number of customers."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from app.billing.pricing import Usage
from app.models import (
    AgentEdition,
    AgentPlatform,
    BackupAgent,
    BackupJob,
    BackupJobKind,
    ManagedComputer,
)
from app.models.backups import TargetKind
from app.models.billing import BillingItem, UsageEntry
from app.models.cloud import BackupResource, CloudRepository, VmReplica
from app.services import billing_usage
from tests.querycount import count_queries
from tests.test_allocations import make_account

I = BillingItem  # noqa: E741
D = Decimal
START, END = date(2026, 10, 1), date(2026, 10, 31)
CLOUD, LOCAL = TargetKind.CLOUD, TargetKind.LOCAL


class Rows:
    def __init__(self, world: Any) -> None:
        self.world = world
        self.serial = 0

    def uid(self) -> str:
        self.serial += 1
        return f"u{self.serial}"

    def loc(self, key: str) -> int:
        return self.world.locations[key].id

    async def computer(
        self, key: str, edition: AgentEdition | None, *jobs: TargetKind, location: str = "Default"
    ) -> ManagedComputer:
        uid = self.uid()
        computer = await ManagedComputer.create(
            company=self.world.orgs[key],
            location_id=self.loc(f"{key}-{location}"),
            uid=uid,
            hostname=uid,
        )
        if edition is not None:
            await BackupAgent.create(
                computer=computer, platform=AgentPlatform.WINDOWS, edition=edition
            )
        for target in jobs:
            await self.job(key, BackupJobKind.AGENT, target, location, computer=computer)
        return computer

    async def job(
        self,
        key: str,
        kind: BackupJobKind,
        target: TargetKind,
        location: str = "Default",
        computer: ManagedComputer | None = None,
    ) -> BackupJob:
        uid = self.uid()
        return await BackupJob.create(
            company=self.world.orgs[key],
            location_id=self.loc(f"{key}-{location}"),
            uid=uid,
            name=uid,
            kind=kind,
            functionality="BACKUP_AGENTS",
            computer=computer,
            target_kind=target,
        )

    async def cloud(self, key: str, replicas: int, *resources: tuple[int, int]) -> None:
        account = await make_account(self.world, key)
        for i in range(replicas):
            await VmReplica.create(tenant_account=account, name=f"vm{i}", source_vm=f"vm{i}")
        for quota, used in resources:
            repo = await CloudRepository.create(name=self.uid(), capacity_gb=10_000)
            await BackupResource.create(
                tenant_account=account, repository=repo, quota_gb=quota, used_gb=used
            )

    async def ledger(
        self, key: str, item: BillingItem, quantity: str, at: datetime, location: str | None = None
    ) -> None:
        await UsageEntry.create(
            company=self.world.orgs[key],
            item=item,
            quantity=D(quantity),
            at=at,
            source_key=self.uid(),
            location_id=self.loc(f"{key}-{location}") if location else None,
        )


async def build(world: Any) -> Rows:
    rows = Rows(world)
    S, W = AgentEdition.SERVER, AgentEdition.WORKSTATION
    # A1 (reseller R1): agents, Default and East.
    await rows.computer("A1", S, CLOUD, LOCAL)  # cloud backup server (one agent, two jobs)
    await rows.computer("A1", S, LOCAL)
    await rows.computer("A1", W, CLOUD)
    await rows.computer("A1", W, LOCAL, location="East")
    await rows.computer("A1", W, location="East")  # no job at all: still an agent
    await rows.computer("A1", None, CLOUD, location="East")  # no backup agent: nothing
    # A1: server jobs.
    await rows.job("A1", BackupJobKind.VBR_BACKUP, LOCAL)  # managed VM
    await rows.job("A1", BackupJobKind.VBR_BACKUP, CLOUD, "East")  # managed VM + cloud backup
    await rows.job("A1", BackupJobKind.REPLICATION, LOCAL)  # managed VM
    await rows.job("A1", BackupJobKind.REPLICATION, CLOUD)  # managed VM (replicas count apart)
    await rows.job("A1", BackupJobKind.BACKUP_COPY, CLOUD, "East")  # cloud backup only
    await rows.job("A1", BackupJobKind.BACKUP_COPY, LOCAL)  # nothing
    await rows.job("A1", BackupJobKind.PUBLIC_CLOUD_POLICY, CLOUD)  # nothing
    await rows.job("A1", BackupJobKind.MICROSOFT_365, CLOUD)  # nothing
    # A1: Cloud Connect.
    await rows.cloud("A1", 3, (500, 120), (100, 31))
    # A1: ledger around the period (the last day is included, the next day is not).
    await rows.ledger("A1", I.COMPUTE_HOUR, "1.5", datetime(2026, 10, 1, tzinfo=UTC))
    await rows.ledger("A1", I.COMPUTE_HOUR, "2.25", datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
    await rows.ledger("A1", I.COMPUTE_HOUR, "10", datetime(2026, 11, 1, tzinfo=UTC))
    await rows.ledger("A1", I.COMPUTE_HOUR, "20", datetime(2026, 9, 30, 23, 59, 59, tzinfo=UTC))
    await rows.ledger(
        "A1", I.TRANSFER_OUT_GB, "0.123456", datetime(2026, 10, 9, tzinfo=UTC), "East"
    )
    await rows.ledger(
        "A1", I.TRANSFER_OUT_GB, "1.000001", datetime(2026, 10, 10, tzinfo=UTC), "East"
    )
    # A2 (R1), B1 (R2), P1 (direct).
    await rows.computer("A2", S, CLOUD)
    await rows.cloud("A2", 1, (50, 10))
    await rows.ledger("A2", I.TRANSFER_OUT_GB, "2", datetime(2026, 10, 20, tzinfo=UTC))
    await rows.computer("B1", W, CLOUD)
    await rows.computer("P1", S)
    await rows.job("P1", BackupJobKind.VBR_BACKUP, CLOUD)
    return rows


def figures(usages: list[Usage]) -> dict[BillingItem, tuple[Decimal, Decimal | None]]:
    return {u.item: (u.quantity, u.consumed) for u in usages}


def counts(**kw: Any) -> dict[BillingItem, tuple[Decimal, Decimal | None]]:
    out: dict[BillingItem, tuple[Decimal, Decimal | None]] = {
        item: (D(0), None) for item in BillingItem
    }
    out[I.CLOUD_STORAGE_GB] = (D(0), D(0))
    for name, value in kw.items():
        out[I[name]] = value if isinstance(value, tuple) else (D(value), None)
    return out


A1 = counts(
    WORKSTATION_AGENT=3,
    SERVER_AGENT=2,
    MANAGED_VM=4,
    CLOUD_BACKUP_WORKSTATION=1,
    CLOUD_BACKUP_SERVER=1,
    CLOUD_BACKUP_VM=2,
    REPLICATED_VM=3,
    CLOUD_STORAGE_GB=(D(600), D(151)),
    COMPUTE_HOUR="3.75",
    TRANSFER_OUT_GB="1.123457",
)


async def test_every_item_of_companies_and_resellers(world) -> None:
    await build(world)
    o = world.orgs
    ids = [o[k].id for k in ("A1", "A2", "R1", "R2", "P1", "Provider")] + [987654]
    got = await billing_usage.measure(ids, START, END)
    assert set(got) == set(ids)
    for usages in got.values():
        assert [u.item for u in usages] == list(BillingItem)  # every item, zeros included
        assert all(u.location_id is None and u.location_name == "" for u in usages)
    assert figures(got[o["A1"].id]) == A1
    a2 = counts(
        SERVER_AGENT=1,
        CLOUD_BACKUP_SERVER=1,
        REPLICATED_VM=1,
        CLOUD_STORAGE_GB=(D(50), D(10)),
        TRANSFER_OUT_GB=2,
    )
    assert figures(got[o["A2"].id]) == a2
    # The reseller: the sum over its companies.
    r1 = {item: (A1[item][0] + a2[item][0], None) for item in BillingItem}
    r1[I.CLOUD_STORAGE_GB] = (D(650), D(161))
    assert figures(got[o["R1"].id]) == r1
    assert figures(got[o["R2"].id]) == counts(WORKSTATION_AGENT=1, CLOUD_BACKUP_WORKSTATION=1)
    assert figures(got[o["P1"].id]) == counts(SERVER_AGENT=1, MANAGED_VM=1, CLOUD_BACKUP_VM=1)
    # The provider is nobody's customer; an unknown id has nothing.
    assert figures(got[o["Provider"].id]) == counts()
    assert figures(got[987654]) == counts()


async def test_ledger_period_is_inclusive_of_its_last_day(world) -> None:
    await build(world)
    a1 = world.orgs["A1"].id
    day = await billing_usage.measure([a1], date(2026, 10, 31), date(2026, 10, 31))
    assert figures(day[a1])[I.COMPUTE_HOUR] == (D("2.25"), None)
    assert figures(day[a1])[I.TRANSFER_OUT_GB] == (D(0), None)
    # The counts do not depend on the period.
    assert figures(day[a1])[I.MANAGED_VM] == (D(4), None)
    sept = await billing_usage.measure([a1], date(2026, 9, 1), date(2026, 9, 30))
    assert figures(sept[a1])[I.COMPUTE_HOUR] == (D(20), None)
    both = await billing_usage.measure([a1], date(2026, 9, 30), date(2026, 11, 1))
    assert figures(both[a1])[I.COMPUTE_HOUR] == (D("33.75"), None)


async def test_per_location(world) -> None:
    await build(world)
    o, loc = world.orgs, world.locations
    d, e = loc["A1-Default"].id, loc["A1-East"].id
    got = await billing_usage.measure([o["A1"].id, o["R1"].id], START, END, per_location=True)
    a1 = [(u.item, u.location_id, u.location_name, u.quantity, u.consumed) for u in got[o["A1"].id]]
    assert a1 == [
        (I.WORKSTATION_AGENT, d, "Default location", 1, None),
        (I.WORKSTATION_AGENT, e, "East", 2, None),
        (I.SERVER_AGENT, d, "Default location", 2, None),
        (I.MANAGED_VM, d, "Default location", 3, None),
        (I.MANAGED_VM, e, "East", 1, None),
        (I.CLOUD_BACKUP_WORKSTATION, d, "Default location", 1, None),
        (I.CLOUD_BACKUP_SERVER, d, "Default location", 1, None),
        (I.CLOUD_BACKUP_VM, e, "East", 2, None),
        (I.REPLICATED_VM, None, "", 3, None),
        (I.CLOUD_STORAGE_GB, None, "", 600, 151),
        (I.COMPUTE_HOUR, None, "", D("3.75"), None),
        (I.TRANSFER_OUT_GB, e, "East", D("1.123457"), None),
    ]
    r1 = {(u.item, u.location_name): u.quantity for u in got[o["R1"].id]}
    assert r1[(I.SERVER_AGENT, "A1 / Default location")] == 2
    assert r1[(I.SERVER_AGENT, "A2 / Default location")] == 1
    assert r1[(I.REPLICATED_VM, "")] == 4  # no location: summed over the companies
    assert r1[(I.TRANSFER_OUT_GB, "")] == 2  # A2's entry had no location
    assert (I.SERVER_AGENT, "A1 / East") not in r1  # zeros left out


async def test_statements_do_not_grow_with_customers(world) -> None:
    await build(world)
    o = world.orgs
    with count_queries() as one:
        await billing_usage.measure([o["A1"].id], START, END, per_location=True)
    with count_queries() as many:
        got = await billing_usage.measure(
            [o[k].id for k in ("A1", "A2", "B1", "P1", "R1", "R2")], START, END, per_location=True
        )
    assert len(got) == 6
    assert one.count == many.count == 8, many
    with count_queries() as summary:
        await billing_usage.measure([o[k].id for k in ("A1", "R2")], START, END)
    assert summary.count == 7, summary  # no location names


async def test_batches_of_customers(world, monkeypatch) -> None:
    await build(world)
    o = world.orgs
    ids = [o[k].id for k in ("A1", "A2", "B1", "P1", "R1")]
    whole = await billing_usage.measure(ids, START, END)
    monkeypatch.setattr(billing_usage, "BATCH", 2)
    with count_queries() as queries:
        batched = await billing_usage.measure(ids, START, END)
    assert batched == whole
    assert queries.count == 3 * 7  # three batches


async def test_many_periods_and_both_kinds_in_the_same_statements(world) -> None:
    """Overlapping periods (a company and its reseller on different ones, a customer over two)
    and per-location or not, asked together: each answer equals its own `measure` call, and the
    whole costs what one per-location measurement costs."""
    await build(world)
    o = world.orgs
    sept, octo = (date(2026, 9, 1), date(2026, 9, 30)), (START, END)
    late = (date(2026, 9, 30), date(2026, 10, 31))
    W = billing_usage.Wanted
    wanted = [
        W(o["A1"].id, *sept, True),
        W(o["A1"].id, *octo, True),
        W(o["A1"].id, *octo),
        W(o["R1"].id, *late),
        W(o["R1"].id, *octo, True),
        W(o["A2"].id, *late, True),
        W(o["P1"].id, *sept),
        W(987654, *octo, True),
    ]
    with count_queries() as together:
        got = await billing_usage.measure_many(wanted)
    assert together.count == 8, together
    for w in wanted:
        alone = await billing_usage.measure(
            [w.customer_id], w.period_start, w.period_end, w.per_location
        )
        assert got[w] == alone[w.customer_id], w
    assert figures(got[W(o["A1"].id, *octo)])[I.COMPUTE_HOUR] == (D("3.75"), None)
    assert figures(got[W(o["R1"].id, *late)])[I.COMPUTE_HOUR] == (D("23.75"), None)
    assert figures(got[W(o["R1"].id, *late)])[I.TRANSFER_OUT_GB] == (D("3.123457"), None)
    assert got[W(987654, *octo, True)] == []


async def test_many_companies_go_in_as_subqueries(world, monkeypatch) -> None:
    """Past `MAX_LISTED` ids (a reseller with very many companies) the companies and locations
    are selected by subqueries instead of lists: the same figures, the same statements."""
    await build(world)
    o = world.orgs
    ids = [o[k].id for k in ("A1", "A2", "B1", "P1", "R1", "R2")]
    listed = await billing_usage.measure(ids, START, END, per_location=True)
    monkeypatch.setattr(billing_usage, "MAX_LISTED", 1)
    with count_queries() as queries:
        selected = await billing_usage.measure(ids, START, END, per_location=True)
    assert selected == listed
    assert queries.count == 8, queries
    assert "IN (SELECT" in queries.matching('FROM "usage_ledger"')[0]
