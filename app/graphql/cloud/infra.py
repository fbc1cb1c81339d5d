"""GraphQL for Cloud Connect: infra."""

from __future__ import annotations

import strawberry


@strawberry.type
class InfraQuery:
    pass


@strawberry.type
class InfraMutation:
    pass
