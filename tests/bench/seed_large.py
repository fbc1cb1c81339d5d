"""A large tenant tree for the benchmark, seeded with asyncpg COPY rather than the ORM.

The schema comes from the models (Tortoise `generate_schemas`); the rows are written with
`copy_records_to_table`, which loads 20,000 users in well under a second. Role names come from
the matrix (`load_matrix()`): each company gets its portal's primary role (the owner) first,
then the other roles in turn; provider and reseller staff get the Reseller Portal roles.
One argon2id hash is computed once and shared by every user (argon2 is slow by design).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from tortoise.context import TortoiseContext

from app.auth.passwords import hash_password
from app.auth.tokens import digest, new_session_token
from app.authz.matrix import Portal, Role, load_matrix
from app.db import tortoise_config
from app.settings import DEMO_PASSWORD, Settings

ADMIN_DSN = "postgres://postgres@127.0.0.1:5432/postgres"
SERVER_DSN = "postgres://postgres@127.0.0.1:5432"


@dataclass(frozen=True)
class TreeSize:
    resellers: int = 20
    companies: int = 2_000
    locations_per_company: int = 5
    users: int = 20_000

    @property
    def locations(self) -> int:
        return self.companies * self.locations_per_company


FULL = TreeSize()
QUICK = TreeSize(resellers=5, companies=200, locations_per_company=5, users=2_000)


@dataclass(frozen=True)
class Seeded:
    database_url: str
    provider_token: str  # the provider's primary Reseller Portal role (Global Administrator)
    reseller_token: str  # the same role in the first reseller
    reseller_id: int
    reseller_companies: int
    counts: dict[str, int]
    schema_seconds: float
    copy_seconds: float

    @property
    def seconds(self) -> float:
        return self.schema_seconds + self.copy_seconds


def database_url(name: str) -> str:
    return f"{SERVER_DSN}/{name}"


async def recreate_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def apply_schema(url: str) -> None:
    settings = Settings(database_url=url, seed_demo=False)
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(settings))
        await ctx.generate_schemas(safe=False)
        await ctx.close_connections()


def _roles(portal: Portal) -> tuple[Role, list[Role]]:
    roles = load_matrix().portals[portal].roles
    primary = next(r for r in roles if r.primary)
    return primary, [r for r in roles if not r.primary]


def company_parent(index: int, provider_id: int, reseller_ids: list[int]) -> int:
    """About a third of the companies sit directly under the provider, interleaved with the
    others so that any page of companies mixes both kinds."""
    if index % 3 == 0:
        return provider_id
    return reseller_ids[index % len(reseller_ids)]


async def seed(url: str, size: TreeSize) -> Seeded:
    started = time.perf_counter()
    await apply_schema(url)
    schema_seconds = time.perf_counter() - started

    started = time.perf_counter()
    now = datetime.now(UTC)
    password_hash = hash_password(DEMO_PASSWORD)  # once, shared by every user
    staff_primary, staff_others = _roles(Portal.RESELLER)
    client_primary, client_others = _roles(Portal.CLIENT)

    orgs: list[tuple] = []
    provider_id = 1
    orgs.append(
        (
            provider_id,
            "PROVIDER",
            "Bench Provider",
            None,
            True,
            "ops@provider.bench",
            now,
            now,
            False,
        )
    )
    reseller_ids = list(range(2, 2 + size.resellers))
    for n, rid in enumerate(reseller_ids, 1):
        orgs.append(
            (
                rid,
                "RESELLER",
                f"Reseller {n:03d}",
                provider_id,
                True,
                f"r{n}@bench",
                now,
                now,
                False,
            )
        )
    first_company = 2 + size.resellers
    company_ids = list(range(first_company, first_company + size.companies))
    company_parents: dict[int, int] = {}
    for n, cid in enumerate(company_ids):
        parent = company_parent(n, provider_id, reseller_ids)
        company_parents[cid] = parent
        orgs.append(
            (
                cid,
                "COMPANY",
                f"Company {n + 1:05d}",
                parent,
                True,
                f"c{n + 1}@bench",
                now,
                now,
                False,
            )
        )

    locations: list[tuple] = []
    loc_id = itertools.count(1)
    for cid in company_ids:
        for k in range(size.locations_per_company):
            locations.append((next(loc_id), cid, f"Site {k + 1}", k == 0, now))

    users: list[tuple] = []
    user_id = itertools.count(1)

    def add_user(org_id: int, role: Role, tag: str) -> int:
        uid = next(user_id)
        users.append(
            (
                uid,
                f"{tag}.u{uid}@bench.example",
                f"User {uid}",
                password_hash,
                role.name,
                org_id,
                True,
                False,
                None,
                None,
                now,
                now,
            )
        )
        return uid

    staff_orgs = [provider_id, *reseller_ids]
    ga_user: dict[int, int] = {}
    for org_id in staff_orgs:
        ga_user[org_id] = add_user(org_id, staff_primary, f"org{org_id}.admin")
        for role in staff_others:
            add_user(org_id, role, f"org{org_id}.staff")
    remaining = max(size.users - len(users), size.companies)
    per_company, extra = divmod(remaining, size.companies)
    for n, cid in enumerate(company_ids):
        count = per_company + (1 if n < extra else 0)
        add_user(cid, client_primary, f"c{cid}.owner")
        others = itertools.cycle(client_others)
        for _ in range(count - 1):
            add_user(cid, next(others), f"c{cid}")

    provider_token = new_session_token()
    reseller_token = new_session_token()
    expires = now + timedelta(days=2)
    sessions = [
        (1, digest(provider_token), ga_user[provider_id], now, expires, None, "127.0.0.1"),
        (2, digest(reseller_token), ga_user[reseller_ids[0]], now, expires, None, "127.0.0.1"),
    ]

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "organizations",
                records=orgs,
                columns=[
                    "id",
                    "kind",
                    "name",
                    "parent_id",
                    "enabled",
                    "email",
                    "created_at",
                    "updated_at",
                    "baas",
                ],
            )
            await conn.copy_records_to_table(
                "locations",
                records=locations,
                columns=["id", "company_id", "name", "is_default", "created_at"],
            )
            await conn.copy_records_to_table(
                "users",
                records=users,
                columns=[
                    "id",
                    "email",
                    "name",
                    "password_hash",
                    "role",
                    "organization_id",
                    "enabled",
                    "scope_restricted",
                    "password_changed_at",
                    "last_login_at",
                    "created_at",
                    "updated_at",
                ],
            )
            await conn.copy_records_to_table(
                "session_tokens",
                records=sessions,
                columns=[
                    "id",
                    "token_hash",
                    "user_id",
                    "created_at",
                    "expires_at",
                    "revoked_at",
                    "client_address",
                ],
            )
            # Rows were written with explicit ids: move the sequences past them.
            for table in ("organizations", "locations", "users", "session_tokens"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    copy_seconds = time.perf_counter() - started

    return Seeded(
        database_url=url,
        provider_token=provider_token,
        reseller_token=reseller_token,
        reseller_id=reseller_ids[0],
        reseller_companies=sum(1 for p in company_parents.values() if p == reseller_ids[0]),
        counts={
            "resellers": len(reseller_ids),
            "companies": len(company_ids),
            "locations": len(locations),
            "users": len(users),
        },
        schema_seconds=schema_seconds,
        copy_seconds=copy_seconds,
    )
