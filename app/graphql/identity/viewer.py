"""GraphQL types of the caller and their credentials: the viewer, login payloads, API keys."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.authz.matrix import Action, load_matrix
from app.authz.principal import Principal
from app.graphql.identity.types import UserOrganization, UserType
from app.graphql.ids import to_global_id
from app.models import ApiKey
from app.services.auth import Session, ViewerRows


@strawberry.type
class LoginPayload:
    token: str = strawberry.field(description="Send as 'Authorization: Bearer <token>'.")
    expires_at: datetime
    user: UserType

    @classmethod
    def from_session(cls, session: Session) -> LoginPayload:
        return cls(
            token=session.token,
            expires_at=session.expires_at,
            user=UserType.from_row(session.user),
        )


@strawberry.type
class ViewerPermission:
    functionality: str = strawberry.field(description="The portal's own word for it (the seed's).")
    access: str = strawberry.field(description="The matrix cell word for word: 'Full', 'Read'...")
    actions: list[str] = strawberry.field(
        description="What the cell grants (READ, CREATE, UPDATE, DELETE); a restricted cell "
        "(see access) narrows these by kind of object."
    )


@strawberry.type
class Viewer:
    user: UserType
    role: str
    portal: str = strawberry.field(description="The portal's label, e.g. 'Client Portal'.")
    organization: UserOrganization
    permissions: list[ViewerPermission] = strawberry.field(
        description="Your role's row of the portal's matrix, in the matrix's order."
    )
    scope_restricted: bool
    auth_method: str = strawberry.field(description="'session' or 'api_key'.")

    @classmethod
    def build(cls, p: Principal, rows: ViewerRows) -> Viewer:
        portal = load_matrix().portals[p.portal]
        permissions = []
        for row in portal.rows:
            cell = p.cell(row.key)
            if cell is None:
                continue
            permissions.append(
                ViewerPermission(
                    functionality=row.functionality,
                    access=cell.text,
                    actions=[a.value for a in Action if a in cell.actions],
                )
            )
        return cls(
            user=UserType.from_row(rows.user),
            role=p.role.name,
            portal=portal.label,
            organization=UserOrganization.from_row(rows.organization),
            permissions=permissions,
            scope_restricted=p.company_ids is not None or p.location_ids is not None,
            auth_method=p.auth_method,
        )


@strawberry.type(name="ApiKey")
class ApiKeyType:
    id: strawberry.ID
    name: str
    prefix: str = strawberry.field(description="Identifies the key: it starts 'tntk_<prefix>_'.")
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKey) -> ApiKeyType:
        return cls(
            id=strawberry.ID(to_global_id("ApiKey", row.id)),
            name=row.name,
            prefix=row.prefix,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )


@strawberry.type
class ApiKeyCreatePayload:
    api_key: ApiKeyType
    secret: str = strawberry.field(description="The key itself: shown once, never again.")
