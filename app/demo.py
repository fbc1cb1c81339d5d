"""The demo tree, seeded on an empty database so that every role can be tried at once.

    Tenantry Cloud (provider, tenantry.demo)   one user per Service Provider role, plus an
    │                                          Operator limited to Acme Corp
    ├── Acme Corp, Globex                      companies of the provider
    ├── Northwind Backup (reseller)            one user per Service Provider role
    │   └── Initech, Umbrella Labs
    └── Blue Harbor IT (reseller)              one user per Service Provider role
        └── Hooli, Stark Industries

Every company has a default location "Headquarters" and a second one "Branch office", and one
user per role of the company portal (client roles, or department roles in the enterprise
edition); location-scoped roles are limited to the branch office. E-mails are readable and
stable: `owner@acme.demo`, `operator@northwind.demo`... All users share the demo password.

The companies also get a managed fleet (`app.simulator.demo_fleet`): a few hundred computers
with agents, backup servers, jobs and about 90 days of sessions and restore points, some
backing up to a demo cloud repository under the company's Subtenant.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from app.auth.passwords import hash_password
from app.authz.engine import portal_for
from app.authz.matrix import Role, RoleScope, load_matrix
from app.db import connection_name
from app.models import Location, Organization, OrgKind, User
from app.settings import get_settings
from app.simulator.demo_billing import seed_demo_billing
from app.simulator.demo_failover import seed_demo_failover
from app.simulator.demo_fleet import seed_demo_fleet

PROVIDER = ("Tenantry Cloud", "tenantry.demo")
RESELLERS = (("Northwind Backup", "northwind.demo"), ("Blue Harbor IT", "blueharbor.demo"))
# (name, e-mail domain, parent name)
COMPANIES = (
    ("Acme Corp", "acme.demo", "Tenantry Cloud"),
    ("Globex", "globex.demo", "Tenantry Cloud"),
    ("Initech", "initech.demo", "Northwind Backup"),
    ("Umbrella Labs", "umbrella.demo", "Northwind Backup"),
    ("Hooli", "hooli.demo", "Blue Harbor IT"),
    ("Stark Industries", "stark.demo", "Blue Harbor IT"),
)
DEFAULT_LOCATION = "Headquarters"
SECOND_LOCATION = "Branch office"
# The provider's extra Operator, limited to this one company.
SCOPED_OPERATOR_COMPANY = "Acme Corp"

# Demo data may name roles: shorter mailbox names for the portal's wordy role names.
_ROLE_PREFIXES = ("Service Provider ", "Company ", "Department ")


@dataclass(frozen=True)
class DemoUser:
    organization: str
    org_kind: OrgKind
    portal_label: str
    role: str
    email: str
    name: str
    companies: tuple[str, ...] | None = None  # limited to these companies
    locations: tuple[str, ...] | None = None  # limited to these locations (of its company)


def mailbox(role: str) -> str:
    for prefix in _ROLE_PREFIXES:
        if role.startswith(prefix):
            role = role.removeprefix(prefix)
            break
    return re.sub(r"[^a-z0-9]+", "-", role.lower()).strip("-")


def _roles(kind: OrgKind, enterprise: bool) -> tuple[str, tuple[Role, ...]]:
    matrix = load_matrix().portals[portal_for(kind, enterprise)]
    return matrix.label, matrix.roles


def demo_users(enterprise: bool | None = None) -> list[DemoUser]:
    """Every demo user, in seeding order (no database needed: the README lists these)."""
    if enterprise is None:
        enterprise = get_settings().enterprise
    users: list[DemoUser] = []
    staff_label, staff_roles = _roles(OrgKind.RESELLER, enterprise)
    for org, domain, kind in (
        (PROVIDER[0], PROVIDER[1], OrgKind.PROVIDER),
        *((name, domain, OrgKind.RESELLER) for name, domain in RESELLERS),
    ):
        for role in staff_roles:
            users.append(
                DemoUser(
                    org,
                    kind,
                    staff_label,
                    role.name,
                    f"{mailbox(role.name)}@{domain}",
                    f"{org} {role.name}",
                )
            )
        if kind is OrgKind.PROVIDER:
            operator = next(r for r in staff_roles if r.scope is RoleScope.COMPANIES)
            slug = mailbox(SCOPED_OPERATOR_COMPANY)
            users.append(
                DemoUser(
                    org,
                    kind,
                    staff_label,
                    operator.name,
                    f"{mailbox(operator.name)}-{slug}@{domain}",
                    f"{org} {operator.name} ({SCOPED_OPERATOR_COMPANY} only)",
                    companies=(SCOPED_OPERATOR_COMPANY,),
                )
            )
    client_label, client_roles = _roles(OrgKind.COMPANY, enterprise)
    for company, domain, _parent in COMPANIES:
        for role in client_roles:
            limited = (SECOND_LOCATION,) if role.scope is RoleScope.LOCATIONS else None
            users.append(
                DemoUser(
                    company,
                    OrgKind.COMPANY,
                    client_label,
                    role.name,
                    f"{mailbox(role.name)}@{domain}",
                    f"{company} {role.name}",
                    locations=limited,
                )
            )
    return users


def demo_user_table(enterprise: bool | None = None) -> list[tuple[str, str, str]]:
    """(portal label, role, e-mail) for every demo user, for documentation."""
    return [(u.portal_label, u.role, u.email) for u in demo_users(enterprise)]


async def demo_present() -> bool:
    return await Organization.filter(kind=OrgKind.PROVIDER.value, name=PROVIDER[0]).exists()


async def seed_demo() -> bool:
    """Seed the demo tree on a database without a provider. False (and nothing done) when a
    provider already exists: the demo tree, or a real installation's."""
    if await Organization.filter(kind=OrgKind.PROVIDER.value).exists():
        return False
    settings = get_settings()
    # argon2id is slow by design: one hash, shared by every demo user.
    password_hash = await asyncio.to_thread(hash_password, settings.demo_password)
    plan = demo_users(settings.enterprise)
    async with in_transaction(connection_name()):
        orgs: dict[str, Organization] = {}
        locations: dict[tuple[str, str], Location] = {}
        orgs[PROVIDER[0]] = await Organization.create(
            kind=OrgKind.PROVIDER, name=PROVIDER[0], email=f"contact@{PROVIDER[1]}"
        )
        for name, domain in RESELLERS:
            orgs[name] = await Organization.create(
                kind=OrgKind.RESELLER,
                name=name,
                parent=orgs[PROVIDER[0]],
                email=f"contact@{domain}",
            )
        for name, domain, parent in COMPANIES:
            company = await Organization.create(
                kind=OrgKind.COMPANY, name=name, parent=orgs[parent], email=f"contact@{domain}"
            )
            orgs[name] = company
            for location, default in ((DEFAULT_LOCATION, True), (SECOND_LOCATION, False)):
                locations[name, location] = await Location.create(
                    company=company, name=location, is_default=default
                )
        for spec in plan:
            user = await User.create(
                email=spec.email,
                name=spec.name,
                role=spec.role,
                organization=orgs[spec.organization],
                password_hash=password_hash,
                scope_restricted=spec.companies is not None or spec.locations is not None,
            )
            if spec.companies:
                await user.scope_companies.add(*[orgs[c] for c in spec.companies])
            if spec.locations:
                await user.scope_locations.add(
                    *[locations[spec.organization, loc] for loc in spec.locations]
                )
    await seed_demo_fleet()
    await seed_demo_failover()
    await seed_demo_billing()
    return True
