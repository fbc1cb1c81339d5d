"""Who the demo's seeding acts as: a staff organization's primary-role user, so demo objects are
made through the services (checked, audited) as a real user would make them."""

from __future__ import annotations

from app.auth.authenticate import build_principal
from app.bootstrap import provider_primary_role
from app.models import OrgKind, User
from app.services.actor import Actor

DEMO_WORKER = "demo-seed"


async def staff_actor(organization_id: int | None = None) -> Actor | None:
    """The primary-role user of the organization (default: the provider) as the services'
    actor; None when there is none."""
    users = User.filter(role=provider_primary_role())
    if organization_id is None:
        users = users.filter(organization__kind=OrgKind.PROVIDER.value)
    else:
        users = users.filter(organization_id=organization_id)
    user = await users.select_related("organization__parent").order_by("id").first()
    if user is None:
        return None
    return Actor(await build_principal(user), client_address="demo", request_id=DEMO_WORKER)
