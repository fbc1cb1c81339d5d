"""GraphQL types of people."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.graphql.common import Node
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.models import User

Info = strawberry.Info[Context, Any]


@strawberry.type(name="User")
class UserType(Node):
    _row: strawberry.Private[User]
    id: strawberry.ID
    email: str
    name: str
    role: str = strawberry.field(description="The seed's role name, e.g. 'Company Owner'.")
    enabled: bool
    scope_restricted: bool = strawberry.field(
        description="True when limited to selected companies or locations."
    )
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def from_row(cls, row: User) -> UserType:
        return cls(
            _row=row,
            id=strawberry.ID(to_global_id("User", row.id)),
            email=row.email,
            name=row.name,
            role=row.role,
            enabled=row.enabled,
            scope_restricted=row.scope_restricted,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )
