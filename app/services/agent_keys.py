"""Agent keys: what a backup server or a management agent reports in with (`POST /ingest/v1/batch`).

A key is bound to one company and one location (where the computers, servers and jobs it
reports for the first time land). It looks like `tna_<prefix>_<secret>`, is shown once at
creation and stored as its SHA-256 only, like a personal API key (`app.auth.tokens`); the
prefix identifies it in lists. Keys are issued and revoked, never edited.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from app.auth.authenticate import organization_enabled
from app.auth.tokens import API_KEY_PREFIX, api_key_prefix, digest, new_api_key
from app.authz import scope
from app.authz.capabilities import AGENT_KEYS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import connection_name
from app.errors import BadInput, Forbidden, NotFound, TenantryError, Unauthenticated
from app.models import AgentKey, Location, Organization, OrgKind
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require

AGENT_KEY_PREFIX = "tna_"
NAME_MAX = 100
# `last_used_at` is written at most this often per key: one UPDATE a minute, not one a batch.
LAST_USED_RESOLUTION = timedelta(seconds=60)
INVALID = "the agent key is invalid or revoked"


def now() -> datetime:
    return datetime.now(UTC)


def new_agent_key() -> tuple[str, str]:
    """(prefix, full key): the API key generator's prefix and secret under the agent marker."""
    prefix, key = new_api_key()
    return prefix, AGENT_KEY_PREFIX + key.removeprefix(API_KEY_PREFIX)


def agent_key_prefix(raw: str) -> str | None:
    if not raw.startswith(AGENT_KEY_PREFIX):
        return None
    return api_key_prefix(API_KEY_PREFIX + raw.removeprefix(AGENT_KEY_PREFIX))


def key_target(key: AgentKey | Organization) -> Target:
    company_id = key.company_id if isinstance(key, AgentKey) else key.id  # type: ignore[attr-defined]
    return Target(
        kind=AGENT_KEYS.kind, organization_id=company_id, organization_kind=OrgKind.COMPANY
    )


def keys_q(p: Principal) -> Q:
    """Keys of the locations in the principal's scope (SQL)."""
    return scope.location_q(p, "location")


async def key_in_scope(p: Principal, key_id: int) -> AgentKey:
    key = await AgentKey.filter(keys_q(p), id=key_id).first()
    if key is None:
        raise NotFound("agent key")
    return key


async def _company_and_location(
    p: Principal, company_id: int, location_id: int | None
) -> tuple[Organization, Location]:
    company = await Organization.filter(scope.company_q(p), id=company_id).first()
    if company is None:
        raise NotFound("company", field="input.companyId")
    locations = Location.filter(scope.location_q(p), company_id=company.id)
    if location_id is not None:
        location = await locations.filter(id=location_id).first()
        if location is None:
            raise NotFound("location", field="input.locationId")
        return company, location
    location = await locations.order_by("-is_default", "id").first()
    if location is None:
        raise BadInput("choose a location of the company", field="input.locationId")
    return company, location


def _name(name: str) -> str:
    name = name.strip()
    if not name:
        raise BadInput("a name is required", field="input.name")
    if len(name) > NAME_MAX:
        raise BadInput(f"the name is longer than {NAME_MAX} characters", field="input.name")
    return name


async def create(
    actor: Actor, company_id: int, location_id: int | None, name: str
) -> tuple[AgentKey, str]:
    """Issues a key; returns the row and the key itself (shown once, never stored)."""
    p = actor.p
    require(p, AGENT_KEYS, Action.CREATE)
    name = _name(name)
    company, location = await _company_and_location(p, company_id, location_id)
    require(p, AGENT_KEYS, Action.CREATE, key_target(company))
    async with audited(actor, "agentKeyCreate", "AgentKey", organization_id=company.id) as entry:
        for _ in range(3):
            prefix, secret = new_agent_key()
            try:
                async with in_transaction(connection_name()):  # a savepoint
                    key = await AgentKey.create(
                        company=company,
                        location=location,
                        name=name,
                        prefix=prefix,
                        key_hash=digest(secret),
                        created_by_id=p.user_id,
                    )
                break
            except IntegrityError:  # a prefix collision: draw again
                continue
        else:  # pragma: no cover - 48 random bits colliding three times
            raise TenantryError("could not draw a unique agent key prefix")
        entry.bind(key.id, name=name, prefix=prefix, location=location.name)
    return key, secret


async def revoke(actor: Actor, key_id: int) -> AgentKey:
    p = actor.p
    key = await key_in_scope(p, key_id)
    require(p, AGENT_KEYS, Action.DELETE, key_target(key))
    async with audited(
        actor,
        "agentKeyRevoke",
        "AgentKey",
        key.id,
        key.company_id,  # type: ignore[attr-defined]
    ) as entry:
        if key.revoked_at is None:
            key.revoked_at = now()
            await AgentKey.filter(id=key.id, revoked_at=None).update(revoked_at=key.revoked_at)
        entry.details.update(prefix=key.prefix, name=key.name)
    return key


def listing(p: Principal, company_id: int | None = None, location_id: int | None = None):
    """The scoped queryset behind `agentKeys` (newest first is the caller's choice)."""
    query = AgentKey.filter(keys_q(p))
    if company_id is not None:
        query = query.filter(company_id=company_id)
    if location_id is not None:
        query = query.filter(location_id=location_id)
    return query


async def authenticate_agent_key(raw: str) -> AgentKey:
    """The key behind a bearer credential, with its company (and the company's parents).
    UNAUTHENTICATED for an unknown, malformed or revoked key; FORBIDDEN when the company (or
    its reseller) is disabled."""
    prefix = agent_key_prefix(raw)
    if prefix is None:
        raise Unauthenticated(INVALID)
    key = await AgentKey.filter(prefix=prefix).select_related("company__parent__parent").first()
    if key is None or not hmac.compare_digest(key.key_hash, digest(raw)):
        raise Unauthenticated(INVALID)
    if key.revoked_at is not None:
        raise Unauthenticated(INVALID)
    if not organization_enabled(key.company):
        raise Forbidden("the company of this agent key is disabled")
    at = now()
    if key.last_used_at is None or at - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = at
        await AgentKey.filter(id=key.id).update(last_used_at=at)
    return key
