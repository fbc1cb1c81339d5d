"""License usage: units per company, product and month, counted from the managed inventory in
SQL and kept at the month's highest count.

Counting rules (the month is [first day 00:00 UTC, first day of the next month 00:00 UTC)):

- AGENT_SERVER / AGENT_WORKSTATION: managed computers whose Veeam backup agent has the server /
  workstation edition and that had at least one backup job session starting in the month
  (any job: the computer is protected either way). One unit per computer.
- VBR_WORKLOAD: Veeam Backup & Replication backup and replication jobs (kinds VBR_BACKUP and
  REPLICATION) with a session starting in the month. A job stands for the workload it
  protects; backup copy jobs copy what a backup job already protects and are not counted.
- PUBLIC_CLOUD_WORKLOAD: Veeam Backup for Public Clouds policies (PUBLIC_CLOUD_POLICY) with a
  session in the month.
- MICROSOFT_365_USER: Veeam Backup for Microsoft 365 jobs (MICROSOFT_365) with a session in
  the month.

A company with no unit of a product has no row for it. Collecting writes, per product, one
bulk upsert of the rows whose count is new or higher than the stored one (under a lock named
after the month): a second run with the same inventory writes nothing, and a lower count
(sessions purged, computers removed) never lowers what the month already reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from app.authz.capabilities import LICENSING
from app.authz.matrix import Action
from app.db import connection_name, serialize
from app.errors import BadInput
from app.models import Job, Organization
from app.models.backups import BackupJob, BackupJobKind, BackupJobSession
from app.models.inventory import AgentEdition, ManagedComputer
from app.models.licensing import LicensedProduct, LicenseUsage
from app.models.tenancy import OrgKind
from app.services import jobs
from app.services.actor import Actor
from app.services.guards import require

COLLECT_KIND = "licensing.collect"

AGENT_EDITIONS: dict[LicensedProduct, AgentEdition] = {
    LicensedProduct.AGENT_SERVER: AgentEdition.SERVER,
    LicensedProduct.AGENT_WORKSTATION: AgentEdition.WORKSTATION,
}
JOB_KINDS: dict[LicensedProduct, tuple[BackupJobKind, ...]] = {
    LicensedProduct.VBR_WORKLOAD: (BackupJobKind.VBR_BACKUP, BackupJobKind.REPLICATION),
    LicensedProduct.PUBLIC_CLOUD_WORKLOAD: (BackupJobKind.PUBLIC_CLOUD_POLICY,),
    LicensedProduct.MICROSOFT_365_USER: (BackupJobKind.MICROSOFT_365,),
}
PRODUCTS: tuple[LicensedProduct, ...] = tuple(LicensedProduct)


def month_of(day: date | datetime | None = None) -> date:
    """The first day of the month of `day` (today, UTC, when None)."""
    if day is None:
        day = datetime.now(UTC)
    if isinstance(day, datetime):
        day = day.astimezone(UTC).date()
    return day.replace(day=1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    if month.month == 12:
        return start, datetime(month.year + 1, 1, 1, tzinfo=UTC)
    return start, datetime(month.year, month.month + 1, 1, tzinfo=UTC)


def subtree_companies(organization_id: int | None) -> Q:
    """Companies at or below an organization (every company when None); for `company_id`."""
    if organization_id is None:
        return Q()
    companies = Organization.filter(
        Q(id=organization_id) | Q(parent_id=organization_id) | Q(parent__parent_id=organization_id),
        kind=OrgKind.COMPANY.value,
    ).values("id")
    return Q(company_id__in=Subquery(companies))


def _sessions_in(month: date, organization_id: int | None) -> Any:
    start, end = month_bounds(month)
    return BackupJobSession.filter(
        subtree_companies(organization_id), started_at__gte=start, started_at__lt=end
    )


async def count_units(
    product: LicensedProduct, month: date, organization_id: int | None = None
) -> dict[int, int]:
    """Units of `product` per company id for `month`: one grouped SQL query."""
    sessions = _sessions_in(month, organization_id)
    if product in AGENT_EDITIONS:
        query: Any = ManagedComputer.filter(
            subtree_companies(organization_id),
            agent__edition=AGENT_EDITIONS[product].value,
            id__in=Subquery(sessions.filter(computer_id__isnull=False).values("computer_id")),
        )
    else:
        query = BackupJob.filter(
            subtree_companies(organization_id),
            kind__in=[k.value for k in JOB_KINDS[product]],
            id__in=Subquery(sessions.values("job_id")),
        )
    rows = await query.annotate(n=Count("id")).group_by("company_id").values("company_id", "n")
    return {int(r["company_id"]): int(r["n"]) for r in rows if r["n"]}


@dataclass(frozen=True)
class ProductResult:
    product: LicensedProduct
    companies: int  # companies with at least one unit this run
    units: int  # units counted this run, summed over the companies
    written: int  # rows inserted or raised


async def collect_product(
    product: LicensedProduct, month: date, organization_id: int | None = None
) -> ProductResult:
    """Count `product` for the month and upsert the rows whose count is new or higher."""
    counts = await count_units(product, month, organization_id)
    written = 0
    async with in_transaction(connection_name()):
        # Two collections of the same month (the schedule and a user's) take turns, so a
        # lower count read before a higher one was written cannot overwrite it.
        await serialize(f"license_usage:{month.isoformat()}:{product.value}")
        stored = dict(
            await LicenseUsage.filter(
                subtree_companies(organization_id), month=month, product=product.value
            ).values_list("company_id", "units")
        )
        rows = [
            LicenseUsage(company_id=company_id, product=product, month=month, units=units)
            for company_id, units in sorted(counts.items())
            if units > stored.get(company_id, 0)
        ]
        if rows:
            await LicenseUsage.bulk_create(
                rows,
                on_conflict=["company_id", "product", "month"],
                update_fields=["units", "updated_at"],
            )
            written = len(rows)
    return ProductResult(product, len(counts), sum(counts.values()), written)


def months_to_collect(raw: Any, now: datetime | None = None) -> list[date]:
    """A job's months: the month of `raw` (an ISO date, any day of it); without one, the
    current month, and on its first day the month that just ended as well (its last hours'
    sessions came after the previous daily run)."""
    if raw in (None, ""):
        now = now or datetime.now(UTC)
        return sorted({month_of(now - timedelta(days=1)), month_of(now)})
    try:
        return [month_of(date.fromisoformat(str(raw)))]
    except ValueError:
        raise BadInput(f"not an ISO date: {raw!r}", field="month") from None


async def start_collect(actor: Actor, month: date | None = None) -> Job:
    """Starts `licensing.collect` for the caller's organization and what lies below it (the
    jobs service writes the audit entry). A month in the future has nothing to count."""
    p = actor.p
    require(p, LICENSING, Action.UPDATE)
    target = month_of(month)
    if target > month_of():
        raise BadInput("the month has not begun yet", field="month")
    organization = await Organization.get(id=p.organization_id)
    job, _ = await jobs.create(actor, COLLECT_KIND, organization, {"month": target.isoformat()})
    return job
