"""GraphQL for Cloud Connect: remote."""

from __future__ import annotations

import strawberry


@strawberry.type
class RemoteQuery:
    pass


@strawberry.type
class RemoteMutation:
    pass
