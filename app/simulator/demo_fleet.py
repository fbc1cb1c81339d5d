"""The demo's managed fleet: a few hundred computers across the demo companies with about 90
days of sessions, written by the bulk loader (seconds, on SQLite too).

Each company gets a tenant account on the provider's demo cloud repository, and the company's
Subtenant user (the portal role whose scope is its own computers) a Subtenant account in it,
so some agents back up to the cloud under that account and the Subtenant has computers of
its own to see. Companies that have computers already are left alone: seeding twice adds
nothing.

Each demo company also gets a well-known agent key at its headquarters (`demo_agent_key`:
`tna_demo<company>_<the demo password>`), to try `POST /ingest/v1/batch` by hand; like the
demo password, it exists only in demo data, which production never seeds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.auth.tokens import digest
from app.authz.matrix import RoleScope, load_matrix
from app.models import (
    AgentKey,
    BackupResource,
    CloudRepository,
    Location,
    ManagedComputer,
    Organization,
    OrgKind,
    Subtenant,
    TenantAccount,
    TenantAccountType,
    User,
)
from app.settings import get_settings
from app.simulator.fleet import CompanySpec, FleetSpec, generate
from app.simulator.loader import LoadStats, load_fleet

# Computers per demo company (by name).
DEMO_FLEET: dict[str, int] = {
    "Acme Corp": 120,
    "Globex": 45,
    "Initech": 70,
    "Umbrella Labs": 30,
    "Hooli": 85,
    "Stark Industries": 110,
}
DEMO_DAYS = 90
DEMO_SEED = 2026
REPOSITORY = "Demo Cloud Repository"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def demo_agent_key(company_name: str) -> tuple[str, str]:
    """(prefix, key) of a demo company's well-known agent key."""
    prefix = "demo" + re.sub(r"[^a-z0-9]+", "", company_name.lower())[:12]
    return prefix, f"tna_{prefix}_{get_settings().demo_password}"


async def _agent_key(company: Organization, location_id: int) -> None:
    prefix, key = demo_agent_key(company.name)
    if not await AgentKey.exists(prefix=prefix):
        await AgentKey.create(
            company=company,
            location_id=location_id,
            name="Demo agent key",
            prefix=prefix,
            key_hash=digest(key),
        )


def _own_computer_roles() -> set[str]:
    return {
        r.name
        for portal in load_matrix().portals.values()
        for r in portal.roles
        if r.scope is RoleScope.OWN_COMPUTERS
    }


async def _cloud_account(company: Organization, repo: CloudRepository) -> tuple[str, list[str]]:
    """The company's tenant account name and its Subtenants' e-mails (created when missing)."""
    name = f"{_slug(company.name)}-cloud"
    account = await TenantAccount.get_or_none(name=name)
    if account is None:
        account = await TenantAccount.create(
            company=company,
            name=name,
            type=TenantAccountType.STANDALONE,
            password_hash="!demo",  # no login: the demo never connects a backup server
        )
    resource = await BackupResource.get_or_none(tenant_account=account, repository=repo)
    if resource is None:
        resource = await BackupResource.create(
            tenant_account=account, repository=repo, quota_gb=20_000
        )
    emails = []
    for user in await User.filter(organization=company, role__in=_own_computer_roles()):
        if not await Subtenant.exists(user=user):
            await Subtenant.create(user=user, resource=resource, quota_gb=2_000)
        emails.append(user.email)
    return name, emails


async def seed_demo_fleet(
    sizes: dict[str, int] | None = None, days: int = DEMO_DAYS, end: datetime | None = None
) -> LoadStats | None:
    """Seed the fleet of the demo companies without computers; None when there is none."""
    sizes = DEMO_FLEET if sizes is None else sizes
    companies = await Organization.filter(kind=OrgKind.COMPANY.value, name__in=list(sizes))
    busy = set(
        await ManagedComputer.filter(company_id__in=[c.id for c in companies])
        .order_by("company_id")
        .distinct()
        .values_list("company_id", flat=True)
    )
    todo = [c for c in companies if c.id not in busy and sizes[c.name] > 0]
    if not todo:
        return None
    repo = await CloudRepository.get_or_none(name=REPOSITORY)
    if repo is None:
        repo = await CloudRepository.create(name=REPOSITORY, capacity_gb=500_000)
    locations: dict[int, list[int]] = {}
    for loc in await Location.filter(company_id__in=[c.id for c in todo]).order_by(
        "-is_default", "id"
    ):
        locations.setdefault(loc.company_id, []).append(loc.id)  # type: ignore[attr-defined]
    specs = []
    for company in sorted(todo, key=lambda c: c.id):
        account, subtenants = await _cloud_account(company, repo)
        await _agent_key(company, locations[company.id][0])
        specs.append(
            CompanySpec(
                company.id,
                company.name,
                tuple(locations[company.id]),
                sizes[company.name],
                tenant_account=account,
                repository=REPOSITORY,
                subtenants=tuple(subtenants),
            )
        )
    end = end or datetime.now(UTC).replace(second=0, microsecond=0)
    spec = FleetSpec(companies=tuple(specs), end=end, seed=DEMO_SEED, history_days=days)
    return await load_fleet(generate(spec))
