"""First start of a real installation: the provider's root organization and its first user,
the portal's primary role (the Service Provider Global Administrator in the seed)."""

from __future__ import annotations

from app.authz.engine import portal_for
from app.authz.matrix import load_matrix
from app.errors import BadInput, Conflict
from app.models import Organization, OrgKind, User
from app.services.actor import Actor
from app.services.audit import audited
from app.services.users import NewUser, create_user_row, normalize_email
from app.settings import get_settings

CLI_ACTOR = Actor(principal=None, client_address="cli", request_id="bootstrap")


def provider_primary_role() -> str:
    portal = portal_for(OrgKind.PROVIDER, get_settings().enterprise)
    return next(role.name for role in load_matrix().portals[portal].roles if role.primary)


async def provider_exists() -> bool:
    return await Organization.filter(kind=OrgKind.PROVIDER.value).exists()


async def bootstrap_provider(
    provider_name: str, admin_email: str, admin_name: str, password: str
) -> tuple[Organization, User]:
    """Create the provider and its primary-role user, once. A second call is a Conflict."""
    name = provider_name.strip()
    if not name:
        raise BadInput("a provider name is required", field="providerName")
    if len(name) > 200:
        raise BadInput("the provider name is longer than 200 characters", field="providerName")
    email = normalize_email(admin_email, "adminEmail")
    if await provider_exists():
        raise Conflict("a service provider already exists; bootstrap runs once")
    async with audited(CLI_ACTOR, "providerBootstrap", "Provider") as entry:
        org = await Organization.create(kind=OrgKind.PROVIDER, name=name, email=email)
        admin = await create_user_row(
            org, NewUser(email, admin_name, password), provider_primary_role(), "admin."
        )
        entry.bind(org.id, organization_id=org.id, name=name, admin=admin.email)
    return org, admin
