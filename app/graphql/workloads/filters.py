"""Filters shared by the workload lists."""

from __future__ import annotations

from typing import Any

import strawberry

from app.graphql.ids import pk_of


def in_place(
    query: Any, company_id: strawberry.ID | None, location_id: strawberry.ID | None
) -> Any:
    """The rows of a list filter's company and location (global IDs; either may be absent),
    for models with `company_id` and `location_id` columns. A wrong ID names its filter field."""
    if company_id:
        query = query.filter(company_id=pk_of(company_id, "Company", "filter.companyId"))
    if location_id:
        query = query.filter(location_id=pk_of(location_id, "Location", "filter.locationId"))
    return query
