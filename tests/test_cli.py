"""The `tenantry` command, run through click's CliRunner on throw-away SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from tortoise.context import TortoiseContext

from app.authz.engine import portal_for
from app.authz.matrix import load_matrix
from app.cli import main, pending_model_changes
from app.db import tortoise_config
from app.graphql.schema import schema
from app.models import AuditEntry, Organization, OrgKind, User
from app.settings import Settings, get_settings
from tests.conftest import ON_POSTGRES, PG_URL

PASSWORD = "Bootstrap-Secret-2026"


@pytest.fixture
def file_db(tmp_path: Path, use_settings) -> Settings:
    return use_settings(database_url=f"sqlite://{tmp_path}/cli.sqlite3")


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def query(settings: Settings, work):
    async def go():
        async with TortoiseContext() as ctx:
            await ctx.init(config=tortoise_config(settings))
            return await work()

    return asyncio.run(go())


def test_export_schema_prints_the_sdl(tmp_path: Path):
    result = run("export-schema")
    assert result.exit_code == 0
    assert result.output == schema.as_str() + "\n"

    target = tmp_path / "schema.graphql"
    result = run("export-schema", "--output", str(target))
    assert result.exit_code == 0
    assert result.output == ""
    assert target.read_text() == schema.as_str() + "\n"


def _sqlite_schema(path: str) -> dict[str, object]:
    con = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                "AND name != 'tortoise_migrations' ORDER BY name"
            )
        ]
        shape: dict[str, object] = {}
        for table in tables:
            # By name: a column a later migration adds comes last, wherever the model has it.
            columns = sorted(tuple(r[1:]) for r in con.execute(f'PRAGMA table_info("{table}")'))
            indexes = sorted(
                (
                    bool(unique),
                    tuple(c[2] for c in con.execute(f'PRAGMA index_info("{name}")')),
                )
                for _seq, name, unique, *_ in con.execute(f'PRAGMA index_list("{table}")')
            )
            fks = sorted(tuple(r[2:]) for r in con.execute(f'PRAGMA foreign_key_list("{table}")'))
            shape[table] = (columns, indexes, fks)
        return shape
    finally:
        con.close()


def test_migrate_builds_the_schema_the_models_describe(tmp_path: Path, file_db: Settings):
    result = run("migrate")
    assert result.exit_code == 0, result.output
    assert "applied models.0001_initial" in result.output
    again = run("migrate")
    assert again.exit_code == 0
    assert "applied" not in again.output

    # The committed migrations match the models: makemigrations would write nothing.
    assert asyncio.run(pending_model_changes(get_settings())) == []
    assert run("makemigrations", "--check").exit_code == 0

    # And the migrated database has the same tables, columns, indexes and foreign keys as
    # one built straight from the models.
    generated = tmp_path / "generated.sqlite3"

    async def generate():
        async with TortoiseContext() as ctx:
            await ctx.init(config=tortoise_config(database_url=f"sqlite://{generated}"))
            await ctx.generate_schemas()

    asyncio.run(generate())
    migrated = _sqlite_schema(str(tmp_path / "cli.sqlite3"))
    assert set(migrated) >= {"organizations", "locations", "users", "audit_log"}
    assert migrated == _sqlite_schema(str(generated))


@pytest.mark.skipif(not ON_POSTGRES, reason="needs TENANTRY_TEST_DATABASE_URL (PostgreSQL)")
def test_migrate_creates_a_missing_postgres_database(use_settings):
    import asyncpg
    from tortoise.backends.base.config_generator import expand_db_url

    url = PG_URL.rsplit("/", 1)[0] + "/" + expand_db_url(PG_URL)["credentials"]["database"] + "_cli"
    settings = use_settings(database_url=url)
    creds = expand_db_url(url)["credentials"]

    async def drop():
        conn = await asyncpg.connect(
            database="postgres",
            host=creds["host"],
            port=creds["port"],
            user=creds["user"],
            password=creds.get("password"),
        )
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{creds["database"]}"')
        finally:
            await conn.close()

    asyncio.run(drop())
    try:
        result = run("migrate")
        assert result.exit_code == 0, result.output
        assert "created the database" in result.output
        assert "applied models.0001_initial" in result.output
        assert query(settings, lambda: Organization.all().count()) == 0
    finally:
        asyncio.run(drop())


def test_bootstrap_creates_provider_and_global_administrator_once(file_db: Settings):
    args = [
        "bootstrap",
        "--provider-name",
        "Example Cloud",
        "--admin-email",
        "Admin@Example.com",
        "--admin-name",
        "Ada Admin",
    ]
    result = run(*args, "--password", PASSWORD)
    assert result.exit_code == 0, result.output

    primary = next(
        r.name
        for r in load_matrix().portals[portal_for(OrgKind.PROVIDER, False)].roles
        if r.primary
    )

    async def facts():
        org = await Organization.get(kind=OrgKind.PROVIDER.value)
        users = await User.filter(organization_id=org.id).values_list("email", "role", "name")
        audit = await AuditEntry.filter(action="providerBootstrap").values_list(
            "outcome", "object_id"
        )
        return org.name, org.parent_id, users, audit, org.id

    name, parent, users, audit, org_id = query(file_db, facts)
    assert (name, parent) == ("Example Cloud", None)
    assert users == [("admin@example.com", primary, "Ada Admin")]
    assert audit == [("SUCCESS", str(org_id))]
    assert f"{primary} admin@example.com" in result.output

    second = CliRunner().invoke(main, [*args, "--password", PASSWORD])
    assert second.exit_code == 1
    assert "a service provider already exists" in second.output
    assert query(file_db, lambda: Organization.all().count()) == 1


def test_bootstrap_prompts_twice_for_the_password(file_db: Settings):
    args = [
        "bootstrap",
        "--provider-name",
        "P",
        "--admin-email",
        "a@p.example",
        "--admin-name",
        "A",
    ]
    mismatch = CliRunner().invoke(main, args, input=f"{PASSWORD}\nsomething-else-2026\n")
    assert mismatch.exit_code == 1
    assert "do not match" in mismatch.output

    ok = CliRunner().invoke(main, args, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert ok.exit_code == 0, ok.output
    assert query(file_db, lambda: User.filter(email="a@p.example").count()) == 1


def test_bootstrap_refuses_a_weak_password(file_db: Settings):
    result = CliRunner().invoke(
        main,
        [
            "bootstrap",
            "--provider-name",
            "P",
            "--admin-email",
            "a@p.example",
            "--admin-name",
            "A",
            "--password",
            "short",
        ],
    )
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert query(file_db, lambda: Organization.all().count()) == 0


def test_seed_demo_command_is_idempotent(file_db: Settings):
    first = run("seed-demo")
    assert first.exit_code == 0, first.output
    assert "seeded the demo tree" in first.output
    count = query(file_db, lambda: User.all().count())
    assert count > 0
    second = run("seed-demo")
    assert second.exit_code == 0
    assert "demo data not seeded" in second.output
    assert query(file_db, lambda: User.all().count()) == count


def test_serve_migrates_seeds_and_prints_the_graphiql_address(file_db, use_settings, monkeypatch):
    settings = use_settings(database_url=file_db.database_url, seed_demo=True)
    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr("app.logging_setup.configure_logging", lambda level="INFO": None)

    result = run("serve", "--host", "127.0.0.1", "--port", "8123")
    assert result.exit_code == 0, result.output
    assert "GraphiQL: http://127.0.0.1:8123/graphql" in result.output
    assert calls == [
        (
            ("app.main:create_app",),
            {
                "factory": True,
                "host": "127.0.0.1",
                "port": 8123,
                "reload": False,
                "log_config": None,
                "access_log": False,
                "proxy_headers": False,
                "lifespan": "on",
            },
        )
    ]
    assert query(settings, lambda: Organization.filter(kind=OrgKind.PROVIDER.value).count()) == 1
