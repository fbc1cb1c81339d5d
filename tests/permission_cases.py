"""A generic harness for permission tests: principals built from the matrix, and (below) the
table of GraphQL operations whose expected outcome is computed from the engine's data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.auth.authenticate import principal_for_bearer
from app.authz import engine
from app.authz.capabilities import AUDIT_LOG, COMPANIES, LOCATIONS, RESELLERS, USERS, Capability
from app.authz.engine import grants_for, role_within
from app.authz.matrix import Action, Portal, Role, RoleScope, load_matrix
from app.authz.principal import Principal, Target
from app.graphql.ids import to_global_id
from app.models import Location, Organization, OrgKind, User
from tests.factories import World


def make_principal(
    portal: Portal,
    role: str,
    *,
    user_id: int = 1,
    org: int = 1,
    org_kind: OrgKind | None = None,
    parent: int | None = None,
    company_ids: frozenset[int] | set[int] | None = None,
    location_ids: frozenset[int] | set[int] | None = None,
) -> Principal:
    """A principal as `build_principal` makes one, without a database."""
    r = load_matrix().role(portal, role)
    if org_kind is None:
        org_kind = OrgKind.PROVIDER if portal is Portal.RESELLER else OrgKind.COMPANY
    return Principal(
        user_id=user_id,
        email=f"user{user_id}@example.test",
        name=f"user {user_id}",
        role=r,
        organization_id=org,
        organization_kind=org_kind,
        parent_organization_id=parent,
        grants=grants_for(r),
        company_ids=frozenset(company_ids) if company_ids is not None else None,
        location_ids=frozenset(location_ids) if location_ids is not None else None,
    )


# --- who: every principal of the `world` fixture -------------------------------------------

STAFF_ORGS = ("Provider", "R1", "R2")
COMPANY_ORGS = ("A1", "A2", "B1", "P1")
EDITIONS = ("service_provider", "enterprise")


@dataclass(frozen=True)
class Subject:
    """One user of the world: `<org>:<role>` (plus `:P1` for the restricted provider staff)."""

    edition: str
    org: str
    role: str
    suffix: str = ""

    @property
    def key(self) -> str:
        return f"{self.org}:{self.role}{self.suffix}"

    @property
    def portal(self) -> Portal:
        if self.org in STAFF_ORGS:
            return Portal.RESELLER
        return Portal.ENTERPRISE if self.edition == "enterprise" else Portal.CLIENT

    @property
    def id(self) -> str:
        edition = "" if self.edition == "service_provider" else "enterprise:"
        return f"{edition}{self.portal.value}/{self.role}@{self.org}{self.suffix}"


def subjects(edition: str) -> list[Subject]:
    """The world's users, from the matrix's roles (tests.factories builds the same set)."""
    m = load_matrix()
    company_portal = Portal.ENTERPRISE if edition == "enterprise" else Portal.CLIENT
    staff = m.portals[Portal.RESELLER].roles
    out = [Subject(edition, org, r.name) for org in STAFF_ORGS for r in staff]
    out += [
        Subject(edition, "Provider", r.name, ":P1") for r in staff if r.scope is RoleScope.COMPANIES
    ]
    out += [
        Subject(edition, org, r.name)
        for org in COMPANY_ORGS
        for r in m.portals[company_portal].roles
    ]
    return out


# --- where: the objects in the principal's scope --------------------------------------------

NEW_PASSWORD = "Another-Long-Secret-42"
SPARE = "Spare"  # a removable location added to every company


def gid(type_name: str, pk: int) -> str:
    return to_global_id(type_name, pk)


ORG_TYPE = {
    OrgKind.PROVIDER: "ServiceProvider",
    OrgKind.RESELLER: "Reseller",
    OrgKind.COMPANY: "Company",
}


def org_gid(org: Organization) -> str:
    return gid(ORG_TYPE[org.kind], org.id)


def _actions(role: Role) -> int:
    return sum(len(c.actions) for c in grants_for(role).values())


@dataclass
class Scene:
    """The world seen by one principal: which objects are in its scope, chosen from the tree
    (never from role names), and a counter for unique names."""

    world: World
    subject: Subject
    principal: Principal
    enterprise: bool
    serial: list[int] = field(default_factory=lambda: [0])

    def unique(self, stem: str) -> str:
        self.serial[0] += 1
        return f"{stem}{self.serial[0]}"

    @property
    def token(self) -> str:
        return self.world.tokens[self.subject.key]

    @property
    def own_org(self) -> Organization:
        return self.world.orgs[self.subject.org]

    def in_tree(self, org: Organization) -> bool:
        p = self.principal
        if p.company_ids is not None:
            return org.id in p.company_ids
        if p.organization_kind is OrgKind.PROVIDER:
            return True
        if p.organization_kind is OrgKind.RESELLER:
            return org.id == p.organization_id or org.parent_id == p.organization_id  # type: ignore[attr-defined]
        return org.id == p.organization_id

    def companies_in_scope(self) -> list[Organization]:
        return [
            o for o in self.world.orgs.values() if o.kind is OrgKind.COMPANY and self.in_tree(o)
        ]

    @property
    def company(self) -> Organization:
        """The company the cases act on: the first one in scope (own company for its users)."""
        return self.companies_in_scope()[0]

    def reseller_in_scope(self) -> Organization | None:
        return next(
            (o for o in self.world.orgs.values() if o.kind is OrgKind.RESELLER and self.in_tree(o)),
            None,
        )

    @property
    def reseller(self) -> Organization:
        """A reseller in scope, or (to ask for one out of scope) the first reseller."""
        return self.reseller_in_scope() or next(
            o for o in self.world.orgs.values() if o.kind is OrgKind.RESELLER
        )

    def _location(self, default: bool) -> Location:
        p = self.principal
        if p.location_ids is not None:
            return next(loc for loc in self.world.locations.values() if loc.id in p.location_ids)
        return next(
            loc
            for loc in self.world.locations.values()
            if loc.company_id == self.company.id  # type: ignore[attr-defined]
            and (loc.is_default if default else loc.name == SPARE)
        )

    @property
    def location(self) -> Location:
        """A location in scope (the first of the principal's locations, else the default)."""
        return self._location(default=True)

    @property
    def removable_location(self) -> Location:
        return self._location(default=False)

    def company_portal_role(self, name: str) -> Role:
        portal = Portal.ENTERPRISE if self.enterprise else Portal.CLIENT
        return load_matrix().role(portal, name)

    def role_of(self, user: User) -> Role:
        org = next(o for o in self.world.orgs.values() if o.id == user.organization_id)  # type: ignore[attr-defined]
        portal = (
            Portal.RESELLER
            if org.kind is not OrgKind.COMPANY
            else (Portal.ENTERPRISE if self.enterprise else Portal.CLIENT)
        )
        return load_matrix().role(portal, user.role)

    @property
    def managed_user(self) -> User:
        """A user of `company` the principal may manage if its cells allow it: not itself, not
        the primary user, limited within the principal's locations if it is limited, and (a
        peer of the same portal) with a role within its own; the least privileged one."""
        p = self.principal
        candidates = []
        for key, user in self.world.users.items():
            if user.organization_id != self.company.id or user.id == p.user_id:  # type: ignore[attr-defined]
                continue
            role = self.role_of(user)
            if role.primary:
                continue
            if p.location_ids is not None and not (
                user.scope_restricted
                and self.scope_locations.get(key, frozenset()) <= p.location_ids
            ):
                continue
            if role.portal is p.portal and not role_within(role, p):
                continue
            candidates.append((_actions(role), user.id, user))
        if candidates:
            return min(candidates, key=lambda c: c[:2])[2]
        # Nobody manageable: any other user of the company (the field guard refuses first;
        # `expected` checks that such a principal has no right to manage users).
        return next(
            u
            for u in self.world.users.values()
            if u.organization_id == self.company.id and u.id != p.user_id  # type: ignore[attr-defined]
        )

    @property
    def has_manageable_user(self) -> bool:
        user = self.managed_user
        role = self.role_of(user)
        p = self.principal
        return (
            not role.primary
            and (p.location_ids is None or user.scope_restricted)
            and not (role.portal is p.portal and not role_within(role, p))
        )

    scope_locations: dict[str, frozenset[int]] = field(default_factory=dict)

    def user_target(self, user: User) -> Target:
        org = next(o for o in self.world.orgs.values() if o.id == user.organization_id)  # type: ignore[attr-defined]
        role = self.role_of(user)
        return Target(
            kind="user",
            organization_id=org.id,
            organization_kind=org.kind,
            user_id=user.id,
            role=role.name,
            primary=role.primary,
        )

    def new_user_role(self, org: Organization) -> tuple[Role, list[str] | None]:
        """The least privileged non-primary role for a new user of `org`, with location ids
        when the principal is limited to locations and the role is too."""
        portal = (
            Portal.RESELLER
            if org.kind is not OrgKind.COMPANY
            else (Portal.ENTERPRISE if self.enterprise else Portal.CLIENT)
        )
        roles = [r for r in load_matrix().portals[portal].roles if not r.primary]
        p = self.principal

        def assignable(r: Role) -> bool:
            return engine.may_assign_role(p, r, org.kind, self.enterprise) is None

        best = min(roles, key=lambda r: (not assignable(r), _actions(r)))
        location_ids = None
        if best.scope is RoleScope.LOCATIONS and p.location_ids is not None:
            location_ids = [gid("Location", i) for i in sorted(p.location_ids)]
        return best, location_ids

    def assignment_refusal(self, org: Organization) -> str | None:
        role, location_ids = self.new_user_role(org)
        p = self.principal
        reason = engine.may_assign_role(p, role, org.kind, self.enterprise)
        if reason is None and role.portal is p.portal:
            ids = frozenset(p.location_ids) if location_ids is not None and p.location_ids else None
            reason = engine.may_assign_scope(p, role, None, ids)
        return reason


async def build_scene(world: World, subject: Subject, enterprise: bool) -> Scene:
    assert subject.key in world.users, f"the world has no user {subject.key}"
    # Every company gets a location nobody is limited to, so removing it is possible.
    for key, org in list(world.orgs.items()):
        if org.kind is OrgKind.COMPANY and f"{key}-{SPARE}" not in world.locations:
            world.locations[f"{key}-{SPARE}"] = await Location.create(company=org, name=SPARE)
    principal = await principal_for_bearer(world.tokens[subject.key])
    scene = Scene(world, subject, principal, enterprise)
    for key, user in world.users.items():
        if user.scope_restricted:
            ids = await user.scope_locations.all().values_list("id", flat=True)
            scene.scope_locations[key] = frozenset(ids)
    return scene


# --- what: the operations, once -----------------------------------------------------------

CAPABILITIES: dict[str, Capability] = {
    "RESELLERS": RESELLERS,
    "COMPANIES": COMPANIES,
    "LOCATIONS": LOCATIONS,
    "USERS": USERS,
    "AUDIT_LOG": AUDIT_LOG,
}


def _always(s: Scene) -> bool:
    return True


def _nothing(s: Scene) -> None:
    return None


def _own_org_refusal(org: Callable[[Scene], Organization]) -> Callable[[Scene], str | None]:
    # Nobody disables or removes the organization they belong to (whatever their cell says).
    def check(s: Scene) -> str | None:
        return "own organization" if org(s).id == s.principal.organization_id else None

    return check


def _org_target(org: Organization) -> Target:
    kind = "reseller" if org.kind is OrgKind.RESELLER else "company"
    return Target(kind=kind, organization_id=org.id, organization_kind=org.kind)


@dataclass(frozen=True)
class Op:
    field: str
    capability: str
    action: Action
    document: str
    variables: Callable[[Scene], dict[str, Any]]
    # The object the engine decides on (object level); None: field level only.
    target: Callable[[Scene], Target | None] = _nothing
    # False: no object of this kind in the principal's scope → NOT_FOUND.
    in_scope: Callable[[Scene], bool] = _always
    # A reason to refuse that is not the matrix (delegation limits) → FORBIDDEN.
    refusal: Callable[[Scene], str | None] = _nothing
    # Allowed, but not applicable to this principal's situation → that error code.
    obstacle: Callable[[Scene], str | None] = _nothing
    applies: Callable[[Scene], bool] = _always
    variant: str = ""
    on_user: bool = False  # acts on `Scene.managed_user`

    def case_id(self, s: Scene) -> str:
        variant = f"@{self.variant}" if self.variant else ""
        return f"{s.subject.id}/{self.capability}/{self.action.value}/{self.field}{variant}"

    def expected(self, s: Scene) -> str | None:
        """None: allowed (data, no error); otherwise the one error code expected."""
        capability = CAPABILITIES[self.capability]
        p = s.principal
        if not engine.allows(p, capability, self.action):
            return "FORBIDDEN"
        if not self.in_scope(s):
            return "NOT_FOUND"
        if self.on_user:
            assert s.has_manageable_user, f"the world has no user {s.subject.key} may manage"
        target = self.target(s)
        if target is not None and not engine.can(p, capability, self.action, target):
            return "FORBIDDEN"
        if self.refusal(s) is not None:
            return "FORBIDDEN"
        return self.obstacle(s)


def _new_user(s: Scene, stem: str) -> dict[str, str]:
    name = s.unique(stem)
    return {"email": f"{name}@example.test", "name": name, "password": NEW_PASSWORD}


def _company(s: Scene) -> Organization:
    return s.company


def _reseller(s: Scene) -> Organization:
    return s.reseller


def _user_create_vars(org: Callable[[Scene], Organization]) -> Callable[[Scene], dict[str, Any]]:
    def build(s: Scene) -> dict[str, Any]:
        role, location_ids = s.new_user_role(org(s))
        data = {"organizationId": org_gid(org(s)), "role": role.name, **_new_user(s, "newuser")}
        if location_ids is not None:
            data["locationIds"] = location_ids
        return {"input": data}

    return build


def _user_create_target(org: Callable[[Scene], Organization]) -> Callable[[Scene], Target]:
    def build(s: Scene) -> Target:
        o = org(s)
        return Target(kind="user", organization_id=o.id, organization_kind=o.kind)

    return build


def _own(s: Scene) -> Organization:
    return s.own_org


# In this order: reads, creations, updates, disabling, then removals from the leaves up, so
# that each operation still finds its object (one world per principal).
OPERATIONS: tuple[Op, ...] = (
    Op(
        "resellers",
        "RESELLERS",
        Action.READ,
        "{ resellers(first: 50) { nodes { id } } }",
        lambda s: {},
    ),
    Op(
        "reseller",
        "RESELLERS",
        Action.READ,
        "query($id: ID!) { reseller(id: $id) { id } }",
        lambda s: {"id": org_gid(s.reseller)},
        in_scope=lambda s: s.reseller_in_scope() is not None,
    ),
    Op(
        "companies",
        "COMPANIES",
        Action.READ,
        "{ companies(first: 50) { nodes { id } } }",
        lambda s: {},
    ),
    Op(
        "company",
        "COMPANIES",
        Action.READ,
        "query($id: ID!) { company(id: $id) { id } }",
        lambda s: {"id": org_gid(s.company)},
    ),
    Op(
        "locations",
        "LOCATIONS",
        Action.READ,
        "{ locations(first: 50) { nodes { id } } }",
        lambda s: {},
    ),
    Op(
        "location",
        "LOCATIONS",
        Action.READ,
        "query($id: ID!) { location(id: $id) { id } }",
        lambda s: {"id": gid("Location", s.location.id)},
    ),
    Op("users", "USERS", Action.READ, "{ users(first: 50) { nodes { id } } }", lambda s: {}),
    Op(
        "user",
        "USERS",
        Action.READ,
        "query($id: ID!) { user(id: $id) { id } }",
        lambda s: {"id": gid("User", s.managed_user.id)},
        on_user=True,
    ),
    Op(
        "auditLog",
        "AUDIT_LOG",
        Action.READ,
        "{ auditLog(first: 5) { nodes { id } } }",
        lambda s: {},
    ),
    Op(
        "resellerCreate",
        "RESELLERS",
        Action.CREATE,
        "mutation($input: ResellerCreateInput!) { resellerCreate(input: $input) { id } }",
        lambda s: {"input": {"name": s.unique("Reseller "), "admin": _new_user(s, "admin")}},
    ),
    Op(
        "companyCreate",
        "COMPANIES",
        Action.CREATE,
        "mutation($input: CompanyCreateInput!) { companyCreate(input: $input) { id } }",
        lambda s: {"input": {"name": s.unique("Company "), "owner": _new_user(s, "owner")}},
    ),
    Op(
        "locationCreate",
        "LOCATIONS",
        Action.CREATE,
        "mutation($input: LocationCreateInput!) { locationCreate(input: $input) { id } }",
        lambda s: {"input": {"companyId": org_gid(s.company), "name": s.unique("Site ")}},
        target=lambda s: Target(kind="location", organization_id=s.company.id),
    ),
    Op(
        "userCreate",
        "USERS",
        Action.CREATE,
        "mutation($input: UserCreateInput!) { userCreate(input: $input) { id } }",
        _user_create_vars(_company),
        target=_user_create_target(_company),
        refusal=lambda s: s.assignment_refusal(s.company),
    ),
    Op(
        "userCreate",
        "USERS",
        Action.CREATE,
        "mutation($input: UserCreateInput!) { userCreate(input: $input) { id } }",
        _user_create_vars(_own),
        target=_user_create_target(_own),
        refusal=lambda s: s.assignment_refusal(s.own_org),
        in_scope=lambda s: s.in_tree(s.own_org),
        applies=lambda s: s.principal.organization_kind is not OrgKind.COMPANY,
        variant="own-org",
    ),
    Op(
        "resellerUpdate",
        "RESELLERS",
        Action.UPDATE,
        "mutation($input: OrganizationUpdateInput!) { resellerUpdate(input: $input) { id } }",
        lambda s: {"input": {"id": org_gid(s.reseller), "name": s.unique("Renamed reseller ")}},
        target=lambda s: _org_target(s.reseller),
        in_scope=lambda s: s.reseller_in_scope() is not None,
    ),
    Op(
        "companyUpdate",
        "COMPANIES",
        Action.UPDATE,
        "mutation($input: OrganizationUpdateInput!) { companyUpdate(input: $input) { id } }",
        lambda s: {"input": {"id": org_gid(s.company), "name": s.unique("Renamed company ")}},
        target=lambda s: _org_target(s.company),
    ),
    Op(
        "locationUpdate",
        "LOCATIONS",
        Action.UPDATE,
        "mutation($input: LocationUpdateInput!) { locationUpdate(input: $input) { id } }",
        lambda s: {
            "input": {"id": gid("Location", s.location.id), "name": s.unique("Renamed site ")}
        },
        target=lambda s: Target(kind="location", organization_id=s.location.company_id),  # type: ignore[attr-defined]
    ),
    Op(
        "userUpdate",
        "USERS",
        Action.UPDATE,
        "mutation($input: UserUpdateInput!) { userUpdate(input: $input) { id } }",
        lambda s: {
            "input": {"id": gid("User", s.managed_user.id), "name": s.unique("Renamed user ")}
        },
        target=lambda s: s.user_target(s.managed_user),
        on_user=True,
    ),
    Op(
        "companyDisable",
        "COMPANIES",
        Action.UPDATE,
        "mutation($id: ID!) { companyDisable(id: $id) { id } }",
        lambda s: {"id": org_gid(s.company)},
        target=lambda s: _org_target(s.company),
        refusal=_own_org_refusal(_company),
    ),
    Op(
        "userDelete",
        "USERS",
        Action.DELETE,
        "mutation($id: ID!) { userDelete(id: $id) { deletedId } }",
        lambda s: {"id": gid("User", s.managed_user.id)},
        target=lambda s: s.user_target(s.managed_user),
        on_user=True,
    ),
    Op(
        "locationDelete",
        "LOCATIONS",
        Action.DELETE,
        "mutation($id: ID!) { locationDelete(id: $id) { deletedId } }",
        lambda s: {"id": gid("Location", s.removable_location.id)},
        target=lambda s: Target(kind="location", organization_id=s.removable_location.company_id),  # type: ignore[attr-defined]
    ),
    Op(
        "companyDelete",
        "COMPANIES",
        Action.DELETE,
        "mutation($id: ID!) { companyDelete(id: $id) { deletedId } }",
        lambda s: {"id": org_gid(s.company)},
        target=lambda s: _org_target(s.company),
        refusal=_own_org_refusal(_company),
    ),
    Op(
        "resellerDelete",
        "RESELLERS",
        Action.DELETE,
        "mutation($id: ID!) { resellerDelete(id: $id) { deletedId } }",
        lambda s: {"id": org_gid(s.reseller)},
        target=lambda s: _org_target(s.reseller),
        in_scope=lambda s: s.reseller_in_scope() is not None,
        refusal=_own_org_refusal(_reseller),
    ),
)


def outcome(body: dict[str, Any], field_name: str) -> str | None:
    """None when the field answered without error; else the single error code."""
    errors = body.get("errors") or []
    data = (body.get("data") or {}).get(field_name)
    if not errors:
        assert data is not None, f"no error and no data: {body}"
        return None
    codes = [e.get("extensions", {}).get("code") for e in errors]
    assert len(codes) == 1, f"expected one error: {body}"
    assert data is None, f"an error and data: {body}"
    return codes[0]


async def run_cases(
    scene: Scene, gql: Callable[..., Any], subtests: Any
) -> dict[str, tuple[str | None, str | None]]:
    """Runs every operation for the scene's principal, each as a subtest; returns
    case id → (expected, observed)."""
    results: dict[str, tuple[str | None, str | None]] = {}
    for op in OPERATIONS:
        if not op.applies(scene):
            continue
        case = op.case_id(scene)
        expected = op.expected(scene)
        variables = op.variables(scene)
        body = await gql(op.document, variables, token=scene.token)
        with subtests.test(msg=case):
            observed = outcome(body, op.field)
            results[case] = (expected, observed)
            assert observed == expected, f"{case}: expected {expected or 'OK'}, got {body}"
    return results
