"""Discovery rules: what a company's management agent looks for (IPv4 ranges, or an Active
Directory query), when (cron), with which credentials (a reference, never the secret), and
their runs as background jobs (`discovery.run`, app/jobs/discovery.py).

One run per rule at a time: a run asked for while one is queued or running returns that one;
a new one is keyed on the previous run (`discovery.run:<rule>:after:<job>`), so two requests
racing create a single job. Scheduled rules are run by the scheduler's `discovery.due` sweep
(`run_due`), through the same path. What a run finds is registered by `register_hosts`: a host
an agent already reported is not registered again (`app.services.computer_match`).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.capabilities import DISCOVERY_RULES
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import connection_name, serialize
from app.errors import BadInput, Conflict, NotFound
from app.integrations.backup_agents import FoundHost, ipv4_range
from app.models import (
    AgentStatus,
    DiscoveryKind,
    DiscoveryRule,
    Job,
    JobState,
    ManagedComputer,
    Organization,
    OsFamily,
)
from app.models.tenancy import OrgKind
from app.services import computer_match, ingestion, jobs
from app.services.actor import Actor
from app.services.audit import audited
from app.services.backup_jobs import cron_schedule
from app.services.guards import require
from app.services.tenancy import location_in_scope
from app.services.text_inputs import clean_text

RUN_KIND = "discovery.run"
MAX_ADDRESSES = 65_536
MAX_RANGES = 100
NAME_MAX = 200


def rule_q(p: Principal) -> Q:
    """Rules of the companies and locations in scope. A rule scans for a whole location, so a
    principal limited to their own computers (a Subtenant) has none."""
    return scope.workload_q(p, subtenant=None)


async def rule_in_scope(p: Principal, pk: int) -> DiscoveryRule:
    rule = await DiscoveryRule.filter(rule_q(p), id=pk).first()
    if rule is None:
        raise NotFound("discovery rule")
    return rule


def target(company_id: int) -> Target:
    return Target(
        kind=DISCOVERY_RULES.kind, organization_id=company_id, organization_kind=OrgKind.COMPANY
    )


# --- validation -----------------------------------------------------------------------------


def network_ranges(ranges: list[str]) -> list[str]:
    """CIDR blocks or a-b ranges of IPv4, at most MAX_ADDRESSES addresses in all."""
    if not ranges:
        raise BadInput("a network scan needs at least one range", field="input.ranges")
    if len(ranges) > MAX_RANGES:
        raise BadInput(f"at most {MAX_RANGES} ranges", field="input.ranges")
    cleaned: list[str] = []
    total = 0
    for i, text in enumerate(ranges):
        try:
            first, last = ipv4_range(text)
        except ValueError as exc:
            raise BadInput(str(exc), field=f"input.ranges.{i}") from None
        total += last - first + 1
        cleaned.append("".join(text.split()))
    if total > MAX_ADDRESSES:
        raise BadInput(
            f"the ranges hold {total} addresses; a rule scans at most {MAX_ADDRESSES}",
            field="input.ranges",
        )
    return cleaned


def _kind_fields(kind: DiscoveryKind, ranges: list[str] | None, ad_query: str | None) -> dict:
    if kind is DiscoveryKind.NETWORK_SCAN:
        if ad_query:
            raise BadInput("a network scan takes ranges, not a query", field="input.adQuery")
        return {"ranges": network_ranges(ranges or []), "ad_query": ""}
    if ranges:
        raise BadInput("an Active Directory rule takes a query, not ranges", field="input.ranges")
    query = clean_text(ad_query or "", "input.adQuery", 1000)
    return {"ranges": [], "ad_query": query}


async def _location(p: Principal, location_id: int, company_id: int | None = None) -> Any:
    try:
        location = await location_in_scope(p, location_id)
    except NotFound:
        raise NotFound("location", field="input.locationId") from None
    if company_id is not None and location.company_id != company_id:  # type: ignore[attr-defined]
        raise BadInput("the location is not one of the rule's company", field="input.locationId")
    return location


def _details(rule: DiscoveryRule) -> dict[str, Any]:
    return {"name": rule.name, "kind": rule.kind.value}


# --- create, update, delete -------------------------------------------------------------------


async def create(
    actor: Actor,
    location_id: int,
    name: str,
    kind: DiscoveryKind,
    ranges: list[str] | None = None,
    ad_query: str | None = None,
    credentials_ref: str = "",
    schedule: str = "",
    enabled: bool = True,
) -> DiscoveryRule:
    p = actor.p
    require(p, DISCOVERY_RULES, Action.CREATE)
    location = await _location(p, location_id)
    company_id = location.company_id
    require(p, DISCOVERY_RULES, Action.CREATE, target(company_id))
    values = dict(
        name=clean_text(name, "input.name", NAME_MAX),
        kind=kind,
        credentials_ref=clean_text(credentials_ref, "input.credentialsRef", 200, required=False),
        schedule=cron_schedule(schedule, "input.schedule"),
        enabled=enabled,
        **_kind_fields(kind, ranges, ad_query),
    )
    async with audited(
        actor, "discoveryRuleCreate", "DiscoveryRule", organization_id=company_id
    ) as entry:
        if await DiscoveryRule.exists(company_id=company_id, name=values["name"]):
            raise Conflict(
                "the company already has a discovery rule of this name", field="input.name"
            )
        try:
            rule = await DiscoveryRule.create(company_id=company_id, location=location, **values)
        except IntegrityError:
            raise Conflict(
                "the company already has a discovery rule of this name", field="input.name"
            ) from None
        entry.bind(rule.id, **_details(rule), ranges=rule.ranges, schedule=rule.schedule)
    return rule


async def update(
    actor: Actor,
    rule_id: int,
    *,
    name: str | None = None,
    location_id: int | None = None,
    ranges: list[str] | None = None,
    ad_query: str | None = None,
    credentials_ref: str | None = None,
    schedule: str | None = None,
    enabled: bool | None = None,
) -> DiscoveryRule:
    p = actor.p
    rule = await rule_in_scope(p, rule_id)
    company_id = rule.company_id  # type: ignore[attr-defined]
    require(p, DISCOVERY_RULES, Action.UPDATE, target(company_id))
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = clean_text(name, "input.name", NAME_MAX)
    if location_id is not None:
        changes["location_id"] = (await _location(p, location_id, company_id)).id
    if ranges is not None or ad_query is not None:
        changes.update(
            _kind_fields(
                rule.kind,
                ranges if ranges is not None else rule.ranges,
                ad_query if ad_query is not None else rule.ad_query,
            )
        )
    if credentials_ref is not None:
        changes["credentials_ref"] = clean_text(
            credentials_ref, "input.credentialsRef", 200, required=False
        )
    if schedule is not None:
        changes["schedule"] = cron_schedule(schedule, "input.schedule")
    if enabled is not None:
        changes["enabled"] = enabled
    async with audited(actor, "discoveryRuleUpdate", "DiscoveryRule", rule.id, company_id) as entry:
        entry.details.update(_details(rule), **changes)
        if (
            "name" in changes
            and await DiscoveryRule.filter(company_id=company_id, name=changes["name"])
            .exclude(id=rule.id)
            .exists()
        ):
            raise Conflict(
                "the company already has a discovery rule of this name", field="input.name"
            )
        if changes:
            try:
                await DiscoveryRule.filter(id=rule.id).update(**changes)
            except IntegrityError:
                raise Conflict(
                    "the company already has a discovery rule of this name", field="input.name"
                ) from None
    return await DiscoveryRule.get(id=rule.id)


async def _run_in_flight(rule: DiscoveryRule) -> Job | None:
    job_id = rule.last_run_job_id  # type: ignore[attr-defined]
    if job_id is None:
        return None
    return await Job.filter(id=job_id, state__in=[JobState.QUEUED, JobState.RUNNING]).first()


async def delete(actor: Actor, rule_id: int) -> DiscoveryRule:
    p = actor.p
    rule = await rule_in_scope(p, rule_id)
    company_id = rule.company_id  # type: ignore[attr-defined]
    require(p, DISCOVERY_RULES, Action.DELETE, target(company_id))
    async with audited(actor, "discoveryRuleDelete", "DiscoveryRule", rule.id, company_id) as entry:
        entry.details.update(_details(rule))
        if await _run_in_flight(rule) is not None:
            raise Conflict("a run of this rule is in progress: cancel it or wait for it to end")
        await DiscoveryRule.filter(id=rule.id).delete()
    return rule


# --- runs ----------------------------------------------------------------------------------


async def start_run(actor: Actor | None, rule: DiscoveryRule) -> tuple[Job, bool]:
    """The rule's run in flight, or a new one (True). No permission check: callers check."""
    running = await _run_in_flight(rule)
    if running is not None:
        return running, False
    previous = rule.last_run_job_id  # type: ignore[attr-defined]
    company = await Organization.get(id=rule.company_id)  # type: ignore[attr-defined]
    job, created = await jobs.create(
        actor,
        RUN_KIND,
        company,
        {"rule_id": rule.id},
        dedup_key=f"{RUN_KIND}:{rule.id}:after:{previous or 0}",
    )
    if created:
        await DiscoveryRule.filter(id=rule.id, last_run_job_id=previous).update(last_run_job=job)
    return job, created


async def run(actor: Actor, rule_id: int) -> tuple[DiscoveryRule, Job, bool]:
    p = actor.p
    rule = await rule_in_scope(p, rule_id)
    company_id = rule.company_id  # type: ignore[attr-defined]
    require(p, DISCOVERY_RULES, Action.UPDATE, target(company_id))
    if not rule.enabled:
        async with audited(
            actor, "discoveryRuleRun", "DiscoveryRule", rule.id, company_id
        ) as entry:
            entry.details.update(_details(rule))
            raise Conflict("the rule is disabled: enable it before running it")
    job, created = await start_run(actor, rule)
    async with audited(actor, "discoveryRuleRun", "DiscoveryRule", rule.id, company_id) as entry:
        entry.details.update(_details(rule), job=job.id, deduplicated=not created)
    return await DiscoveryRule.get(id=rule.id), job, created


def _due(rule: DiscoveryRule, now: datetime) -> bool:
    """The rule's most recent tick at or before now came after its last run (or creation)."""
    start = now.astimezone(UTC) + timedelta(microseconds=1)
    tick = croniter(rule.schedule, start).get_prev(datetime).astimezone(UTC)
    since = rule.last_run_at or rule.created_at
    return tick > since


async def run_due(now: datetime | None = None) -> list[int]:
    """The scheduler's sweep: start a run of every enabled, scheduled rule that is due and has
    none in flight. The ids of the jobs started."""
    now = now or datetime.now(UTC)
    started: list[int] = []
    rules = await DiscoveryRule.filter(enabled=True).exclude(schedule="").order_by("id")
    for rule in rules:
        if not _due(rule, now):
            continue
        job, created = await start_run(None, rule)
        if created:
            started.append(job.id)
    return started


# --- what a run finds ---------------------------------------------------------------------------

UID_MAX = 100


def discovered_uid(host: FoundHost) -> str:
    uid = computer_match.PREFIX + host.key
    if len(uid) <= UID_MAX:
        return uid
    return computer_match.PREFIX + "sha256:" + hashlib.sha256(host.key.encode()).hexdigest()[:64]


def _os_family(value: str) -> OsFamily:
    try:
        return OsFamily(value)
    except ValueError:
        return OsFamily.OTHER


def _addresses(host: FoundHost) -> list[str]:
    return [host.address] if host.address else []


async def register_hosts(rule: DiscoveryRule, hosts: list[FoundHost]) -> tuple[int, int]:
    """Register the hosts the company does not know yet: (new, known). Known: registered by a
    run before (by uid), or reported by an agent (`computer_match`: such a computer is linked
    to the rule when it is the one match and no rule is linked yet). In one transaction under
    the company's ingestion lock, so an agent's report never claims half of it."""
    by_uid = {discovered_uid(h): h for h in hosts}
    company_id = rule.company_id  # type: ignore[attr-defined]
    location_id = rule.location_id  # type: ignore[attr-defined]
    async with in_transaction(connection_name()):
        await serialize(ingestion.lock_key(company_id))
        known: set[str] = set()
        uids = list(by_uid)
        for i in range(0, len(uids), 1000):
            known.update(
                await ManagedComputer.filter(
                    company_id=company_id, uid__in=uids[i : i + 1000]
                ).values_list("uid", flat=True)  # type: ignore[arg-type]
            )
        unknown = {uid: host for uid, host in by_uid.items() if uid not in known}
        reported = await computer_match.candidates(
            company_id,
            (h.hostname for h in unknown.values()),
            (a for h in unknown.values() for a in _addresses(h)),
            ("id", "hostname", "location_id", "ip_addresses", "discovered_by_id"),
            claimed=True,
        )
        matcher = computer_match.Matcher(reported)
        fresh, links = [], set()
        for uid, host in unknown.items():
            match = matcher.deciding(host.hostname, _addresses(host), location_id)
            if match:
                known.add(uid)
                if len(match) == 1 and match[0]["discovered_by_id"] is None:
                    links.add(match[0]["id"])
                continue
            fresh.append(
                ManagedComputer(
                    company_id=company_id,
                    location_id=location_id,
                    uid=uid,
                    hostname=host.hostname[:255] or host.key[:255],
                    os_family=_os_family(host.os_family),
                    os_name=host.os_name[:200],
                    ip_addresses=_addresses(host),
                    agent_status=AgentStatus.UNKNOWN,
                    discovered_by_id=rule.id,
                )
            )
        if fresh:
            await ManagedComputer.bulk_create(fresh, batch_size=500, ignore_conflicts=True)
        if links:
            await ManagedComputer.filter(id__in=links, discovered_by_id__isnull=True).update(
                discovered_by_id=rule.id
            )
    return len(fresh), len(known)
