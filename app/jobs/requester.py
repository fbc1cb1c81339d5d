"""The principal of the user who asked for a job, rebuilt when the job runs: a job works with
the rights its requester has *now*, so a user disabled or stripped of the right since asking
gets nothing more out of a queued job."""

from __future__ import annotations

from app.auth.authenticate import build_principal, organization_enabled
from app.authz.capabilities import Capability
from app.authz.engine import allows
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import TenantryError
from app.jobs.context import JobFailed
from app.models import User


async def requester_principal(
    user_id: int | None, capability: Capability, action: Action, what: str
) -> Principal:
    """The requester's principal; JobFailed when the user is gone, disabled, or may no longer
    `action` on `capability` (`what` words the refusal: "read the audit log")."""
    user = (
        await User.filter(id=user_id).select_related("organization__parent__parent").first()
        if user_id is not None
        else None
    )
    if user is None or not user.enabled or not organization_enabled(user.organization):
        raise JobFailed("the requesting user no longer exists or is disabled")
    try:
        principal = await build_principal(user, "job")
    except TenantryError as exc:
        raise JobFailed(exc.message) from None
    if not allows(principal, capability, action):
        raise JobFailed(f"the requesting user may no longer {what}")
    return principal
