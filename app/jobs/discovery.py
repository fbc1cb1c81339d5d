"""discovery.run: run one discovery rule through the agents' driver and register what it finds
as managed computers (agent status UNKNOWN, `discovered_by_id` = the rule, uid
`discovered:<address or distinguished name>`); a host an agent already reported is known, not
registered again (`app.services.discovery.register_hosts`, `app.services.computer_match`).

A network rule runs range by range, an Active Directory rule in one part; after each part the
checkpoint records the parts done and the counts so far, so a re-run after a crash continues
with the next part. Inserts skip computers that exist (by company and uid), so running a part
again, or the rule again, never duplicates a computer. The rule keeps the last run's time and
result. Params: {"rule_id": n}.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.authz.matrix import Functionality
from app.integrations import agents
from app.integrations.backup_agents import AgentUnavailable, DriverFailed, FoundHost
from app.jobs.context import JobContext, JobFailed, TransientError
from app.jobs.registry import JobKind, register
from app.models import DiscoveryKind, DiscoveryRule
from app.services.discovery import register_hosts


async def _find(rule: DiscoveryRule, part: str | None) -> list[FoundHost]:
    driver = agents()
    try:
        if rule.kind is DiscoveryKind.NETWORK_SCAN:
            return await driver.scan_network([part or ""], rule.credentials_ref, rule_id=rule.id)
        return await driver.query_directory(rule.ad_query, rule.credentials_ref, rule_id=rule.id)
    except AgentUnavailable as exc:
        raise TransientError(f"the management agent did not answer: {exc}") from exc


async def run(ctx: JobContext) -> dict[str, Any]:
    rule = await DiscoveryRule.get_or_none(id=int(ctx.params.get("rule_id", 0)))
    if rule is None:
        raise JobFailed("the discovery rule no longer exists")
    parts: list[str | None] = (
        list(rule.ranges) if rule.kind is DiscoveryKind.NETWORK_SCAN else [None]
    )
    point = {"parts_done": 0, "found": 0, "new": 0, "known": 0, **ctx.checkpoint}
    for index in range(int(point["parts_done"]), len(parts)):
        part = parts[index]
        await ctx.step(part or "directory query")
        try:
            hosts = await _find(rule, part)
        except DriverFailed as exc:
            await DiscoveryRule.filter(id=rule.id).update(
                last_run_at=datetime.now(UTC),
                last_result={**_counts(point), "errors": [str(exc)]},
            )
            raise JobFailed(str(exc)) from None
        new, known = await register_hosts(rule, hosts)
        point = {
            "parts_done": index + 1,
            "found": point["found"] + len(hosts),
            "new": point["new"] + new,
            "known": point["known"] + known,
        }
        await ctx.progress(
            100 * (index + 1) / len(parts),
            f"{point['found']} found, {point['new']} new after {index + 1}/{len(parts)}",
            point,
        )
    result = {**_counts(point), "errors": []}
    await DiscoveryRule.filter(id=rule.id).update(last_run_at=datetime.now(UTC), last_result=result)
    return result


def _counts(point: dict[str, Any]) -> dict[str, int]:
    return {k: int(point[k]) for k in ("found", "new", "known")}


DISCOVERY_RUN = register(
    JobKind(
        name="discovery.run",
        label="Run a discovery rule",
        functionality=Functionality.DISCOVERY_RULES,
        handler=run,
        time_limit_seconds=1800,
        max_attempts=3,
    )
)
