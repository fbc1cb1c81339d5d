"""The `tenantry` command: serve, migrate, bootstrap, seed-demo, export-schema, makemigrations.

Each command is a small function over the settings in force (`get_settings()`); commands that
touch the database open their own Tortoise context and close it, even on errors (an open
SQLite connection keeps the process from exiting). Further process kinds (`worker`,
`scheduler`) are added to the `main` group the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from tortoise.context import TortoiseContext

from app.db import tortoise_config
from app.settings import Settings, SettingsError, get_settings

log = logging.getLogger("tenantry.cli")

T = TypeVar("T")


def _settings() -> Settings:
    try:
        settings = get_settings()
        settings.validate()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    return settings


async def _with_orm(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(settings))
        return await work()


# --- migrations -------------------------------------------------------------------------


async def ensure_database(database_url: str) -> bool:
    """Create the PostgreSQL database named in the URL when it does not exist yet.
    True when it was created. SQLite creates its file (and app.db its folder) by itself."""
    if not database_url.startswith(("postgres://", "postgresql://", "asyncpg://", "psycopg://")):
        return False
    import asyncpg
    from tortoise.backends.base.config_generator import expand_db_url

    creds = expand_db_url(database_url)["credentials"]
    name = creds["database"]
    params = {k: creds.get(k) for k in ("host", "port", "user", "password")}
    try:
        conn = await asyncpg.connect(database=name, **params)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    conn = await asyncpg.connect(database="postgres", **params)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await conn.execute('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
    finally:
        await conn.close()
    return True


async def apply_migrations(settings: Settings, echo: Callable[[str], Any] | None = None) -> None:
    from tortoise.migrations.api import migrate

    if await ensure_database(settings.database_url) and echo:
        echo("created the database")

    def progress(event: str, app_label: str, name: str) -> None:
        if echo and event == "apply_done":
            echo(f"applied {app_label}.{name}")

    async with TortoiseContext():
        await migrate(config=tortoise_config(settings), progress=progress)


async def pending_model_changes(settings: Settings) -> list[str]:
    """Names of the migrations `makemigrations` would write now (empty: models == migrations)."""
    from tortoise.migrations.autodetector import MigrationAutodetector

    config = tortoise_config(settings)
    async with TortoiseContext() as ctx:
        await ctx.init(config=config, init_connections=False)
        assert ctx.apps is not None
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    return [f"{w.app_label}.{w.name}" for w in writers]


# --- commands ---------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tenantry: the open control plane for backup service providers."""


@main.command()
def migrate() -> None:
    """Apply the database migrations (creates a missing PostgreSQL database)."""
    settings = _settings()
    asyncio.run(apply_migrations(settings, click.echo))
    click.echo("database is up to date")


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 when the models differ from the migrations.")
def makemigrations(check: bool) -> None:
    """Write a migration for model changes (development), or --check that there are none."""
    settings = _settings()
    if check:
        pending = asyncio.run(pending_model_changes(settings))
        if pending:
            click.echo(f"models changed without a migration: {', '.join(pending)}", err=True)
            click.echo("run: .venv/bin/tortoise -c app.db.TORTOISE_ORM makemigrations", err=True)
            sys.exit(1)
        click.echo("no model changes")
        return
    import subprocess

    cmd = [sys.executable, "-m", "tortoise", "-c", "app.db.TORTOISE_ORM", "makemigrations"]
    sys.exit(subprocess.call(cmd))


@main.command()
@click.option("--provider-name", required=True, help="The service provider's name.")
@click.option("--admin-email", required=True, help="E-mail of its first administrator.")
@click.option("--admin-name", required=True, help="Full name of its first administrator.")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The administrator's password (prompted twice when not given).",
)
def bootstrap(provider_name: str, admin_email: str, admin_name: str, password: str) -> None:
    """Create the service provider and its Global Administrator (once, on a new installation)."""
    from app.bootstrap import bootstrap_provider
    from app.errors import TenantryError

    settings = _settings()
    asyncio.run(apply_migrations(settings))
    try:
        org, admin = asyncio.run(
            _with_orm(
                settings,
                lambda: bootstrap_provider(provider_name, admin_email, admin_name, password),
            )
        )
    except TenantryError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"created provider {org.name!r} and {admin.role} {admin.email}")


async def _seed(settings: Settings) -> bool:
    from app.demo import seed_demo

    return await _with_orm(settings, seed_demo)


@main.command("seed-demo")
def seed_demo_command() -> None:
    """Seed the demo tree on a database without a provider (does nothing otherwise)."""
    settings = _settings()
    if settings.is_production:
        raise click.ClickException("production never seeds demo data")
    asyncio.run(apply_migrations(settings))
    if asyncio.run(_seed(settings)):
        click.echo("seeded the demo tree (see the README for the demo users)")
    else:
        click.echo("a provider exists already: demo data not seeded")


@main.command("rebuild-rollups")
@click.option("--company", "companies", type=int, multiple=True, help="Only this company id.")
def rebuild_rollups_command(companies: tuple[int, ...]) -> None:
    """Recompute the monitoring rollups, protected-data columns and jobs' last results from
    the sessions and restore points (a repair tool; all companies unless --company)."""
    from app.services.rollups import rebuild_protection, rebuild_rollups

    settings = _settings()
    ids = list(companies) or None

    async def work() -> tuple[int, tuple[int, int]]:
        return await rebuild_rollups(ids), await rebuild_protection(ids)

    rows, (computers, jobs) = asyncio.run(_with_orm(settings, work))
    click.echo(f"rebuilt {rows} rollup rows; refreshed {computers} computers and {jobs} jobs")


@main.command("export-schema")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export_schema(output: Path | None) -> None:
    """Print the GraphQL schema (SDL), or write it to --output."""
    from app.graphql.schema import schema

    text = schema.as_str() + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: PORT or 8000).")
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
@click.option("--log-level", default="INFO", show_default=True)
def serve(host: str | None, port: int | None, reload: bool, log_level: str) -> None:
    """Migrate, seed the demo tree when enabled and the database is empty, then serve."""
    import uvicorn

    from app.logging_setup import configure_logging

    configure_logging(log_level.upper())
    settings = _settings()
    host = host or settings.host
    port = port or settings.port
    asyncio.run(apply_migrations(settings, log.info))
    if settings.seed_demo and asyncio.run(_seed(settings)):
        log.info("seeded the demo tree (TENANTRY_SEED_DEMO=0 turns this off)")
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    click.echo(f"GraphiQL: http://{shown}:{port}/graphql")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        lifespan="on",
    )


@main.command()
@click.option("--log-level", default="INFO", show_default=True)
def scheduler(log_level: str) -> None:
    """Run the periodic schedules (several may run: each tick fires once, in one of them)."""
    from app.logging_setup import configure_logging
    from workers.scheduler import serve_scheduler

    configure_logging(log_level.upper())
    settings = _settings()
    try:
        asyncio.run(serve_scheduler(settings))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--processes", "-p", type=int, default=1, show_default=True)
@click.option("--threads", "-t", type=int, default=4, show_default=True)
@click.option("--queues", "-Q", multiple=True, help="Only these queues (default: all).")
@click.option(
    "--shutdown-timeout",
    type=int,
    default=600,
    show_default=True,
    help="Seconds running jobs get to finish on SIGTERM.",
)
def worker(processes: int, threads: int, queues: tuple[str, ...], shutdown_timeout: int) -> None:
    """Run Dramatiq worker processes against Redis (REDIS_URL) and the database."""
    settings = _settings()
    if not settings.redis_url:
        click.echo(
            "tenantry worker needs REDIS_URL: without it (the embedded mode) `tenantry serve` "
            "runs the jobs in its own process and no separate worker is needed",
            err=True,
        )
        sys.exit(2)
    # An idle consumer checks for due delayed messages every `dramatiq_worker_timeout` ms (1,000
    # by default): a parked failover wait would wake up to a second late at every VM. 100 ms
    # costs about ten Redis polls a second per idle consumer. Read when dramatiq.worker is first
    # imported, so it is set before the import below; the environment can still override it.
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    argv = ["workers.actors", "--processes", str(processes), "--threads", str(threads)]
    argv += ["--worker-shutdown-timeout", str(shutdown_timeout * 1000)]
    if queues:
        argv += ["--queues", *queues]
    sys.exit(dramatiq_main(make_argument_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
