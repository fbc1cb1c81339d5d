"""From a bearer credential to a Principal: one or two queries per request."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from app.auth.tokens import SESSION_PREFIX, api_key_prefix, digest
from app.authz.engine import grants_for, portal_for
from app.authz.matrix import RoleScope, load_matrix
from app.authz.principal import Principal
from app.errors import Unauthenticated
from app.models import ApiKey, Organization, SessionToken, User
from app.settings import get_settings


def now() -> datetime:
    return datetime.now(UTC)


def organization_enabled(org: Organization) -> bool:
    """Effective state: the organization and every ancestor are enabled (fetched with it)."""
    node: Organization | None = org
    while node is not None:
        if not node.enabled:
            return False
        parent = node.parent if node.parent_id is not None else None  # type: ignore[attr-defined]
        node = parent if isinstance(parent, Organization) else None
    return True


async def build_principal(
    user: User, auth_method: str = "session", credential_id: int | None = None
) -> Principal:
    """`user` must come with `organization__parent` fetched."""
    org = user.organization
    portal = portal_for(org.kind, get_settings().enterprise)
    try:
        role = load_matrix().role(portal, user.role)
    except KeyError:
        raise Unauthenticated("this account's role does not exist in this edition") from None
    company_ids = location_ids = None
    if user.scope_restricted and role.scope is RoleScope.COMPANIES:
        company_ids = frozenset[int](
            await user.scope_companies.all().values_list("id", flat=True)  # type: ignore[arg-type]
        )
    elif user.scope_restricted and role.scope is RoleScope.LOCATIONS:
        location_ids = frozenset[int](
            await user.scope_locations.all().values_list("id", flat=True)  # type: ignore[arg-type]
        )
    return Principal(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=role,
        organization_id=org.id,
        organization_kind=org.kind,
        parent_organization_id=org.parent_id,  # type: ignore[attr-defined]
        grants=grants_for(role),
        company_ids=company_ids,
        location_ids=location_ids,
        auth_method=auth_method,
        credential_id=credential_id,
    )


def _check_user(user: User | None) -> User:
    if user is None or not user.enabled:
        raise Unauthenticated("the credential is invalid, expired or revoked")
    if not organization_enabled(user.organization):
        raise Unauthenticated("the organization of this account is disabled")
    return user


async def principal_for_bearer(credential: str) -> Principal:
    at = now()
    if credential.startswith(SESSION_PREFIX):
        session = (
            await SessionToken.filter(
                token_hash=digest(credential), revoked_at=None, expires_at__gt=at
            )
            .select_related("user__organization__parent__parent")
            .first()
        )
        if session is None:
            raise Unauthenticated("the credential is invalid, expired or revoked")
        return await build_principal(_check_user(session.user), "session", session.id)
    prefix = api_key_prefix(credential)
    if prefix is not None:
        key = (
            await ApiKey.filter(prefix=prefix, revoked_at=None, expires_at__gt=at)
            .select_related("user__organization__parent__parent")
            .first()
        )
        if key is None or not hmac.compare_digest(key.key_hash, digest(credential)):
            raise Unauthenticated("the credential is invalid, expired or revoked")
        await ApiKey.filter(id=key.id).update(last_used_at=at)
        return await build_principal(_check_user(key.user), "api_key", key.id)
    raise Unauthenticated("the credential is invalid, expired or revoked")
