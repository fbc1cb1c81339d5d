"""Usage of billing customers, measured for invoices: grouped SQL aggregates for many customers
at once — eight statements per batch of `BATCH` customers, whatever their size and however
many periods and kinds (per location or not) are asked for them (`measure_many`: a billing
run's batch measures every due invoice in one call). The counts are read per company and
location and the ledger per company, location and slice of time (the periods' bounds cut the
time into slices), from the batch's companies only (their ids: index scans), then summed per
request in Python.

Customers: a company (billed by its reseller or, when direct, by the provider) is measured on
its own rows; a reseller (billed by the provider) is the sum over its companies. A company and
its reseller may be measured in the same call (each gets the company's usage). Any other id
(the provider, an unknown id) gets zero usage.

Counts, measured at generation time from the inventory and Cloud Connect (the period plays no
part):

- WORKSTATION_AGENT / SERVER_AGENT: Veeam backup agents by edition (one agent per computer),
  at the computer's location.
- MANAGED_VM: Veeam Backup & Replication backup and replication jobs (kinds VBR_BACKUP and
  REPLICATION), enabled or not, at the job's location. The inventory has no VM rows and a
  server job is reported without its objects, so — as licensing counts VBR workloads
  (app.services.licensing) — one job stands for the VM workload it protects. Backup copy
  jobs copy what a backup job already protects and are not counted.
- CLOUD_BACKUP_WORKSTATION / CLOUD_BACKUP_SERVER: agents by edition whose computer has at least
  one agent job targeting a cloud repository (target CLOUD).
- CLOUD_BACKUP_VM: Veeam Backup & Replication backup and backup copy jobs (VBR_BACKUP,
  BACKUP_COPY) targeting a cloud repository, one per job (same reason as MANAGED_VM).
- REPLICATED_VM: VM replicas (VmReplica) of the customer's tenant accounts, whatever their
  state; no location (tenant accounts belong to the company).
- CLOUD_STORAGE_GB: the backup resources of the customer's tenant accounts, no location: one
  `Usage` with `quantity` = the summed quota (GB, ALLOCATED mode) and `consumed` = the summed
  used space (GB, CONSUMED mode); pricing picks one by the rate's storage mode.

Period quantities, summed from the usage ledger (app.services.usage_ledger) over the entries
whose `at` falls in [period_start 00:00 UTC, period_end + 1 day 00:00 UTC) — the invoice's
period with its last day included: COMPUTE_HOUR and TRANSFER_OUT_GB, at the entry's location
(none for compute). Sums are exact on PostgreSQL; SQLite sums the decimal text as floats, so
they are rounded back to the ledger's 6 decimals.

A request without `per_location` gives its customer one `Usage` per item, zeros included
(a quota usage report lists them all). With `per_location` (DETAILED invoices) it gives
one `Usage` per item and location, non-zero ones only, with the location's name ("East"; for
a reseller "A1 / East", its company first); usage without a location has `location_id` None.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from tortoise.expressions import Case, Q, Subquery, When
from tortoise.functions import Count, Sum

from app.billing.pricing import Usage
from app.models.backups import BackupJob, BackupJobKind, TargetKind
from app.models.billing import BillingItem, UsageEntry
from app.models.cloud import BackupResource, VmReplica
from app.models.inventory import AgentEdition, BackupAgent
from app.models.tenancy import Location, Organization, OrgKind

BATCH = 2000  # customers per batch: keeps the statements' parameters well under the limits
MAX_LISTED = 10_000  # ids passed as a list (parameters); more: as a subquery
LEDGER_PLACES = Decimal("0.000001")
ZERO = Decimal(0)

AGENT_ITEMS = {
    AgentEdition.WORKSTATION.value: (
        BillingItem.WORKSTATION_AGENT,
        BillingItem.CLOUD_BACKUP_WORKSTATION,
    ),
    AgentEdition.SERVER.value: (BillingItem.SERVER_AGENT, BillingItem.CLOUD_BACKUP_SERVER),
}
MANAGED_VM_JOBS = (BackupJobKind.VBR_BACKUP.value, BackupJobKind.REPLICATION.value)
CLOUD_VM_JOBS = (BackupJobKind.VBR_BACKUP.value, BackupJobKind.BACKUP_COPY.value)
ORDER = {item: i for i, item in enumerate(BillingItem)}
LEDGER_ITEMS = (BillingItem.COMPUTE_HOUR.value, BillingItem.TRANSFER_OUT_GB.value)

# (location id or None, item, ledger slice (0 for counts), quantity, consumed)
_Figure = tuple[int | None, BillingItem, int, Decimal, Decimal]


@dataclass(frozen=True)
class Wanted:
    """One measurement asked for: a customer over a period (its last day included), one
    `Usage` per item (`per_location` False) or per item and location."""

    customer_id: int
    period_start: date
    period_end: date
    per_location: bool = False


def period_bounds(period_start: date, period_end: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a period given by its first and last (inclusive) day."""
    start = datetime.combine(period_start, time.min, tzinfo=UTC)
    end = datetime.combine(period_end + timedelta(days=1), time.min, tzinfo=UTC)
    return start, end


def _dec(value: Any) -> Decimal:
    if value is None:
        return ZERO
    if isinstance(value, float):
        return Decimal(repr(value)).quantize(LEDGER_PLACES)
    return Decimal(value)


def _companies_q(customer_ids: Sequence[int]) -> Q:
    """Companies measured for these customers: the companies among them and the companies of
    the resellers among them."""
    resellers = Organization.filter(id__in=customer_ids, kind=OrgKind.RESELLER.value).values("id")
    return Q(kind=OrgKind.COMPANY.value) & (
        Q(id__in=customer_ids) | Q(parent_id__in=Subquery(resellers))
    )


async def _counts(companies: Any) -> dict[int, list[_Figure]]:
    """The counted figures (inventory and Cloud Connect) of these companies, per company,
    location and item: five grouped statements whatever the number of companies or periods."""
    out: dict[int, list[_Figure]] = defaultdict(list)

    def add(company: Any, location: Any, item: BillingItem, n: Any, consumed: Any = 0) -> None:
        loc = None if location is None else int(location)
        out[int(company)].append((loc, item, 0, _dec(n), _dec(consumed)))

    agent_keys = ("computer__company_id", "computer__location_id", "edition")
    agents = BackupAgent.filter(computer__company_id__in=companies)
    for row in await agents.annotate(n=Count("id")).group_by(*agent_keys).values(*agent_keys, "n"):
        add(row[agent_keys[0]], row[agent_keys[1]], AGENT_ITEMS[row["edition"]][0], row["n"])
    cloud_jobs = BackupJob.filter(
        company_id__in=companies, kind=BackupJobKind.AGENT.value, target_kind=TargetKind.CLOUD.value
    ).values("computer_id")
    cloud_agents = agents.filter(computer_id__in=Subquery(cloud_jobs))
    for row in (
        await cloud_agents.annotate(n=Count("id")).group_by(*agent_keys).values(*agent_keys, "n")
    ):
        add(row[agent_keys[0]], row[agent_keys[1]], AGENT_ITEMS[row["edition"]][1], row["n"])

    job_keys = ("company_id", "location_id", "kind", "target_kind")
    jobs = BackupJob.filter(company_id__in=companies, kind__in=(*MANAGED_VM_JOBS, "BACKUP_COPY"))
    for row in await jobs.annotate(n=Count("id")).group_by(*job_keys).values(*job_keys, "n"):
        if row["kind"] in MANAGED_VM_JOBS:
            add(row["company_id"], row["location_id"], BillingItem.MANAGED_VM, row["n"])
        if row["kind"] in CLOUD_VM_JOBS and row["target_kind"] == TargetKind.CLOUD.value:
            add(row["company_id"], row["location_id"], BillingItem.CLOUD_BACKUP_VM, row["n"])

    account_company = "tenant_account__company_id"
    replicas = VmReplica.filter(tenant_account__company_id__in=companies)
    for row in (
        await replicas.annotate(n=Count("id"))
        .group_by(account_company)
        .values(account_company, "n")
    ):
        add(row[account_company], None, BillingItem.REPLICATED_VM, row["n"])
    storage = BackupResource.filter(tenant_account__company_id__in=companies)
    for row in (
        await storage.annotate(quota=Sum("quota_gb"), used=Sum("used_gb"))
        .group_by(account_company)
        .values(account_company, "quota", "used")
    ):
        add(row[account_company], None, BillingItem.CLOUD_STORAGE_GB, row["quota"], row["used"])
    return out


async def _ledger(companies: Any, bounds: Sequence[datetime]) -> dict[int, list[_Figure]]:
    """The ledger quantities of these companies between the first and the last of `bounds`,
    per company, location, item and slice (slice i: [bounds[i], bounds[i + 1])), in one
    grouped statement: every period asked for is a run of whole slices."""
    out: dict[int, list[_Figure]] = defaultdict(list)
    keys: tuple[str, ...] = ("company_id", "location_id", "item")
    entries = UsageEntry.filter(
        company_id__in=companies, at__gte=bounds[0], at__lt=bounds[-1], item__in=LEDGER_ITEMS
    )
    if len(bounds) > 2:
        inner = bounds[1:-1]
        slices = Case(
            *(When(Q(at__lt=b), then=str(i)) for i, b in enumerate(inner)), default=str(len(inner))
        )
        entries = entries.annotate(slice=slices)
        keys = (*keys, "slice")
    for row in await entries.annotate(q=Sum("quantity")).group_by(*keys).values(*keys, "q"):
        loc = None if row["location_id"] is None else int(row["location_id"])
        q = _dec(row["q"]).quantize(LEDGER_PLACES)
        figure = (loc, BillingItem(row["item"]), int(row.get("slice", 0)), q, ZERO)
        out[int(row["company_id"])].append(figure)
    return out


async def _location_names(location_ids: Any) -> dict[int, tuple[str, str]]:
    """location id → (its name, its company's name), for a set of ids or a subquery."""
    ids = sorted(location_ids) if isinstance(location_ids, set) else location_ids
    rows = await Location.filter(id__in=ids).values("id", "name", "company__name")
    return {int(r["id"]): (r["name"], r["company__name"]) for r in rows}


async def _billed_to(customer_ids: Sequence[int]) -> tuple[dict[int, list[int]], set[int]]:
    """company id → the customers it counts for (itself, its reseller, or both); and the
    resellers among the customers. One statement."""
    org_rows = await Organization.filter(
        _companies_q(customer_ids) | Q(id__in=customer_ids)
    ).values("id", "kind", "parent_id")
    wanted = set(customer_ids)
    resellers = {int(r["id"]) for r in org_rows if r["kind"] == OrgKind.RESELLER.value}
    billed_to: dict[int, list[int]] = defaultdict(list)
    for r in org_rows:
        if r["kind"] != OrgKind.COMPANY.value:
            continue
        if int(r["id"]) in wanted:
            billed_to[int(r["id"])].append(int(r["id"]))
        if r["parent_id"] is not None and int(r["parent_id"]) in resellers:
            billed_to[int(r["id"])].append(int(r["parent_id"]))
    return billed_to, resellers


async def _measure_batch(wanted: Sequence[Wanted]) -> dict[Wanted, list[Usage]]:
    customer_ids = sorted({w.customer_id for w in wanted})
    billed_to, resellers = await _billed_to(customer_ids)
    companies_of: dict[int, list[int]] = defaultdict(list)
    for company, customers in billed_to.items():
        for customer in customers:
            companies_of[customer].append(company)
    # The companies as a list (index scans on the inventory's company keys); a subquery when
    # resellers bring too many for one statement's parameters.
    companies: Any = sorted(billed_to)
    if len(companies) > MAX_LISTED:
        companies = Subquery(Organization.filter(_companies_q(customer_ids)).values("id"))
    bounds = sorted({b for w in wanted for b in period_bounds(w.period_start, w.period_end)})
    counts = await _counts(companies) if billed_to else {}
    ledger = await _ledger(companies, bounds) if billed_to else {}
    located: Any = {
        f[0]
        for figures in (counts, ledger)
        for company_figures in figures.values()
        for f in company_figures
        if f[0] is not None
    }
    per_location = any(w.per_location for w in wanted)
    if len(located) > MAX_LISTED:
        located = Subquery(Location.filter(company_id__in=companies).values("id"))
    names = await _location_names(located) if per_location and located else {}

    result: dict[Wanted, list[Usage]] = {}
    for w in wanted:
        first, last = (bounds.index(b) for b in period_bounds(w.period_start, w.period_end))
        per_item: dict[tuple[int | None, BillingItem], list[Decimal]] = {}
        for company in companies_of.get(w.customer_id, ()):
            in_period = [f for f in ledger.get(company, ()) if first <= f[2] < last]
            for loc, item, _, n, consumed in (*counts.get(company, ()), *in_period):
                acc = per_item.setdefault((loc if w.per_location else None, item), [ZERO, ZERO])
                acc[0] += n
                acc[1] += consumed
        result[w] = _usages(w, per_item, names, w.customer_id in resellers)
    return result


def _usages(
    w: Wanted,
    per_item: dict[tuple[int | None, BillingItem], list[Decimal]],
    names: dict[int, tuple[str, str]],
    reseller: bool,
) -> list[Usage]:
    if not w.per_location:
        totals = [(item, per_item.get((None, item), (ZERO, ZERO))) for item in BillingItem]
        return [_usage(item, n, consumed, None, "") for item, (n, consumed) in totals]
    usages = [
        _usage(item, n, consumed, loc, _name(names, loc, reseller))
        for (loc, item), (n, consumed) in per_item.items()
        if n or consumed
    ]
    usages.sort(key=lambda u: (ORDER[u.item], u.location_id is None, u.location_id or 0))
    return usages


def _name(names: dict[int, tuple[str, str]], loc: int | None, reseller: bool) -> str:
    if loc is None or loc not in names:
        return ""
    name, company = names[loc]
    return f"{company} / {name}" if reseller else name


def _usage(item: BillingItem, n: Decimal, consumed: Decimal, loc: int | None, name: str) -> Usage:
    if item == BillingItem.CLOUD_STORAGE_GB:
        return Usage(item, n, loc, name, consumed)
    return Usage(item, n, loc, name)


async def measure_many(wanted: Iterable[Wanted]) -> dict[Wanted, list[Usage]]:
    """The usage of many customers over their periods, per location or not (see the module
    docstring for what is counted and how), in the same handful of statements per `BATCH`
    customers whatever the periods and kinds asked for: the counts and the ledger are read
    once per batch, per company and location, and summed per request here."""
    by_customer: dict[int, list[Wanted]] = defaultdict(list)
    for w in set(wanted):
        by_customer[w.customer_id].append(w)
    ids = sorted(by_customer)
    result: dict[Wanted, list[Usage]] = {}
    for i in range(0, len(ids), BATCH):
        batch = [w for pk in ids[i : i + BATCH] for w in by_customer[pk]]
        result.update(await _measure_batch(batch))
    return result


async def measure(
    customer_ids: Iterable[int],
    period_start: date,
    period_end: date,
    per_location: bool = False,
) -> dict[int, list[Usage]]:
    """The usage of each customer over one period (see `measure_many`). `period_end` is the
    period's last day, included."""
    wanted = [Wanted(int(pk), period_start, period_end, per_location) for pk in set(customer_ids)]
    return {w.customer_id: usages for w, usages in (await measure_many(wanted)).items()}
