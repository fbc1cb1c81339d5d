"""Authentication flows: login, logout, password change, personal API keys, the viewer.

Credential management (password change, API key creation) needs an interactive session: an API
key never mints further credentials.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from app.auth import throttle
from app.auth.authenticate import build_principal, organization_enabled
from app.auth.passwords import check_policy, dummy_hash, hash_password, verify_password
from app.auth.tokens import digest, new_api_key
from app.authz.principal import Principal
from app.db import connection_name
from app.errors import BadInput, Forbidden, NotFound, TenantryError, Unauthenticated
from app.models import ApiKey, Organization, SessionToken, User
from app.services.actor import Actor
from app.services.audit import audited
from app.services.sessions import issue_session, revoke_user_sessions
from app.settings import get_settings

BAD_CREDENTIALS = "wrong e-mail address or password"
USER_DISABLED = "this account is disabled"
ORGANIZATION_DISABLED = "the organization of this account is disabled"
INTERACTIVE_ONLY = "API keys cannot manage credentials"
API_KEY_NAME_MAX = 100


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: datetime
    user: User


def now() -> datetime:
    return datetime.now(UTC)


async def _verify(password_hash: str | None, password: str) -> bool:
    """Always one argon2id verification, off the event loop, whether the account exists or not."""
    if password_hash is None:
        password_hash = await asyncio.to_thread(dummy_hash)
        await asyncio.to_thread(verify_password, password_hash, password)
        return False
    return await asyncio.to_thread(verify_password, password_hash, password)


async def _start_session(user: User, client_address: str) -> Session:
    token, row = await issue_session(user, client_address)
    return Session(token=token, expires_at=row.expires_at, user=user)


async def login(actor: Actor, email: str, password: str) -> Session:
    email = email.strip().lower()
    limits = throttle.limits_for(email, actor.client_address)
    user = await User.filter(email=email).select_related("organization__parent__parent").first()
    org_id = user.organization_id if user else None  # type: ignore[attr-defined]
    failure: TenantryError | None = None
    principal: Principal | None = None
    try:
        await throttle.check(limits)
    except TenantryError as exc:
        failure = exc
    if failure is None:
        verified = await _verify(user.password_hash if user else None, password)
        if user is None or not verified:
            await throttle.record_failure(limits)
            failure = Unauthenticated(BAD_CREDENTIALS)
        elif not user.enabled:
            failure = Unauthenticated(USER_DISABLED)
        elif not organization_enabled(user.organization):
            failure = Unauthenticated(ORGANIZATION_DISABLED)
        else:
            try:
                principal = await build_principal(user)
            except TenantryError as exc:
                failure = exc
    who = Actor(principal, actor.client_address, actor.request_id)
    try:
        async with audited(who, "login", "User", user.id if user else "", org_id) as entry:
            entry.details["email"] = email
            if failure is not None:
                raise failure
            assert user is not None
            session = await _start_session(user, actor.client_address)
            user.last_login_at = now()
            await User.filter(id=user.id).update(last_login_at=user.last_login_at)
    except TenantryError:
        if failure is not None:  # audited: the suspicious-login alarms of the user's organization
            from app.alarms.evaluation import request_evaluation

            await request_evaluation(org_id)
        raise
    await throttle.reset(throttle.account_key(email))
    return session


async def logout(actor: Actor) -> bool:
    p = actor.p
    if p.auth_method != "session":
        raise BadInput("revoke API keys with apiKeyRevoke")
    async with audited(actor, "logout", "User", p.user_id, p.organization_id):
        await SessionToken.filter(id=p.credential_id, revoked_at=None).update(revoked_at=now())
    return True


def _interactive(p: Principal) -> None:
    if p.auth_method != "session":
        raise Forbidden(INTERACTIVE_ONLY)


async def change_password(actor: Actor, current_password: str, new_password: str) -> Session:
    p = actor.p
    _interactive(p)
    user = await User.get(id=p.user_id)
    # The current password is a guessable secret too: the account's login counter guards it.
    limits = [throttle.account_limit(user.email)]
    await throttle.check(limits)
    if not await _verify(user.password_hash, current_password):
        await throttle.record_failure(limits)
        wrong = BadInput("the current password is wrong", field="currentPassword")
        async with audited(actor, "passwordChange", "User", user.id, p.organization_id):
            raise wrong  # leaves a FAILURE entry
    check_policy(new_password, user.email, field="newPassword")
    if new_password == current_password:
        raise BadInput("the new password must differ from the current one", field="newPassword")
    new_hash = await asyncio.to_thread(hash_password, new_password)
    async with audited(actor, "passwordChange", "User", user.id, p.organization_id) as entry:
        user.password_hash = new_hash
        user.password_changed_at = now()
        await User.filter(id=user.id).update(
            password_hash=new_hash, password_changed_at=user.password_changed_at
        )
        # A password change ends every session of the account, this one included.
        entry.details["sessionsRevoked"] = await revoke_user_sessions(user.id)
        session = await _start_session(user, actor.client_address)
    return session


async def create_api_key(actor: Actor, name: str, expires_in_days: int) -> tuple[ApiKey, str]:
    p = actor.p
    _interactive(p)
    name = name.strip()
    if not name:
        raise BadInput("a name is required", field="name")
    if len(name) > API_KEY_NAME_MAX:
        raise BadInput(f"the name is longer than {API_KEY_NAME_MAX} characters", field="name")
    max_days = get_settings().api_key_max_days
    if not 1 <= expires_in_days <= max_days:
        raise BadInput(f"an API key lives 1 to {max_days} days", field="expiresInDays")
    async with audited(actor, "apiKeyCreate", "ApiKey", organization_id=p.organization_id) as entry:
        for _ in range(3):
            prefix, secret = new_api_key()
            try:
                async with in_transaction(connection_name()):  # a savepoint
                    key = await ApiKey.create(
                        name=name,
                        prefix=prefix,
                        key_hash=digest(secret),
                        user_id=p.user_id,
                        expires_at=now() + timedelta(days=expires_in_days),
                    )
                break
            except IntegrityError:  # a prefix collision: draw again
                continue
        else:  # pragma: no cover - 48 random bits colliding three times
            raise TenantryError("could not draw a unique API key prefix")
        entry.bind(key.id, name=name, prefix=prefix, expiresInDays=expires_in_days)
    return key, secret


async def revoke_api_key(actor: Actor, key_id: int) -> ApiKey:
    p = actor.p
    key = await ApiKey.filter(id=key_id, user_id=p.user_id).first()
    if key is None:
        raise NotFound("API key")
    async with audited(actor, "apiKeyRevoke", "ApiKey", key.id, p.organization_id) as entry:
        if key.revoked_at is None:
            key.revoked_at = now()
            await ApiKey.filter(id=key.id, revoked_at=None).update(revoked_at=key.revoked_at)
        entry.details["prefix"] = key.prefix
    return key


async def own_api_keys(p: Principal) -> list[ApiKey]:
    return await ApiKey.filter(user_id=p.user_id).order_by("id")


@dataclass(frozen=True)
class ViewerRows:
    user: User
    organization: Organization


async def viewer_rows(p: Principal) -> ViewerRows:
    """The viewer's own user and organization: one query, no row scope (it is the caller)."""
    user = await User.filter(id=p.user_id).select_related("organization").first()
    if user is None:
        raise Unauthenticated("the credential is invalid, expired or revoked")
    return ViewerRows(user=user, organization=user.organization)
