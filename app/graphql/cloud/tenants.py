"""GraphQL for Cloud Connect: tenants."""

from __future__ import annotations

import strawberry


@strawberry.type
class TenantQuery:
    pass


@strawberry.type
class TenantMutation:
    pass
