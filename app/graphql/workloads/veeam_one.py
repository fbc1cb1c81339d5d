"""GraphQL for Veeam ONE monitoring records: read-only, newest first, and counts by severity.

Rows are scoped in SQL by `scope.workload_q` (the company in the caller's tree, and the caller's
locations when the role is limited to locations). The list pages on (recorded_at, id), newest
first, with its own opaque cursor.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import strawberry
from tortoise.expressions import Q
from tortoise.functions import Count

from app.authz import scope
from app.authz.capabilities import VEEAM_ONE
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import BadInput, NotFound
from app.graphql.common import Node, principal, register_node
from app.graphql.context import Context
from app.graphql.ids import pk_of, to_global_id
from app.graphql.pagination import Connection, Edge, PageInfo, page_size
from app.graphql.permissions import guard
from app.models import Organization
from app.models.licensing import Severity, VeeamOneRecord

Info = strawberry.Info[Context, Any]

SeverityEnum = strawberry.enum(Severity, name="Severity")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@strawberry.type(name="VeeamOneRecord", description="A monitoring record from Veeam ONE.")
class VeeamOneRecordType(Node):
    id: strawberry.ID
    company_id: strawberry.ID
    location_id: strawberry.ID
    server_id: strawberry.ID
    uid: str
    object_name: str
    metric: str
    value: float | None
    severity: SeverityEnum  # type: ignore[valid-type]
    message: str
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: VeeamOneRecord) -> VeeamOneRecordType:
        return cls(
            id=strawberry.ID(to_global_id("VeeamOneRecord", row.id)),
            company_id=strawberry.ID(to_global_id("Company", row.company_id)),  # type: ignore[attr-defined]
            location_id=strawberry.ID(to_global_id("Location", row.location_id)),
            server_id=strawberry.ID(to_global_id("BackupServer", row.server_id)),  # type: ignore[attr-defined]
            uid=row.uid,
            object_name=row.object_name,
            metric=row.metric,
            value=row.value,
            severity=row.severity,
            message=row.message,
            recorded_at=row.recorded_at,
        )


@strawberry.input
class VeeamOneRecordFilter:
    company_id: strawberry.ID | None = None
    server_id: strawberry.ID | None = None
    severity: SeverityEnum | None = None  # type: ignore[valid-type]
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Recorded at or after."
    )
    to: datetime | None = strawberry.field(default=None, description="Recorded before.")


@strawberry.type
class VeeamOneSummary:
    info: int
    warning: int
    error: int
    total: int


def records_q(p: Principal) -> Q:
    return scope.workload_q(p)


async def _record(p: Principal, pk: int) -> VeeamOneRecordType:
    row = await VeeamOneRecord.filter(records_q(p), id=pk).first()
    if row is None:
        raise NotFound("Veeam ONE record")
    return VeeamOneRecordType.from_row(row)


register_node("VeeamOneRecord", VEEAM_ONE, _record)


def _encode(row: VeeamOneRecord) -> str:
    micros = (row.recorded_at - EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"v:{micros}:{row.id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, int]:
    try:
        prefix, micros, pk = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if prefix != "v":
            raise ValueError
        return EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the cursor is not valid", field="after") from None


def _filtered(p: Principal, f: VeeamOneRecordFilter | None) -> Any:
    query = VeeamOneRecord.filter(records_q(p))
    if f is None:
        return query
    if f.company_id is not None:
        query = query.filter(company_id=pk_of(f.company_id, "Company", "filter.companyId"))
    if f.server_id is not None:
        query = query.filter(server_id=pk_of(f.server_id, "BackupServer", "filter.serverId"))
    if f.severity is not None:
        query = query.filter(severity=Severity(f.severity).value)
    if f.from_ is not None:
        query = query.filter(recorded_at__gte=f.from_)
    if f.to is not None:
        query = query.filter(recorded_at__lt=f.to)
    return query


@strawberry.type
class VeeamOneQuery:
    @strawberry.field(
        extensions=guard(VEEAM_ONE, Action.READ),
        description="Veeam ONE records in your scope, newest first (by recordedAt).",
    )
    async def veeam_one_records(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: VeeamOneRecordFilter | None = None,
    ) -> Connection[VeeamOneRecordType] | None:
        size = page_size(first)
        query = _filtered(principal(info), filter)
        page = query.order_by("-recorded_at", "-id")
        if after:
            at, pk = _decode(after)
            page = page.filter(Q(recorded_at__lt=at) | Q(recorded_at=at, id__lt=pk))
        rows = list(await page.limit(size + 1)) if size else []
        has_next = len(rows) > size
        rows = rows[:size]
        edges = [Edge(cursor=_encode(r), node=VeeamOneRecordType.from_row(r)) for r in rows]
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None
            ),
            _count_query=query,
        )

    @strawberry.field(extensions=guard(VEEAM_ONE, Action.READ))
    async def veeam_one_record(self, info: Info, id: strawberry.ID) -> VeeamOneRecordType | None:
        return await _record(principal(info), pk_of(id, "VeeamOneRecord"))

    @strawberry.field(
        extensions=guard(VEEAM_ONE, Action.READ),
        description="Veeam ONE records in your scope counted by severity (one SQL GROUP BY).",
    )
    async def veeam_one_summary(
        self, info: Info, company_id: strawberry.ID | None = None
    ) -> VeeamOneSummary | None:
        query = VeeamOneRecord.filter(records_q(principal(info)))
        if company_id is not None:
            pk = pk_of(company_id, "Company", "companyId")
            if not await Organization.exists(scope.company_q(principal(info)), id=pk):
                raise NotFound("company", field="companyId")
            query = query.filter(company_id=pk)
        rows = await query.annotate(n=Count("id")).group_by("severity").values("severity", "n")
        counts = {Severity(r["severity"]): int(r["n"]) for r in rows}
        return VeeamOneSummary(
            info=counts.get(Severity.INFO, 0),
            warning=counts.get(Severity.WARNING, 0),
            error=counts.get(Severity.ERROR, 0),
            total=sum(counts.values()),
        )
