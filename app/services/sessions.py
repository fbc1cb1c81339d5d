"""Session tokens: issue and revoke. Only the token's hash is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.auth.tokens import digest, new_session_token
from app.models import SessionToken, User
from app.settings import get_settings


async def issue_session(user: User, client_address: str = "") -> tuple[str, SessionToken]:
    token = new_session_token()
    expires = datetime.now(UTC) + timedelta(seconds=get_settings().session_ttl_seconds)
    row = await SessionToken.create(
        token_hash=digest(token), user=user, expires_at=expires, client_address=client_address
    )
    return token, row


async def revoke_user_sessions(user_id: int) -> int:
    return await SessionToken.filter(user_id=user_id, revoked_at=None).update(
        revoked_at=datetime.now(UTC)
    )
