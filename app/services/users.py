"""Portal users: creation rules shared by registration and user management."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from app.auth.passwords import check_policy, hash_password
from app.authz.principal import Target
from app.errors import BadInput, Conflict
from app.models import Organization, User

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class NewUser:
    email: str
    name: str
    password: str


def normalize_email(email: str, field: str = "email") -> str:
    email = email.strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise BadInput("not a valid e-mail address", field=field)
    return email


async def create_user_row(
    org: Organization,
    new: NewUser,
    role: str,
    field_prefix: str = "",
    scope_restricted: bool = False,
) -> User:
    email = normalize_email(new.email, f"{field_prefix}email")
    name = new.name.strip()
    if not name:
        raise BadInput("a name is required", field=f"{field_prefix}name")
    check_policy(new.password, email, f"{field_prefix}password")
    if await User.filter(email=email).exists():
        raise Conflict(
            "a user with this e-mail address already exists", field=f"{field_prefix}email"
        )
    password_hash = await asyncio.to_thread(hash_password, new.password)
    return await User.create(
        email=email,
        name=name,
        role=role,
        organization=org,
        password_hash=password_hash,
        scope_restricted=scope_restricted,
    )


def user_target(user: User, org: Organization, primary: bool) -> Target:
    return Target(
        kind="user",
        organization_id=org.id,
        organization_kind=org.kind,
        user_id=user.id,
        role=user.role,
        primary=primary,
    )
