"""Usage of billing customers, measured for invoices: grouped SQL aggregates for many customers
at once (a handful of statements per batch of `BATCH` customers, whatever their size).

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

`measure(..., per_location=False)` gives every customer one `Usage` per item, zeros included
(a quota usage report lists them all). With `per_location=True` (DETAILED invoices) it gives
one `Usage` per item and location, non-zero ones only, with the location's name ("East"; for
a reseller "A1 / East", its company first); usage without a location has `location_id` None.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count, Sum

from app.billing.pricing import Usage
from app.models.backups import BackupJob, BackupJobKind, TargetKind
from app.models.billing import BillingItem, UsageEntry
from app.models.cloud import BackupResource, VmReplica
from app.models.inventory import AgentEdition, BackupAgent
from app.models.tenancy import Location, Organization, OrgKind

BATCH = 2000  # customers per batch: keeps the statements' parameters well under the limits
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

# (company id, location id or None, item) → [quantity, consumed]
_Key = tuple[int, int | None, BillingItem]


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


async def _measure_companies(
    companies: Any, start: datetime, end: datetime, per_location: bool
) -> dict[_Key, list[Decimal]]:
    """Every figure of the companies selected by the `companies` subquery, per company
    (and location when `per_location`)."""
    out: dict[_Key, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])

    def add(company: Any, location: Any, item: BillingItem, n: Any, consumed: Any = 0) -> None:
        loc = int(location) if per_location and location is not None else None
        figures = out[(int(company), loc, item)]
        figures[0] += _dec(n)
        figures[1] += _dec(consumed)

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

    ledger_keys = ("company_id", "location_id", "item")
    ledger = UsageEntry.filter(
        company_id__in=companies, at__gte=start, at__lt=end, item__in=LEDGER_ITEMS
    )
    for row in (
        await ledger.annotate(q=Sum("quantity")).group_by(*ledger_keys).values(*ledger_keys, "q")
    ):
        q = _dec(row["q"]).quantize(LEDGER_PLACES)
        add(row["company_id"], row["location_id"], BillingItem(row["item"]), q)
    return out


async def _location_names(companies: Any) -> dict[int, tuple[str, str]]:
    """location id → (its name, its company's name)."""
    rows = await Location.filter(company_id__in=companies).values("id", "name", "company__name")
    return {int(r["id"]): (r["name"], r["company__name"]) for r in rows}


async def _measure_batch(
    customer_ids: Sequence[int], start: datetime, end: datetime, per_location: bool
) -> dict[int, list[Usage]]:
    org_rows = await Organization.filter(
        _companies_q(customer_ids) | Q(id__in=customer_ids)
    ).values("id", "kind", "parent_id")
    wanted = set(customer_ids)
    resellers = {int(r["id"]) for r in org_rows if r["kind"] == OrgKind.RESELLER.value}
    # company id → the customers it counts for (itself, its reseller, or both)
    billed_to: dict[int, list[int]] = defaultdict(list)
    for r in org_rows:
        if r["kind"] != OrgKind.COMPANY.value:
            continue
        if int(r["id"]) in wanted:
            billed_to[int(r["id"])].append(int(r["id"]))
        if r["parent_id"] is not None and int(r["parent_id"]) in resellers:
            billed_to[int(r["id"])].append(int(r["parent_id"]))

    companies = Subquery(Organization.filter(_companies_q(customer_ids)).values("id"))
    figures = await _measure_companies(companies, start, end, per_location) if billed_to else {}
    names = await _location_names(companies) if per_location and figures else {}

    totals: dict[int, dict[tuple[int | None, BillingItem], list[Decimal]]] = {
        pk: {} for pk in customer_ids
    }
    for (company, loc, item), (n, consumed) in figures.items():
        for customer in billed_to.get(company, ()):
            acc = totals[customer].setdefault((loc, item), [ZERO, ZERO])
            acc[0] += n
            acc[1] += consumed

    result: dict[int, list[Usage]] = {}
    for customer, per_item in totals.items():
        if per_location:
            usages = [
                _usage(item, n, consumed, loc, _name(names, loc, customer in resellers))
                for (loc, item), (n, consumed) in per_item.items()
                if n or consumed
            ]
            usages.sort(key=lambda u: (ORDER[u.item], u.location_id is None, u.location_id or 0))
        else:
            usages = []
            for item in BillingItem:
                n, consumed = per_item.get((None, item), (ZERO, ZERO))
                usages.append(_usage(item, n, consumed, None, ""))
        result[customer] = usages
    return result


def _name(names: dict[int, tuple[str, str]], loc: int | None, reseller: bool) -> str:
    if loc is None or loc not in names:
        return ""
    name, company = names[loc]
    return f"{company} / {name}" if reseller else name


def _usage(item: BillingItem, n: Decimal, consumed: Decimal, loc: int | None, name: str) -> Usage:
    if item == BillingItem.CLOUD_STORAGE_GB:
        return Usage(item, n, loc, name, consumed)
    return Usage(item, n, loc, name)


async def measure(
    customer_ids: Iterable[int],
    period_start: date,
    period_end: date,
    per_location: bool = False,
) -> dict[int, list[Usage]]:
    """The usage of each customer (see the module docstring for what is counted and how).
    `period_end` is the period's last day, included."""
    ids = sorted({int(pk) for pk in customer_ids})
    start, end = period_bounds(period_start, period_end)
    result: dict[int, list[Usage]] = {}
    for i in range(0, len(ids), BATCH):
        result.update(await _measure_batch(ids[i : i + BATCH], start, end, per_location))
    return result
