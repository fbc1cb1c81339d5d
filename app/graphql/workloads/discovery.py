"""GraphQL for discovery rules: the rules in scope, their CRUD, and runs as background jobs
(app.services.discovery)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.authz.capabilities import DISCOVERY_RULES
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.graphql.common import Node, actor, principal, register_node, viewer_can
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.jobs.types import JobType
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.graphql.workloads.filters import in_place
from app.models import DiscoveryKind, DiscoveryRule
from app.services import discovery

Info = strawberry.Info[Context, Any]

DiscoveryKindEnum = strawberry.enum(DiscoveryKind, name="DiscoveryKind")


@strawberry.type(
    name="DiscoveryRule",
    description="What a company's management agent looks for, and when: IPv4 ranges or an "
    "Active Directory query; found machines become managed computers.",
)
class DiscoveryRuleType(Node):
    id: strawberry.ID
    company_id: strawberry.ID
    location_id: strawberry.ID = strawberry.field(description="Where found computers land.")
    name: str
    kind: DiscoveryKindEnum  # type: ignore[valid-type]
    ranges: list[str] = strawberry.field(description="CIDR blocks or a-b IPv4 ranges.")
    ad_query: str
    credentials_ref: str = strawberry.field(
        description="A reference to credentials the agent keeps; never the secret."
    )
    schedule: str = strawberry.field(description='Cron of five fields; "" = on demand only.')
    enabled: bool
    last_run_at: datetime | None
    last_run_job_id: strawberry.ID | None
    last_result: JSON | None = strawberry.field(
        description="The last finished run: { found new known errors }."
    )
    created_at: datetime
    _row: strawberry.Private[DiscoveryRule]

    @classmethod
    def from_row(cls, row: DiscoveryRule) -> DiscoveryRuleType:
        job_id = row.last_run_job_id  # type: ignore[attr-defined]
        return cls(
            id=strawberry.ID(to_global_id("DiscoveryRule", row.id)),
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            location_id=strawberry.ID(to_global_id("Location", row.location_id)),  # type: ignore[attr-defined]
            name=row.name,
            kind=row.kind,
            ranges=[str(r) for r in row.ranges or []],
            ad_query=row.ad_query,
            credentials_ref=row.credentials_ref,
            schedule=row.schedule,
            enabled=row.enabled,
            last_run_at=row.last_run_at,
            last_run_job_id=strawberry.ID(to_global_id("Job", job_id)) if job_id else None,
            last_result=row.last_result,  # type: ignore[arg-type]
            created_at=row.created_at,
            _row=row,
        )

    def _can(self, info: Info, action: Action) -> bool:
        company_id = self._row.company_id  # type: ignore[attr-defined]
        return viewer_can(info, DISCOVERY_RULES, action, discovery.target(company_id))

    @strawberry.field(description="You may change this rule and run it.")
    def viewer_can_update(self, info: Info) -> bool:
        return self._can(info, Action.UPDATE)

    @strawberry.field(description="You may remove this rule.")
    def viewer_can_delete(self, info: Info) -> bool:
        return self._can(info, Action.DELETE)


@strawberry.input
class DiscoveryRuleFilter:
    company_id: strawberry.ID | None = None
    location_id: strawberry.ID | None = None
    kind: DiscoveryKindEnum | None = None  # type: ignore[valid-type]


@strawberry.input
class DiscoveryRuleCreateInput:
    location_id: strawberry.ID
    name: str
    kind: DiscoveryKindEnum  # type: ignore[valid-type]
    ranges: list[str] | None = strawberry.field(
        default=None, description="NETWORK_SCAN: CIDR or a-b ranges, ≤ 65,536 addresses."
    )
    ad_query: str | None = strawberry.field(default=None, description="ACTIVE_DIRECTORY only.")
    credentials_ref: str = ""
    schedule: str = ""
    enabled: bool = True


@strawberry.input(description="Only the fields given change; the kind is fixed.")
class DiscoveryRuleUpdateInput:
    id: strawberry.ID
    name: str | None = None
    location_id: strawberry.ID | None = None
    ranges: list[str] | None = None
    ad_query: str | None = None
    credentials_ref: str | None = None
    schedule: str | None = None
    enabled: bool | None = None


@strawberry.type
class DiscoveryRuleRunPayload:
    rule: DiscoveryRuleType
    job: JobType
    created: bool = strawberry.field(
        description="False when a run of the rule was already queued or running: that one."
    )


async def _rule(p: Principal, pk: int) -> DiscoveryRuleType:
    return DiscoveryRuleType.from_row(await discovery.rule_in_scope(p, pk))


register_node("DiscoveryRule", DISCOVERY_RULES, _rule)


@strawberry.type
class DiscoveryQuery:
    @strawberry.field(extensions=guard(DISCOVERY_RULES, Action.READ))
    async def discovery_rules(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: DiscoveryRuleFilter | None = None,
    ) -> Connection[DiscoveryRuleType] | None:
        query = DiscoveryRule.filter(discovery.rule_q(principal(info)))
        if filter is not None:
            query = in_place(query, filter.company_id, filter.location_id)
            if filter.kind is not None:
                query = query.filter(kind=DiscoveryKind(filter.kind))
        return await paginate(query, first, after, DiscoveryRuleType.from_row)

    @strawberry.field(extensions=guard(DISCOVERY_RULES, Action.READ))
    async def discovery_rule(self, info: Info, id: strawberry.ID) -> DiscoveryRuleType | None:
        return await _rule(principal(info), pk_of(id, "DiscoveryRule"))


@strawberry.type
class DiscoveryMutation:
    @strawberry.mutation(extensions=guard(DISCOVERY_RULES, Action.CREATE))
    async def discovery_rule_create(
        self, info: Info, input: DiscoveryRuleCreateInput
    ) -> DiscoveryRuleType:
        row = await discovery.create(
            actor(info),
            pk_of(input.location_id, "Location", "input.locationId"),
            input.name,
            DiscoveryKind(input.kind),
            ranges=input.ranges,
            ad_query=input.ad_query,
            credentials_ref=input.credentials_ref,
            schedule=input.schedule,
            enabled=input.enabled,
        )
        return DiscoveryRuleType.from_row(row)

    @strawberry.mutation(extensions=guard(DISCOVERY_RULES, Action.UPDATE))
    async def discovery_rule_update(
        self, info: Info, input: DiscoveryRuleUpdateInput
    ) -> DiscoveryRuleType:
        row = await discovery.update(
            actor(info),
            pk_of(input.id, "DiscoveryRule", "input.id"),
            name=input.name,
            location_id=(
                pk_of(input.location_id, "Location", "input.locationId")
                if input.location_id
                else None
            ),
            ranges=input.ranges,
            ad_query=input.ad_query,
            credentials_ref=input.credentials_ref,
            schedule=input.schedule,
            enabled=input.enabled,
        )
        return DiscoveryRuleType.from_row(row)

    @strawberry.mutation(
        extensions=guard(DISCOVERY_RULES, Action.DELETE),
        description="Removes the rule (computers it found stay). CONFLICT while a run is on.",
    )
    async def discovery_rule_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await discovery.delete(actor(info), pk_of(id, "DiscoveryRule"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(DISCOVERY_RULES, Action.UPDATE),
        description="Runs the rule now as a background job; while a run is queued or running, "
        "returns that one. CONFLICT when the rule is disabled.",
    )
    async def discovery_rule_run(self, info: Info, id: strawberry.ID) -> DiscoveryRuleRunPayload:
        rule, job, created = await discovery.run(actor(info), pk_of(id, "DiscoveryRule"))
        return DiscoveryRuleRunPayload(
            rule=DiscoveryRuleType.from_row(rule), job=JobType.from_row(job), created=created
        )
