"""GraphQL for Cloud Connect: allocations."""

from __future__ import annotations

import strawberry


@strawberry.type
class AllocationQuery:
    pass


@strawberry.type
class AllocationMutation:
    pass
