"""A small tenant tree with one user for every role of every portal, and their tokens.

provider "Provider"           — the five Service Provider roles (unrestricted), plus an
                                Operator and a User limited to company P1
├── reseller R1               — the five Service Provider roles
│   ├── company A1 (locations A1-Default, A1-East) — the six client roles
│   │                           (Location roles limited to A1-East)
│   └── company A2
├── reseller R2
│   └── company B1
└── company P1 (direct)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.auth.passwords import hash_password
from app.authz.engine import portal_for
from app.authz.matrix import load_matrix
from app.models import Location, Organization, OrgKind, User
from app.services.sessions import issue_session
from app.settings import get_settings

PASSWORD = "Correct-Horse-Battery-9"


def slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


@dataclass
class World:
    orgs: dict[str, Organization] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)  # key: "<org>:<role>"
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, org: str, role: str) -> str:
        return self.tokens[f"{org}:{role}"]

    def user(self, org: str, role: str) -> User:
        return self.users[f"{org}:{role}"]


_HASH: dict[str, str] = {}


def password_hash() -> str:
    if "h" not in _HASH:
        _HASH["h"] = hash_password(PASSWORD)
    return _HASH["h"]


async def add_user(
    world: World,
    org_key: str,
    role: str,
    *,
    key: str | None = None,
    companies: list[str] | None = None,
    locations: list[str] | None = None,
    token: bool = True,
) -> User:
    org = world.orgs[org_key]
    key = key or f"{org_key}:{role}"
    user = await User.create(
        email=f"{slug(key)}@example.test",
        name=key,
        role=role,
        organization=org,
        password_hash=password_hash(),
        scope_restricted=companies is not None or locations is not None,
    )
    if companies is not None:
        await user.scope_companies.add(*[world.orgs[c] for c in companies])
    if locations is not None:
        await user.scope_locations.add(*[world.locations[loc] for loc in locations])
    world.users[key] = user
    if token:
        world.tokens[key], _ = await issue_session(user)
    return user


def roles_for(kind: OrgKind) -> list[str]:
    portal = portal_for(kind, get_settings().enterprise)
    return [r.name for r in load_matrix().portals[portal].roles]


async def build_world() -> World:
    w = World()
    w.orgs["Provider"] = await Organization.create(kind=OrgKind.PROVIDER, name="Provider")
    for key, parent in (("R1", "Provider"), ("R2", "Provider")):
        w.orgs[key] = await Organization.create(
            kind=OrgKind.RESELLER, name=key, parent=w.orgs[parent]
        )
    for key, parent in (("A1", "R1"), ("A2", "R1"), ("B1", "R2"), ("P1", "Provider")):
        w.orgs[key] = await Organization.create(
            kind=OrgKind.COMPANY, name=key, parent=w.orgs[parent]
        )
        w.locations[f"{key}-Default"] = await Location.create(
            company=w.orgs[key], name="Default location", is_default=True
        )
    w.locations["A1-East"] = await Location.create(company=w.orgs["A1"], name="East")
    for org in ("Provider", "R1", "R2"):
        for role in roles_for(OrgKind.RESELLER):
            await add_user(w, org, role)
    for role in ("Service Provider Operator", "Service Provider User"):
        await add_user(w, "Provider", role, key=f"Provider:{role}:P1", companies=["P1"])
    for org in ("A1", "A2", "B1", "P1"):
        for role in roles_for(OrgKind.COMPANY):
            scoped = (
                load_matrix()
                .portals[portal_for(OrgKind.COMPANY, get_settings().enterprise)]
                .role(role)
                .scope.value
                == "locations"
            )
            await add_user(
                w, org, role, locations=[f"{org}-East"] if scoped and org == "A1" else None
            )
    return w
