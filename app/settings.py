"""Environment-driven settings. The defaults give the embedded mode (SQLite file, in-process broker)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEMO_PASSWORD = "Tenantry-demo-2026!"
DEFAULT_SECRET = "tenantry-embedded-insecure-secret"


class SettingsError(RuntimeError):
    """Raised when the environment describes a configuration that must not start."""


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = "sqlite://data/tenantry.sqlite3"
    redis_url: str | None = None
    edition: str = "service_provider"  # or "enterprise"
    secret_key: str = DEFAULT_SECRET
    host: str = "127.0.0.1"
    port: int = 8000
    session_ttl_seconds: int = 12 * 3600
    api_key_max_days: int = 365
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 20
    login_window_seconds: int = 900
    max_body_bytes: int = 1_000_000
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 5_000
    page_size_default: int = 50
    page_size_max: int = 500
    # argon2id cost; tests may lower it through settings, production never does.
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65_536
    argon2_parallelism: int = 4
    seed_demo: bool = True
    demo_password: str = DEMO_PASSWORD
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)
    # Cloud Connect: how far quotas may oversubscribe a repository's capacity without an
    # explicit override; remote session lifetime; certificate expiry warning window.
    cloud_oversubscription_ratio: float = 1.0
    remote_session_ttl_seconds: int = 3600
    certificate_warning_days: int = 30
    # Benchmarks only: serve with field guards bypassed to measure what authorization costs.
    bench_bypass_authorization: bool = False
    # Background jobs (workers/): job heartbeats and the recovery windows of app.services.jobs,
    # the retry backoff of transient failures, and the Redis broker's own redelivery of a
    # killed worker's messages (heartbeat timeout; maintenance chance per million commands).
    job_heartbeat_ms: int = 5_000
    job_stale_after_ms: int = 30_000
    job_unclaimed_after_ms: int = 60_000
    job_retry_base_ms: int = 2_000
    job_retry_max_ms: int = 300_000
    redis_namespace: str = "tenantry"
    redis_heartbeat_timeout_ms: int = 15_000
    redis_maintenance_chance: int = 10_000
    # The in-process worker of the API (embedded mode, no REDIS_URL) and its threads. Off in
    # Settings built by code (tests drive jobs themselves); load_settings turns it on unless
    # TENANTRY_EMBEDDED_WORKER=0.
    embedded_worker: bool = False
    embedded_worker_threads: int = 2
    # Scheduler (workers/schedules.py): cron expressions, a 6th field is seconds; "" turns a
    # schedule off. Extra schedules "name|cron|job.kind" (TENANTRY_SCHEDULES, ';'-separated).
    schedule_recovery: str = "* * * * * */15"
    schedule_purge: str = "0 * * * *"
    # The daily license count (licensing.collect): off in Settings built by code (tests),
    # "20 0 * * *" from load_settings unless TENANTRY_SCHEDULE_LICENSING="".
    schedule_licensing: str = ""
    schedules_extra: tuple[str, ...] = field(default_factory=tuple)
    # Leader lease of the scheduler group (0: no lease, the unique tick row alone decides).
    scheduler_lease_seconds: int = 10
    # Fired-tick rows kept per schedule (the latest one is always kept).
    scheduler_tick_retention_seconds: int = 86_400
    # The scheduler inside `tenantry serve`: None = on when no REDIS_URL (embedded mode).
    embedded_scheduler: bool | None = None
    # Protected data: a computer whose newest restore point is older than this breaches its RPO.
    rpo_hours: int = 24
    # Managed agents (app.integrations): the driver, and the simulator's restore duration
    # (seconds in all) and the paths (fnmatch) its restores fail on.
    agent_driver: str = "simulator"
    agent_sim_restore_seconds: float = 0.0
    agent_sim_fail_pattern: str = "*.locked"
    # The sweep that starts scheduled discovery rules when due: off in Settings built by code
    # (tests), every minute from load_settings unless TENANTRY_SCHEDULE_DISCOVERY="".
    schedule_discovery: str = ""
    # Billing (workers/schedules.py): the daily run generating the invoices that are due
    # (billing.run) and the daily overdue marking (billing.overdue); off in Settings built by
    # code (tests), "0 1 * * *" and "0 2 * * *" from load_settings unless
    # TENANTRY_SCHEDULE_BILLING="" / TENANTRY_SCHEDULE_OVERDUE="".
    schedule_billing: str = ""
    schedule_overdue: str = ""
    # Hypervisor (app.integrations.hypervisor) for failover plans: the driver, and the
    # simulator's boot time, failure rate (by seed) and the VM names (fnmatch) it fails.
    hypervisor_driver: str = "simulator"
    hv_sim_boot_seconds: float = 0.05
    hv_sim_fail_rate: float = 0.0
    hv_sim_seed: int = 0
    hv_sim_fail_pattern: str = "*-fail"
    # Notifications (app.services.outbox, outbox_email, outbox_webhook): SMTP; without a host
    # (the embedded defaults) e-mails are written as .eml files under data_dir()/outbox/.
    # Webhooks are signed with the secret of their endpoint, or this one ("" derives it from
    # secret_key). The delivery sweep (outbox.deliver): off in Settings built by code, every
    # 15 s from load_settings unless TENANTRY_SCHEDULE_OUTBOX="".
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "Tenantry <tenantry@localhost>"
    smtp_starttls: bool = True
    webhook_secret: str = ""
    # Webhooks to loopback, private, link-local or reserved addresses (inside the provider's
    # own network): allowed in development and tests, refused in production unless
    # TENANTRY_WEBHOOK_ALLOW_PRIVATE=1.
    webhook_allow_private: bool = True
    schedule_outbox: str = ""
    # Alarms (app.alarms.evaluation): the alarms.sweep job, incremental every tick and full
    # every `alarms_full_sweep_minutes`; off in Settings built by code (tests), every minute
    # from load_settings unless TENANTRY_SCHEDULE_ALARMS="". The alarms.evaluate job after an
    # ingested batch, a failed login or an ended failover session: off in code-built Settings,
    # on from load_settings unless TENANTRY_ALARMS_ON_EVENTS=0.
    schedule_alarms: str = ""
    alarms_full_sweep_minutes: int = 60
    alarms_evaluate_on_events: bool = False
    # The daily alarm digests (alarms.digest, each organization at its own hour): off in
    # Settings built by code, hourly from load_settings unless TENANTRY_SCHEDULE_ALARM_DIGEST="".
    schedule_alarm_digest: str = ""
    # Cloud gateway reachability probes (app.services.gateway_probes, the gateways.probe job):
    # a TCP connect to each enabled gateway's address and port, at most `concurrency` at once,
    # each given `timeout` seconds (name resolution included). Off in Settings built by code,
    # every minute from load_settings unless TENANTRY_SCHEDULE_GATEWAY_PROBES="".
    schedule_gateway_probes: str = ""
    gateway_probe_timeout_seconds: float = 5.0
    gateway_probe_concurrency: int = 20

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def enterprise(self) -> bool:
        return self.edition == "enterprise"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def validate(self) -> None:
        if self.edition not in {"service_provider", "enterprise"}:
            raise SettingsError(
                f"TENANTRY_EDITION must be 'service_provider' or 'enterprise', not {self.edition!r}"
            )
        if self.is_production:
            if self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32:
                raise SettingsError("production needs TENANTRY_SECRET_KEY of 32 characters or more")
            if self.seed_demo:
                raise SettingsError("production never seeds demo data (TENANTRY_SEED_DEMO=0)")
            if self.bench_bypass_authorization:
                raise SettingsError(
                    "TENANTRY_BENCH_BYPASS_AUTHZ is for benchmarks, never production"
                )
            if self.argon2_time_cost < 2 or self.argon2_memory_cost < 19_456:
                raise SettingsError("production keeps argon2id at the recommended cost")


def load_settings() -> Settings:
    env = os.environ.get("TENANTRY_ENV", "development")
    production = env == "production"
    settings = Settings(
        env=env,
        database_url=os.environ.get("DATABASE_URL", Settings.database_url),
        redis_url=os.environ.get("REDIS_URL") or None,
        edition=os.environ.get("TENANTRY_EDITION", Settings.edition),
        secret_key=os.environ.get("TENANTRY_SECRET_KEY", DEFAULT_SECRET),
        host=os.environ.get("HOST", Settings.host),
        port=_int("PORT", Settings.port),
        session_ttl_seconds=_int("TENANTRY_SESSION_TTL", Settings.session_ttl_seconds),
        login_max_failures_per_account=_int(
            "TENANTRY_LOGIN_MAX_FAILURES", Settings.login_max_failures_per_account
        ),
        login_max_failures_per_address=_int(
            "TENANTRY_LOGIN_MAX_FAILURES_PER_ADDRESS", Settings.login_max_failures_per_address
        ),
        login_window_seconds=_int("TENANTRY_LOGIN_WINDOW", Settings.login_window_seconds),
        max_body_bytes=_int("TENANTRY_MAX_BODY_BYTES", Settings.max_body_bytes),
        argon2_time_cost=_int("TENANTRY_ARGON2_TIME_COST", Settings.argon2_time_cost),
        argon2_memory_cost=_int("TENANTRY_ARGON2_MEMORY_COST", Settings.argon2_memory_cost),
        argon2_parallelism=_int("TENANTRY_ARGON2_PARALLELISM", Settings.argon2_parallelism),
        seed_demo=_bool("TENANTRY_SEED_DEMO", not production),
        demo_password=os.environ.get("TENANTRY_DEMO_PASSWORD", DEMO_PASSWORD),
        bench_bypass_authorization=_bool("TENANTRY_BENCH_BYPASS_AUTHZ", False),
        cloud_oversubscription_ratio=float(
            os.environ.get("TENANTRY_OVERSUBSCRIPTION_RATIO", Settings.cloud_oversubscription_ratio)
        ),
        remote_session_ttl_seconds=_int(
            "TENANTRY_REMOTE_SESSION_TTL", Settings.remote_session_ttl_seconds
        ),
        certificate_warning_days=_int(
            "TENANTRY_CERTIFICATE_WARNING_DAYS", Settings.certificate_warning_days
        ),
        job_heartbeat_ms=_int("TENANTRY_JOB_HEARTBEAT_MS", Settings.job_heartbeat_ms),
        job_stale_after_ms=_int("TENANTRY_JOB_STALE_AFTER_MS", Settings.job_stale_after_ms),
        job_unclaimed_after_ms=_int(
            "TENANTRY_JOB_UNCLAIMED_AFTER_MS", Settings.job_unclaimed_after_ms
        ),
        job_retry_base_ms=_int("TENANTRY_JOB_RETRY_BASE_MS", Settings.job_retry_base_ms),
        job_retry_max_ms=_int("TENANTRY_JOB_RETRY_MAX_MS", Settings.job_retry_max_ms),
        redis_namespace=os.environ.get("TENANTRY_REDIS_NAMESPACE", Settings.redis_namespace),
        redis_heartbeat_timeout_ms=_int(
            "TENANTRY_REDIS_HEARTBEAT_TIMEOUT_MS", Settings.redis_heartbeat_timeout_ms
        ),
        redis_maintenance_chance=_int(
            "TENANTRY_REDIS_MAINTENANCE_CHANCE", Settings.redis_maintenance_chance
        ),
        embedded_worker=_bool("TENANTRY_EMBEDDED_WORKER", True),
        embedded_worker_threads=_int(
            "TENANTRY_EMBEDDED_WORKER_THREADS", Settings.embedded_worker_threads
        ),
        trusted_proxies=tuple(
            p.strip()
            for p in os.environ.get("TENANTRY_TRUSTED_PROXIES", "").split(",")
            if p.strip()
        ),
        schedule_recovery=os.environ.get("TENANTRY_SCHEDULE_RECOVERY", Settings.schedule_recovery),
        schedule_purge=os.environ.get("TENANTRY_SCHEDULE_PURGE", Settings.schedule_purge),
        schedule_licensing=os.environ.get("TENANTRY_SCHEDULE_LICENSING", "20 0 * * *"),
        schedules_extra=tuple(
            s.strip() for s in os.environ.get("TENANTRY_SCHEDULES", "").split(";") if s.strip()
        ),
        scheduler_lease_seconds=_int("TENANTRY_SCHEDULER_LEASE", Settings.scheduler_lease_seconds),
        scheduler_tick_retention_seconds=_int(
            "TENANTRY_SCHEDULER_TICK_RETENTION", Settings.scheduler_tick_retention_seconds
        ),
        embedded_scheduler=(
            _bool("TENANTRY_EMBEDDED_SCHEDULER", True)
            if os.environ.get("TENANTRY_EMBEDDED_SCHEDULER")
            else None
        ),
        rpo_hours=_int("TENANTRY_RPO_HOURS", Settings.rpo_hours),
        agent_driver=os.environ.get("TENANTRY_AGENT_DRIVER", Settings.agent_driver),
        agent_sim_restore_seconds=float(
            os.environ.get("TENANTRY_AGENT_SIM_RESTORE_SECONDS", Settings.agent_sim_restore_seconds)
        ),
        agent_sim_fail_pattern=os.environ.get(
            "TENANTRY_AGENT_SIM_FAIL_PATTERN", Settings.agent_sim_fail_pattern
        ),
        schedule_discovery=os.environ.get("TENANTRY_SCHEDULE_DISCOVERY", "* * * * *"),
        schedule_billing=os.environ.get("TENANTRY_SCHEDULE_BILLING", "0 1 * * *"),
        schedule_overdue=os.environ.get("TENANTRY_SCHEDULE_OVERDUE", "0 2 * * *"),
        hypervisor_driver=os.environ.get("TENANTRY_HYPERVISOR_DRIVER", Settings.hypervisor_driver),
        hv_sim_boot_seconds=float(
            os.environ.get("TENANTRY_HV_SIM_BOOT_SECONDS", Settings.hv_sim_boot_seconds)
        ),
        hv_sim_fail_rate=float(
            os.environ.get("TENANTRY_HV_SIM_FAIL_RATE", Settings.hv_sim_fail_rate)
        ),
        hv_sim_seed=_int("TENANTRY_HV_SIM_SEED", Settings.hv_sim_seed),
        hv_sim_fail_pattern=os.environ.get(
            "TENANTRY_HV_SIM_FAIL_PATTERN", Settings.hv_sim_fail_pattern
        ),
        smtp_host=os.environ.get("TENANTRY_SMTP_HOST", Settings.smtp_host),
        smtp_port=_int("TENANTRY_SMTP_PORT", Settings.smtp_port),
        smtp_user=os.environ.get("TENANTRY_SMTP_USER", Settings.smtp_user),
        smtp_password=os.environ.get("TENANTRY_SMTP_PASSWORD", Settings.smtp_password),
        smtp_from=os.environ.get("TENANTRY_SMTP_FROM", Settings.smtp_from),
        smtp_starttls=_bool("TENANTRY_SMTP_STARTTLS", Settings.smtp_starttls),
        webhook_secret=os.environ.get("TENANTRY_WEBHOOK_SECRET", Settings.webhook_secret),
        webhook_allow_private=os.environ.get(
            "TENANTRY_WEBHOOK_ALLOW_PRIVATE", "0" if production else "1"
        )
        == "1",
        schedule_outbox=os.environ.get("TENANTRY_SCHEDULE_OUTBOX", "* * * * * */15"),
        schedule_alarms=os.environ.get("TENANTRY_SCHEDULE_ALARMS", "* * * * *"),
        alarms_full_sweep_minutes=_int(
            "TENANTRY_ALARMS_FULL_SWEEP_MINUTES", Settings.alarms_full_sweep_minutes
        ),
        alarms_evaluate_on_events=_bool("TENANTRY_ALARMS_ON_EVENTS", True),
        schedule_alarm_digest=os.environ.get("TENANTRY_SCHEDULE_ALARM_DIGEST", "1 * * * *"),
        schedule_gateway_probes=os.environ.get("TENANTRY_SCHEDULE_GATEWAY_PROBES", "* * * * *"),
        gateway_probe_timeout_seconds=float(
            os.environ.get("TENANTRY_GATEWAY_PROBE_TIMEOUT", Settings.gateway_probe_timeout_seconds)
        ),
        gateway_probe_concurrency=_int(
            "TENANTRY_GATEWAY_PROBE_CONCURRENCY", Settings.gateway_probe_concurrency
        ),
    )
    settings.validate()
    return settings


_override: Settings | None = None


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return load_settings()


def get_settings() -> Settings:
    """The settings in force: an override (tests) or the environment, read once."""
    return _override if _override is not None else _cached()


def override_settings(settings: Settings | None) -> None:
    """Tests use this to run with other settings; None goes back to the environment."""
    global _override
    _override = settings
    _cached.cache_clear()


def data_dir() -> Path:
    path = Path(os.environ.get("TENANTRY_DATA_DIR", "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path
