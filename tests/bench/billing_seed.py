"""Billing data at scale, written with asyncpg COPY: plans with rates, one plan assignment per
company, and the usage invoices bill — computers (most with a backup agent, server or
workstation edition), agent jobs backing up to the cloud or locally, Backup & Replication
servers with backup, replication and backup copy jobs (managed and cloud-backed-up VMs), a
tenant account with a backup resource (quota and used space) and VM replicas for most
companies, and ledger entries (compute hours, data transferred out) in and around the billed
period. Shared by the billing benchmark (`tests/bench/billing.py`) and the real-worker kill
test (`tests/test_billing_process.py`).

Everything is drawn from `random.Random` seeded per company, so a company's rows do not depend
on the others'. Ids are assigned here, after the largest id already in each table.

The checks and the floor over these rows are in `tests/bench/billing_check.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg

from app.services.billing_usage import period_bounds


@dataclass(frozen=True)
class PlanShape:
    """A plan every owner (the provider, each reseller) gets."""

    name: str
    currency: str
    tax_type: str
    tax: str
    discount: str
    invoice_type: str
    # item → (rate or None, free allowance, storage mode, block GB, round up); absent: no row
    rates: dict[str, tuple[str | None, str, str, int, bool]]


def _rates(**special: tuple[str | None, str, str, int, bool]) -> dict:
    base = {
        "WORKSTATION_AGENT": ("4.9900", "2", "ALLOCATED", 1, False),
        "SERVER_AGENT": ("19.4750", "0", "ALLOCATED", 1, False),
        "MANAGED_VM": ("7.3333", "1", "ALLOCATED", 1, False),
        "CLOUD_BACKUP_WORKSTATION": ("2.1250", "0", "ALLOCATED", 1, False),
        "CLOUD_BACKUP_SERVER": ("8.0050", "0", "ALLOCATED", 1, False),
        "CLOUD_BACKUP_VM": ("3.3350", "0", "ALLOCATED", 1, False),
        "REPLICATED_VM": ("11.1111", "1", "ALLOCATED", 1, False),
        "CLOUD_STORAGE_GB": ("0.0235", "100", "ALLOCATED", 1, False),
        "COMPUTE_HOUR": ("0.4125", "5", "ALLOCATED", 1, False),
        "TRANSFER_OUT_GB": ("0.0875", "50", "ALLOCATED", 1, False),
    }
    base.update(special)
    return base


PLANS = (
    PlanShape("Standard EUR", "EUR", "VAT", "20.0000", "5.0000", "SUMMARY", _rates()),
    PlanShape(
        "Consumed USD", "USD", "SALES_TAX", "8.8750", "0", "SUMMARY",
        _rates(
            CLOUD_STORAGE_GB=("0.0199", "0", "CONSUMED", 100, True),
            MANAGED_VM=(None, "0", "ALLOCATED", 1, False),  # a blank rate: not billed
        ),
    ),
    PlanShape(
        "Yen detailed", "JPY", "NONE", "0", "12.5000", "DETAILED",
        _rates(
            WORKSTATION_AGENT=("735", "1", "ALLOCATED", 1, False),
            SERVER_AGENT=("2890", "0", "ALLOCATED", 1, False),
            CLOUD_STORAGE_GB=("3.5", "50", "CONSUMED", 50, False),
            COMPUTE_HOUR=("61.75", "0", "ALLOCATED", 1, False),
        ),
    ),
    PlanShape(
        "Dinar GST", "BHD", "GST", "10.0000", "2.5000", "SUMMARY",
        _rates(
            SERVER_AGENT=("7.3215", "0", "ALLOCATED", 1, False),
            CLOUD_STORAGE_GB=("0.0087", "0", "CONSUMED", 250, True),
        ),
    ),
)  # fmt: skip


@dataclass
class Seeded:
    customers: list[int]  # the assigned companies
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _Ids:
    def __init__(self, start: dict[str, int]) -> None:
        self.next = dict(start)

    def __call__(self, table: str) -> int:
        value = self.next[table]
        self.next[table] = value + 1
        return value


# Parents first: the order the tables are written in.
TABLES = (
    "cloud_repositories", "subscription_plans", "plan_rates", "plan_assignments",
    "tenant_accounts", "backup_resources", "vm_replicas", "managed_computers", "backup_agents",
    "backup_servers", "backup_jobs", "usage_ledger",
)  # fmt: skip


async def seed_usage(
    conn: asyncpg.Connection,
    companies: list[tuple[int, int]],
    locations: dict[int, list[int]],
    period_start: date,
    period_end: date,
    computers: tuple[int, int] = (2, 10),
) -> Seeded:
    """Plans for every parent of `companies` ((id, parent id)), an assignment per company
    (billing from `period_start`, a tenth of them from the 15th: a shorter first period), and
    each company's usage; `computers` is the (min, max) per company."""
    started = datetime.now(UTC)
    now = started
    ids = _Ids(
        {t: int(await conn.fetchval(f"SELECT COALESCE(MAX(id), 0) FROM {t}")) + 1 for t in TABLES}
    )
    rows: dict[str, list[tuple]] = {t: [] for t in TABLES}

    repo = ids("cloud_repositories")
    rows["cloud_repositories"].append((repo, f"billing-repo-{repo}", 10**9, 0, now))
    plans_of: dict[int, list[int]] = {}
    for owner in sorted({parent for _, parent in companies}):
        for shape in PLANS:
            plan = ids("subscription_plans")
            plans_of.setdefault(owner, []).append(plan)
            rows["subscription_plans"].append(
                (plan, owner, shape.name, "", shape.currency, shape.tax_type,
                 Decimal(shape.tax), Decimal(shape.discount), 1, 30, shape.invoice_type, now, now)
            )  # fmt: skip
            for item, (rate, allowance, mode, block, up) in shape.rates.items():
                rows["plan_rates"].append(
                    (ids("plan_rates"), plan, item, None if rate is None else Decimal(rate),
                     Decimal(allowance), mode, block, up)
                )  # fmt: skip

    start, end = period_bounds(period_start, period_end)
    seconds = int((end - start).total_seconds())
    for company, parent in companies:
        rng = random.Random(f"billing:{company}")
        locs = locations[company]
        first_day = period_start if rng.random() >= 0.1 else period_start.replace(day=15)
        plan = rng.choice(plans_of[parent])
        rows["plan_assignments"].append((ids("plan_assignments"), company, plan, first_day, now))
        account = resource = None
        if rng.random() < 0.7:
            account = ids("tenant_accounts")
            rows["tenant_accounts"].append(
                (account, company, f"billing-{company}", "STANDALONE", True, 1, "ALL", False,
                 "x", False, now)
            )  # fmt: skip
            resource = ids("backup_resources")
            quota = rng.choice([100, 250, 500, 1000, 2000])
            rows["backup_resources"].append((resource, account, repo, quota, rng.randint(0, quota)))
            for n in range(rng.randint(0, 4)):
                rows["vm_replicas"].append(
                    (ids("vm_replicas"), account, f"replica-{company}-{n}", f"vm{n}", "SNAPSHOT",
                     rng.choice(["READY", "READY", "FAILOVER"]), "[]", now)
                )  # fmt: skip
        for n in range(rng.randint(*computers)):
            computer = ids("managed_computers")
            loc = rng.choice(locs)
            is_server = rng.random() < 0.25
            rows["managed_computers"].append(
                (computer, company, loc, f"bc-{company}-{n}", f"host-{company}-{n}",
                 "WINDOWS", "", "[]", "HEALTHY", 0, now, now)
            )  # fmt: skip
            if rng.random() < 0.1:
                continue  # no agent (discovered, not yet protected): billed for nothing
            rows["backup_agents"].append(
                (ids("backup_agents"), computer, "WINDOWS", "SERVER" if is_server else "WORKSTATION",
                 "6.3", "", "HEALTHY", now)
            )  # fmt: skip
            # One agent job, a tenth of them a second one (cloud and local: billed once).
            for k in range(1 if rng.random() < 0.9 else 2):
                cloud = resource is not None and rng.random() < 0.4
                rows["backup_jobs"].append(
                    (ids("backup_jobs"), company, loc, f"bj-{company}-{n}-{k}", f"job {n}",
                     "AGENT", "BACKUP_AGENTS", computer, None, "CLOUD" if cloud else "LOCAL",
                     resource if cloud else None, "Cloud repository" if cloud else "NAS01",
                     False, "", True, "IDLE", "NONE", now, now)
                )  # fmt: skip
        if rng.random() < 0.4:  # a Veeam Backup & Replication server with its jobs
            server = ids("backup_servers")
            loc = rng.choice(locs)
            rows["backup_servers"].append(
                (server, company, loc, f"bs-{company}", "BACKUP_AND_REPLICATION",
                 f"vbr-{company}", "12.3", "HEALTHY", now, now)
            )  # fmt: skip
            for n in range(rng.randint(1, 5)):
                kind = rng.choice(["VBR_BACKUP", "VBR_BACKUP", "REPLICATION", "BACKUP_COPY"])
                cloud = resource is not None and rng.random() < 0.5
                rows["backup_jobs"].append(
                    (ids("backup_jobs"), company, rng.choice(locs), f"sj-{company}-{n}",
                     f"server job {n}", kind, "BACKUP_AND_REPLICATION", None, server,
                     "CLOUD" if cloud else "LOCAL", resource if cloud else None,
                     "Cloud repository" if cloud else "Repo01", False, "", rng.random() > 0.1,
                     "IDLE", "NONE", now, now)
                )  # fmt: skip
        # The ledger: entries in the period (some on its first and last instants) and a few
        # just outside it, which must not be billed.
        entries: list[tuple[str, Decimal, datetime]] = []
        for item, scale in (("COMPUTE_HOUR", 40), ("TRANSFER_OUT_GB", 300)):
            for _ in range(rng.randint(0, 3)):
                at = start + timedelta(seconds=rng.randrange(seconds))
                entries.append((item, Decimal(rng.randint(1, scale * 10**6)) / 10**6, at))
        if rng.random() < 0.2:
            entries.append(("TRANSFER_OUT_GB", Decimal("12.5"), start - timedelta(microseconds=1)))
            entries.append(("COMPUTE_HOUR", Decimal("3"), end))
            entries.append(("COMPUTE_HOUR", Decimal("1.25"), end - timedelta(microseconds=1)))
            entries.append(("TRANSFER_OUT_GB", Decimal("0.75"), start))
        for k, (item, quantity, at) in enumerate(entries):
            rows["usage_ledger"].append(
                (ids("usage_ledger"), company, rng.choice([*locs, None]), item, quantity, at,
                 f"bench:{company}:{k}", now)
            )  # fmt: skip

    async with conn.transaction():
        for table in TABLES:
            if rows[table]:
                await conn.copy_records_to_table(table, records=rows[table], columns=COLUMNS[table])
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
            )
    await conn.execute("ANALYZE")
    return Seeded(
        customers=[c for c, _ in companies],
        rows={t: len(r) for t, r in rows.items()},
        seconds=(datetime.now(UTC) - started).total_seconds(),
    )


COLUMNS: dict[str, list[str]] = {
    "cloud_repositories": ["id", "name", "capacity_gb", "used_gb", "created_at"],
    "subscription_plans": [
        "id", "owner_id", "name", "description", "currency", "tax_type", "tax_rate_percent",
        "discount_percent", "billing_day", "due_days", "invoice_type", "created_at", "updated_at",
    ],
    "plan_rates": [
        "id", "plan_id", "item", "rate", "free_allowance", "storage_mode", "block_gb", "round_up",
    ],
    "plan_assignments": ["id", "customer_id", "plan_id", "billing_start", "assigned_at"],
    "tenant_accounts": [
        "id", "company_id", "name", "type", "enabled", "max_concurrent_tasks",
        "gateway_selection", "gateway_failover", "password_hash", "managed_by_provider",
        "created_at",
    ],
    "backup_resources": ["id", "tenant_account_id", "repository_id", "quota_gb", "used_gb"],
    "vm_replicas": [
        "id", "tenant_account_id", "name", "source_vm", "kind", "state", "restore_points",
        "created_at",
    ],
    "managed_computers": [
        "id", "company_id", "location_id", "uid", "hostname", "os_family", "os_name",
        "ip_addresses", "agent_status", "restore_point_count", "created_at", "updated_at",
    ],
    "backup_agents": [
        "id", "computer_id", "platform", "edition", "version", "policy", "status", "updated_at",
    ],
    "backup_servers": [
        "id", "company_id", "location_id", "uid", "kind", "name", "version", "status",
        "created_at", "updated_at",
    ],
    "backup_jobs": [
        "id", "company_id", "location_id", "uid", "name", "kind", "functionality",
        "computer_id", "server_id", "target_kind", "target_resource_id", "target_name",
        "assigned_by_provider", "schedule", "enabled", "run_state", "last_result", "created_at",
        "updated_at",
    ],
    "usage_ledger": [
        "id", "company_id", "location_id", "item", "quantity", "at", "source_key", "recorded_at",
    ],
}  # fmt: skip
