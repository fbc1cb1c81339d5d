"""Every principal of the world, every query field, node type and mutation of the managed
workloads API, in both editions: the API answers what the matrix and the tree say.

Expectations are computed, never written per role: FORBIDDEN when the field's capability (for
the per-kind families of backup jobs and servers: any capability of the family) does not allow
the action; NOT_FOUND when the object is not visible to the principal — computed here in
Python from the tree (company in the principal's tree, its locations when limited to some, its
own Subtenant computers when its scope is own computers) and, for jobs and servers, from
whether the object's kind is readable (rows of other kinds are filtered out like rows of other
tenants); FORBIDDEN when `engine.can` refuses the object; else success. Lists return exactly
the visible set.

One world and fleet per principal (tests/workload_fleet.py), one subtest per operation, ids
like "CLIENT/Company Owner@A1/backupJobUpdate@AGENT-assigned". Operations run in order:
reads, creations, changes, removals; each state-changing operation first puts its object in
the state it needs (`prepare`), so that the table's answer is the matrix's, not an accident of
an earlier case.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.authz import capabilities as caps
from app.authz import engine
from app.authz.capabilities import Capability
from app.authz.matrix import Action, Portal, RoleScope, load_matrix
from app.authz.principal import Principal, Target
from app.graphql.ids import to_global_id
from app.models import (
    AgentKey,
    BackupAgent,
    BackupJob,
    BackupJobKind,
    BackupJobSession,
    BackupReport,
    BackupServer,
    DiscoveryRule,
    FileRestoreRequest,
    JobRunState,
    LicenseUsage,
    ManagedComputer,
    Organization,
    OrgKind,
    Plugin,
    RestorePoint,
    RestoreState,
    ServerKind,
    SessionResult,
    VeeamOneRecord,
)
from tests.factories import World, build_world
from tests.permission_cases import (
    EDITIONS,
    ORG_TYPE,
    Scene,
    Subject,
    build_scene,
    make_principal,
    outcome,
    subjects,
)
from tests.workload_fleet import NOW, Fleet, add_operations, build_fleet

MONTH = NOW.date().replace(day=1).isoformat()
JOB_PAIRS: tuple[tuple[str, bool], ...] = (
    *((kind, False) for kind in caps.JOB_FUNCTIONALITY),
    (BackupJobKind.AGENT.value, True),
)
SERVER_KINDS = tuple(k.value for k in ServerKind)
JOBS = tuple(caps.BACKUP_JOBS.values())
JOB_SETTINGS = tuple(caps.BACKUP_JOB_SETTINGS.values())
SERVERS = tuple(caps.SERVER_CAPABILITIES.values())


# --- the objects, as facts read once from the database -----------------------------------


@dataclass(frozen=True)
class Obj:
    type: str  # the GraphQL type name
    pk: int
    company_id: int
    location_id: int | None = None
    subtenant_id: int | None = None  # the Subtenant account its backups go to
    kind: str | None = None  # servers and jobs (sessions: their job's)
    assigned: bool = False  # jobs (sessions: their job's)
    requested_by: int | None = None  # reports
    computer_id: int | None = None  # agents, restore points, file restores

    @property
    def gid(self) -> str:
        return to_global_id(self.type, self.pk)


async def inventory(world: World) -> dict[str, list[Obj]]:
    """Every workload object of the world, by GraphQL type, in id order."""
    inv: dict[str, list[Obj]] = {}
    computers = {
        r["id"]: Obj(
            "ManagedComputer", r["id"], r["company_id"], r["location_id"], r["subtenant_id"]
        )
        for r in await ManagedComputer.all()
        .order_by("id")
        .values("id", "company_id", "location_id", "subtenant_id")
    }
    inv["ManagedComputer"] = list(computers.values())

    def under(type_name: str, pk: int, computer_id: int) -> Obj:
        c = computers[computer_id]
        return Obj(type_name, pk, c.company_id, c.location_id, c.subtenant_id, computer_id=c.pk)

    inv["BackupAgent"] = [
        under("BackupAgent", pk, cid)
        for pk, cid in await BackupAgent.all().order_by("id").values_list("id", "computer_id")
    ]
    inv["RestorePoint"] = [
        under("RestorePoint", pk, cid)
        for pk, cid in await RestorePoint.all().order_by("id").values_list("id", "computer_id")
    ]
    inv["FileRestoreRequest"] = [
        under("FileRestoreRequest", pk, cid)
        for pk, cid in await FileRestoreRequest.all()
        .order_by("id")
        .values_list("id", "computer_id")
    ]
    inv["BackupServer"] = [
        Obj("BackupServer", pk, co, loc, kind=str(kind))
        for pk, co, loc, kind in await BackupServer.all()
        .order_by("id")
        .values_list("id", "company_id", "location_id", "kind")
    ]
    jobs = {
        r[0]: Obj("BackupJob", r[0], r[1], r[2], r[3], kind=str(r[4]), assigned=bool(r[5]))
        for r in await BackupJob.all()
        .order_by("id")
        .values_list(
            "id", "company_id", "location_id", "target_subtenant_id", "kind", "assigned_by_provider"
        )
    }
    inv["BackupJob"] = list(jobs.values())
    inv["BackupJobSession"] = [
        Obj("BackupJobSession", pk, co, loc, sub, jobs[job].kind, jobs[job].assigned)
        for pk, co, loc, sub, job in await BackupJobSession.all()
        .order_by("id")
        .values_list("id", "company_id", "location_id", "subtenant_id", "job_id")
    ]
    for model, type_name in ((AgentKey, "AgentKey"), (DiscoveryRule, "DiscoveryRule")):
        rows = await model.all().order_by("id").values_list("id", "company_id", "location_id")
        inv[type_name] = [Obj(type_name, pk, co, loc) for pk, co, loc in rows]
    inv["VeeamOneRecord"] = [
        Obj("VeeamOneRecord", pk, co, loc)
        for pk, co, loc in await VeeamOneRecord.all()
        .order_by("id")
        .values_list("id", "company_id", "location_id")
    ]
    inv["BackupReport"] = [
        Obj("BackupReport", pk, co, requested_by=by)
        for pk, co, by in await BackupReport.all()
        .order_by("id")
        .values_list("id", "company_id", "requested_by_id")
    ]
    inv["LicenseUsage"] = [
        Obj("LicenseUsage", pk, co)
        for pk, co in await LicenseUsage.all().order_by("id").values_list("id", "company_id")
    ]
    inv["Plugin"] = [Obj("Plugin", pk, 0) for pk in await Plugin.all().values_list("id", flat=True)]
    inv["Company"] = [
        Obj("Company", o.id, o.id) for o in world.orgs.values() if o.kind is OrgKind.COMPANY
    ]
    inv["Location"] = [
        Obj("Location", loc.id, loc.company_id, loc.id)  # type: ignore[attr-defined]
        for loc in sorted(world.locations.values(), key=lambda x: x.id)
    ]
    return inv


# --- what one principal may see, from the tree and the engine (never from SQL) -------------


@dataclass
class Ctx:
    scene: Scene
    fleet: Fleet
    inv: dict[str, list[Obj]]
    subtenant_users: dict[int, int] = field(default_factory=dict)  # Subtenant id → user id

    @property
    def p(self) -> Principal:
        return self.scene.principal

    @property
    def orgs(self) -> dict[int, Organization]:
        return {o.id: o for o in self.scene.world.orgs.values()}

    def in_tree(self, company_id: int) -> bool:
        return self.scene.in_tree(self.orgs[company_id])

    def own(self, o: Obj) -> bool:
        return o.subtenant_id is not None and self.subtenant_users.get(o.subtenant_id) == (
            self.p.user_id
        )

    def placed(self, o: Obj) -> bool:
        """The object's company, location and Subtenant are in the principal's scope."""
        p = self.p
        if not self.in_tree(o.company_id):
            return False
        if p.location_ids is not None and o.location_id not in p.location_ids:
            return False
        return p.scope_kind is not RoleScope.OWN_COMPUTERS or self.own(o)

    def visible(self, o: Obj) -> bool:
        p = self.p
        if o.type == "Plugin":  # one library for everyone who may read it
            return True
        if o.type in {"Company", "LicenseUsage"}:
            return self.in_tree(o.company_id)
        if o.type in {"Location", "AgentKey"}:  # keys belong to locations, not computers
            return self.in_tree(o.company_id) and (
                p.location_ids is None or o.location_id in p.location_ids
            )
        if o.type == "BackupReport":
            # A report covers its company; one limited to locations reads its own only.
            return (
                self.in_tree(o.company_id)
                and p.scope_kind is not RoleScope.OWN_COMPUTERS
                and (p.location_ids is None or o.requested_by == p.user_id)
            )
        if o.type == "BackupServer":
            cap = caps.backup_server(str(o.kind))
            return self.placed(o) and engine.allows(p, cap, Action.READ)
        if o.type in {"BackupJob", "BackupJobSession"}:
            cap = caps.backup_job(str(o.kind), o.assigned)
            return self.placed(o) and engine.allows(p, cap, Action.READ)
        return self.placed(o)

    def _company_first(self, objs: list[Obj]) -> list[Obj]:
        home = self.scene.company.id
        return sorted(objs, key=lambda o: o.company_id != home)

    def pick(self, type_name: str, where: Callable[[Obj], bool] = lambda o: True) -> Obj:
        """An object the principal sees if there is one (its company's first), else one of the
        scene's company (to be NOT_FOUND)."""
        objs = self._company_first([o for o in self.inv[type_name] if where(o)])
        return next((o for o in objs if self.visible(o)), objs[0])

    def pick_out(self, type_name: str, where: Callable[[Obj], bool] = lambda o: True) -> Obj | None:
        """An object the principal does not see (its company's first), if any."""
        objs = self._company_first([o for o in self.inv[type_name] if where(o)])
        return next((o for o in objs if not self.visible(o)), None)

    def target(self, kind: str, o: Obj) -> Target:
        user = self.subtenant_users.get(o.subtenant_id) if o.subtenant_id else None
        return Target(
            kind=kind,
            organization_id=o.company_id,
            organization_kind=OrgKind.COMPANY,
            subtenant_user_id=user,
        )

    def expected_ids(self, type_name: str, where: Callable[[Obj], bool] = lambda o: True) -> set:
        return {o.gid for o in self.inv[type_name] if where(o) and self.visible(o)}


# --- the operations ---------------------------------------------------------------------------

Pick = Callable[[Ctx], Obj | None]


def _none(c: Ctx) -> None:
    return None


def _always(c: Ctx) -> bool:
    return True


@dataclass(frozen=True)
class WOp:
    name: str
    field: str
    family: tuple[Capability, ...]  # the field guard: any of these allows the action
    action: Action
    document: str
    variables: Callable[[Ctx, Obj | None], dict[str, Any]]
    obj: Pick = _none  # the object acted on: NOT_FOUND unless visible
    # The capability decided on the object (`engine.can`), with the engine's target for it.
    capability: Callable[[Obj | None, Ctx], Capability] | None = None
    target: Callable[[Ctx, Obj], Target] | None = None
    listing: Callable[[Ctx, Obj | None], set[str]] | None = None  # the exact ids expected
    ids: Callable[[Any], set[str]] | None = None  # the ids of the answer's data
    check: Callable[[Ctx, Any], None] | None = None  # other assertions on the answer
    prepare: Callable[[Obj], Awaitable[Any]] | None = None
    # The kind's own capability, when the field guard is a family's (triviality check).
    decided_by: tuple[Capability, ...] = ()
    applies: Callable[[Ctx], bool] = _always

    def expected(self, c: Ctx, o: Obj | None) -> str | None:
        p = c.p
        if not any(engine.allows(p, cap, self.action) for cap in self.family):
            return "FORBIDDEN"
        if o is not None and not c.visible(o):
            return "NOT_FOUND"
        if self.capability is not None and self.target is not None and o is not None:
            if not engine.can(p, self.capability(o, c), self.action, self.target(c, o)):
                return "FORBIDDEN"
        return None


def nodes(key: str = "id") -> Callable[[Any], set[str]]:
    return lambda data: {n[key] for n in data["nodes"]}


def listing(
    name: str,
    family: tuple[Capability, ...],
    type_name: str,
    args: str = "first: 100",
    key: str = "id",
) -> WOp:
    return WOp(
        name,
        name,
        family,
        Action.READ,
        f"{{ {name}({args}) {{ nodes {{ {key} }} }} }}",
        lambda c, o: {},
        listing=lambda c, o: c.expected_ids(type_name),
        ids=nodes(key),
    )


def one(name: str, family: tuple[Capability, ...], type_name: str, variant: str = "in") -> WOp:
    """`name(id:)` or `node(id:)` on an object the principal sees (in) or does not (out)."""
    pick: Pick = (
        (lambda c: c.pick(type_name)) if variant == "in" else (lambda c: c.pick_out(type_name))
    )
    field_name = "node" if name == "node" else name
    return WOp(
        f"{name}({type_name})@{variant}" if name == "node" else f"{name}@{variant}",
        field_name,
        family,
        Action.READ,
        f"query($id: ID!) {{ {field_name}(id: $id) {{ id }} }}",
        lambda c, o: {"id": o.gid if o else ""},
        obj=pick,
        check=lambda c, data: None,
        applies=(lambda c: True)
        if variant == "in"
        else (lambda c: c.pick_out(type_name) is not None),
    )


def _cap(capability: Capability) -> Callable[[Obj | None, Ctx], Capability]:
    return lambda o, c: capability


def _mutation(field_name: str, arg: str, sel: str = "{ id }") -> str:
    kind = arg.split(": ", 1)[1] if ": " in arg else ""
    var = arg.split(": ", 1)[0]
    return f"mutation({var}: {kind}) {{ {field_name}({var[1:]}: {var}) {sel} }}"


BY_ID = "$id: ID!"
DELETED = "{ deletedId }"


def single_reads() -> list[WOp]:
    families: dict[str, tuple[Capability, ...]] = {
        "ManagedComputer": (caps.MANAGED_COMPUTERS,),
        "BackupAgent": (caps.BACKUP_AGENTS,),
        "BackupServer": SERVERS,
        "BackupJob": JOBS,
        "BackupJobSession": JOBS,
        "RestorePoint": (caps.PROTECTED_DATA,),
        "AgentKey": (caps.AGENT_KEYS,),
        "DiscoveryRule": (caps.DISCOVERY_RULES,),
        "FileRestoreRequest": (caps.FILE_RESTORES,),
        "BackupReport": (caps.BACKUP_REPORTS,),
        "VeeamOneRecord": (caps.VEEAM_ONE,),
        "Plugin": (caps.PLUGINS,),
    }
    fields = {
        "ManagedComputer": "managedComputer",
        "BackupServer": "backupServer",
        "BackupJob": "backupJob",
        "DiscoveryRule": "discoveryRule",
        "FileRestoreRequest": "fileRestore",
        "BackupReport": "backupReport",
        "VeeamOneRecord": "veeamOneRecord",
        "Plugin": "plugin",
    }
    out = [one("node", family, type_name) for type_name, family in families.items()]
    for type_name, name in fields.items():
        out.append(one(name, families[type_name], type_name))
        if type_name != "Plugin":
            out.append(one(name, families[type_name], type_name, "out"))
    # One server of every kind, one job of every kind and assignment: kinds are their own rows.
    for kind in SERVER_KINDS:
        out.append(
            WOp(
                f"backupServer@{kind}",
                "backupServer",
                SERVERS,
                Action.READ,
                "query($id: ID!) { backupServer(id: $id) { id } }",
                lambda c, o: {"id": o.gid},  # type: ignore[union-attr]
                obj=lambda c, k=kind: c.pick("BackupServer", lambda o: o.kind == k),
                decided_by=(caps.backup_server(kind),),
            )
        )
    for kind, assigned in JOB_PAIRS:
        out.append(
            WOp(
                f"backupJob@{pair_name(kind, assigned)}",
                "backupJob",
                JOBS,
                Action.READ,
                "query($id: ID!) { backupJob(id: $id) { id } }",
                lambda c, o: {"id": o.gid},  # type: ignore[union-attr]
                obj=job_pick(kind, assigned),
                decided_by=(caps.backup_job(kind, assigned),),
            )
        )
    return out


def pair_name(kind: str, assigned: bool) -> str:
    return f"{kind}-assigned" if assigned else kind


def job_pick(kind: str, assigned: bool) -> Pick:
    return lambda c: c.pick("BackupJob", lambda o: o.kind == kind and o.assigned == assigned)


def lists() -> list[WOp]:
    restore_points = WOp(
        "restorePoints@in",
        "restorePoints",
        (caps.PROTECTED_DATA,),
        Action.READ,
        "query($id: ID!) { restorePoints(computerId: $id, first: 100) { nodes { id } } }",
        lambda c, o: {"id": o.gid},  # type: ignore[union-attr]
        obj=lambda c: c.pick("ManagedComputer"),
        listing=lambda c, o: c.expected_ids("RestorePoint", lambda r: r.computer_id == o.pk),  # type: ignore[union-attr]
        ids=nodes(),
    )
    restore_points_out = WOp(
        "restorePoints@out",
        "restorePoints",
        (caps.PROTECTED_DATA,),
        Action.READ,
        restore_points.document,
        restore_points.variables,
        obj=lambda c: c.pick_out("ManagedComputer"),
        applies=lambda c: c.pick_out("ManagedComputer") is not None,
    )
    monitoring = WOp(
        "monitoringSummary",
        "monitoringSummary",
        (caps.MONITORING,),
        Action.READ,
        '{ monitoringSummary(from: "2026-11-01", to: "2026-11-30") '
        "{ computersByAgentStatus { count } } }",
        lambda c, o: {},
        # Computers in scope, whether or not the principal may list them (a Subtenant: its own).
        check=lambda c, data: _equal(
            sum(s["count"] for s in data["computersByAgentStatus"]),
            sum(1 for o in c.inv["ManagedComputer"] if c.placed(o)),
        ),
    )
    veeam_summary = WOp(
        "veeamOneSummary",
        "veeamOneSummary",
        (caps.VEEAM_ONE,),
        Action.READ,
        "{ veeamOneSummary { total warning } }",
        lambda c, o: {},
        check=lambda c, data: _equal(
            (data["total"], data["warning"]), (len(c.expected_ids("VeeamOneRecord")),) * 2
        ),
    )
    by_reseller = WOp(
        "licenseUsageByReseller",
        "licenseUsageByReseller",
        (caps.LICENSING,),
        Action.READ,
        f'{{ licenseUsageByReseller(month: "{MONTH}") {{ units companies }} }}',
        lambda c, o: {},
        check=lambda c, data: _equal(
            sum(r["units"] for r in data), 2 * len(c.expected_ids("LicenseUsage"))
        ),
    )
    return [
        listing("managedComputers", (caps.MANAGED_COMPUTERS,), "ManagedComputer"),
        listing("backupAgents", (caps.BACKUP_AGENTS,), "BackupAgent"),
        listing("backupServers", SERVERS, "BackupServer"),
        listing("backupJobs", JOBS, "BackupJob"),
        listing("backupJobSessions", JOBS, "BackupJobSession"),
        listing("protectedComputers", (caps.PROTECTED_DATA,), "ManagedComputer", key="computerId"),
        listing("agentKeys", (caps.AGENT_KEYS,), "AgentKey"),
        listing("discoveryRules", (caps.DISCOVERY_RULES,), "DiscoveryRule"),
        listing("fileRestores", (caps.FILE_RESTORES,), "FileRestoreRequest"),
        listing("backupReports", (caps.BACKUP_REPORTS,), "BackupReport"),
        listing("veeamOneRecords", (caps.VEEAM_ONE,), "VeeamOneRecord"),
        listing("licenseUsage", (caps.LICENSING,), "LicenseUsage", f'month: "{MONTH}", first: 100'),
        listing("plugins", (caps.PLUGINS,), "Plugin"),
        restore_points,
        restore_points_out,
        monitoring,
        veeam_summary,
        by_reseller,
    ]


def _equal(got: Any, wanted: Any) -> None:
    assert got == wanted, (got, wanted)


def _company_target(kind: str) -> Callable[[Ctx, Obj], Target]:
    return lambda c, o: Target(
        kind=kind, organization_id=o.company_id, organization_kind=OrgKind.COMPANY
    )


def _new_job_capability(o: Obj | None, c: Ctx) -> Capability:
    # Created by staff acting for the company, the job is the provider's (assigned).
    assert o is not None
    return caps.backup_job("AGENT", o.company_id != c.p.organization_id, settings=True)


def creations() -> list[WOp]:
    home = lambda c: c.pick("Company", lambda o: o.pk == c.scene.company.id)  # noqa: E731
    return [
        WOp(
            "agentKeyCreate",
            "agentKeyCreate",
            (caps.AGENT_KEYS,),
            Action.CREATE,
            "mutation($input: AgentKeyCreateInput!) { agentKeyCreate(input: $input) "
            "{ agentKey { id } secret } }",
            lambda c, o: {"input": {"companyId": o.gid, "name": c.scene.unique("key ")}},  # type: ignore[union-attr]
            obj=home,
            capability=_cap(caps.AGENT_KEYS),
            target=_company_target(caps.AGENT_KEYS.kind),
        ),
        WOp(
            "backupJobCreate",
            "backupJobCreate",
            JOB_SETTINGS,
            Action.CREATE,
            "mutation($input: BackupJobCreateInput!) { backupJobCreate(input: $input) { id } }",
            lambda c, o: {"input": {"computerId": o.gid, "name": c.scene.unique("job ")}},  # type: ignore[union-attr]
            obj=lambda c: c.pick("ManagedComputer"),
            capability=_new_job_capability,
            target=_company_target("backup_job"),
        ),
        WOp(
            "discoveryRuleCreate",
            "discoveryRuleCreate",
            (caps.DISCOVERY_RULES,),
            Action.CREATE,
            "mutation($input: DiscoveryRuleCreateInput!) { discoveryRuleCreate(input: $input) "
            "{ id } }",
            lambda c, o: {
                "input": {
                    "locationId": o.gid,  # type: ignore[union-attr]
                    "name": c.scene.unique("rule "),
                    "kind": "NETWORK_SCAN",
                    "ranges": ["192.168.0.0/29"],
                }
            },
            obj=lambda c: c.pick("Location", lambda o: o.pk == c.scene.location.id),
            capability=_cap(caps.DISCOVERY_RULES),
            target=_company_target(caps.DISCOVERY_RULES.kind),
        ),
        WOp(
            "fileRestoreRequest",
            "fileRestoreRequest",
            (caps.FILE_RESTORES,),
            Action.CREATE,
            "mutation($input: FileRestoreRequestInput!) { fileRestoreRequest(input: $input) "
            "{ id state } }",
            lambda c, o: {
                "input": {"computerId": o.gid, "paths": ["/srv/data"], "destination": "/restore"}  # type: ignore[union-attr]
            },
            obj=lambda c: c.pick("ManagedComputer"),
            capability=_cap(caps.FILE_RESTORES),
            target=lambda c, o: c.target(caps.FILE_RESTORES.kind, o),
        ),
        WOp(
            "backupReportGenerate",
            "backupReportGenerate",
            (caps.BACKUP_REPORTS,),
            Action.CREATE,
            "mutation($input: BackupReportGenerateInput!) { backupReportGenerate(input: $input) "
            "{ report { id } created } }",
            lambda c, o: {
                "input": {
                    "companyId": o.gid,  # type: ignore[union-attr]
                    "periodStart": "2026-10-01",
                    "periodEnd": "2026-10-31",
                }
            },
            obj=home,
            capability=_cap(caps.BACKUP_REPORTS),
            target=_company_target(caps.BACKUP_REPORTS.kind),
        ),
        WOp(
            "pluginCreate",
            "pluginCreate",
            (caps.PLUGIN_ENTRIES,),
            Action.CREATE,
            "mutation($input: PluginCreateInput!) { pluginCreate(input: $input) { id } }",
            lambda c, o: {"input": {"name": c.scene.unique("Plugin "), "version": "2.1"}},
        ),
        WOp(
            "licenseUsageCollect",
            "licenseUsageCollect",
            (caps.LICENSING,),
            Action.UPDATE,
            "mutation { licenseUsageCollect { id } }",
            lambda c, o: {},
        ),
    ]


async def _set_job(o: Obj, **state: Any) -> None:
    await BackupJob.filter(id=o.pk).update(**state)


JOB_OPERATIONS: dict[str, dict[str, Any]] = {
    # mutation → the state its object is put in first (a transition the state allows)
    "backupJobStart": {"run_state": JobRunState.IDLE, "enabled": True},
    "backupJobStop": {"run_state": JobRunState.STARTING},
    "backupJobRetry": {
        "run_state": JobRunState.IDLE,
        "enabled": True,
        "last_result": SessionResult.FAILED,
    },
    "backupJobEnable": {"enabled": False},
    "backupJobDisable": {"enabled": True},
}


def job_operations() -> list[WOp]:
    out: list[WOp] = []
    for kind, assigned in JOB_PAIRS:
        pick = job_pick(kind, assigned)
        variant = pair_name(kind, assigned)

        def target(c: Ctx, o: Obj) -> Target:
            return c.target("backup_job", o)

        for mutation, state in JOB_OPERATIONS.items():
            out.append(
                WOp(
                    f"{mutation}@{variant}",
                    mutation,
                    JOBS,
                    Action.UPDATE,
                    _mutation(mutation, BY_ID),
                    lambda c, o: {"id": o.gid},  # type: ignore[union-attr]
                    obj=pick,
                    decided_by=(caps.backup_job(kind, assigned),),
                    capability=lambda o, c: caps.backup_job(str(o.kind), o.assigned),  # type: ignore[union-attr]
                    target=target,
                    prepare=lambda o, s=state: _set_job(o, **s),
                )
            )
        settings = lambda o, c: caps.backup_job(str(o.kind), o.assigned, settings=True)  # type: ignore[union-attr]  # noqa: E731
        out.append(
            WOp(
                f"backupJobUpdate@{variant}",
                "backupJobUpdate",
                JOB_SETTINGS,
                Action.UPDATE,
                _mutation("backupJobUpdate", "$input: BackupJobUpdateInput!"),
                lambda c, o: {"input": {"id": o.gid, "schedule": "30 1 * * *"}},  # type: ignore[union-attr]
                obj=pick,
                decided_by=(caps.backup_job(kind, assigned, settings=True),),
                capability=settings,
                target=target,
            )
        )
    return out


async def _set(model: Any, o: Obj, **state: Any) -> None:
    await model.filter(id=o.pk).update(**state)


def changes() -> list[WOp]:
    rule = lambda c: c.pick("DiscoveryRule")  # noqa: E731
    plugin = lambda c: c.pick("Plugin")  # noqa: E731
    company_target = _company_target(caps.DISCOVERY_RULES.kind)
    return [
        *job_operations(),
        WOp(
            "discoveryRuleUpdate",
            "discoveryRuleUpdate",
            (caps.DISCOVERY_RULES,),
            Action.UPDATE,
            _mutation("discoveryRuleUpdate", "$input: DiscoveryRuleUpdateInput!"),
            lambda c, o: {"input": {"id": o.gid, "name": c.scene.unique("renamed rule ")}},  # type: ignore[union-attr]
            obj=rule,
            capability=_cap(caps.DISCOVERY_RULES),
            target=company_target,
        ),
        WOp(
            "discoveryRuleRun",
            "discoveryRuleRun",
            (caps.DISCOVERY_RULES,),
            Action.UPDATE,
            _mutation("discoveryRuleRun", BY_ID, "{ job { id } created }"),
            lambda c, o: {"id": o.gid},  # type: ignore[union-attr]
            obj=rule,
            capability=_cap(caps.DISCOVERY_RULES),
            target=company_target,
            prepare=lambda o: _set(DiscoveryRule, o, enabled=True, last_run_job_id=None),
        ),
        WOp(
            "fileRestoreCancel",
            "fileRestoreCancel",
            (caps.FILE_RESTORES,),
            Action.UPDATE,
            _mutation("fileRestoreCancel", BY_ID, "{ id state }"),
            lambda c, o: {"id": o.gid},  # type: ignore[union-attr]
            obj=lambda c: c.pick("FileRestoreRequest"),
            capability=_cap(caps.FILE_RESTORES),
            target=lambda c, o: c.target(caps.FILE_RESTORES.kind, o),
            prepare=lambda o: _set(FileRestoreRequest, o, state=RestoreState.REQUESTED),
        ),
        WOp(
            "pluginUpdate",
            "pluginUpdate",
            (caps.PLUGIN_ENTRIES,),
            Action.UPDATE,
            _mutation("pluginUpdate", "$input: PluginUpdateInput!"),
            lambda c, o: {"input": {"id": o.gid, "version": "1.1"}},  # type: ignore[union-attr]
            obj=plugin,
        ),
        WOp(
            "pluginSetEnabled",
            "pluginSetEnabled",
            (caps.PLUGINS,),
            Action.UPDATE,
            "mutation($input: PluginSetEnabledInput!) { pluginSetEnabled(input: $input) "
            "{ enabled effective } }",
            lambda c, o: {
                "input": {
                    "pluginId": c.pick("Plugin").gid,
                    "organizationId": to_global_id(ORG_TYPE[OrgKind.COMPANY], o.pk),  # type: ignore[union-attr]
                    "enabled": True,
                }
            },
            obj=lambda c: c.pick("Company", lambda o: o.pk == c.scene.company.id),
            capability=_cap(caps.PLUGINS),
            target=lambda c, o: Target(
                kind=caps.PLUGINS.kind, organization_id=o.pk, organization_kind=OrgKind.COMPANY
            ),
        ),
    ]


def removals() -> list[WOp]:
    out = []
    for kind, assigned in JOB_PAIRS:
        out.append(
            WOp(
                f"backupJobDelete@{pair_name(kind, assigned)}",
                "backupJobDelete",
                JOB_SETTINGS,
                Action.DELETE,
                _mutation("backupJobDelete", BY_ID, DELETED),
                lambda c, o: {"id": o.gid},  # type: ignore[union-attr]
                obj=job_pick(kind, assigned),
                decided_by=(caps.backup_job(kind, assigned, settings=True),),
                capability=lambda o, c: caps.backup_job(str(o.kind), o.assigned, settings=True),  # type: ignore[union-attr]
                target=lambda c, o: c.target("backup_job", o),
                prepare=lambda o: _set_job(o, run_state=JobRunState.IDLE),
            )
        )
    by_id = lambda c, o: {"id": o.gid}  # type: ignore[union-attr]  # noqa: E731
    return [
        *out,
        WOp(
            "agentKeyRevoke",
            "agentKeyRevoke",
            (caps.AGENT_KEYS,),
            Action.DELETE,
            _mutation("agentKeyRevoke", BY_ID, "{ id active }"),
            by_id,
            obj=lambda c: c.pick("AgentKey"),
            capability=_cap(caps.AGENT_KEYS),
            target=_company_target(caps.AGENT_KEYS.kind),
        ),
        WOp(
            "discoveryRuleDelete",
            "discoveryRuleDelete",
            (caps.DISCOVERY_RULES,),
            Action.DELETE,
            _mutation("discoveryRuleDelete", BY_ID, DELETED),
            by_id,
            obj=lambda c: c.pick("DiscoveryRule"),
            capability=_cap(caps.DISCOVERY_RULES),
            target=_company_target(caps.DISCOVERY_RULES.kind),
            prepare=lambda o: _set(DiscoveryRule, o, last_run_job_id=None),
        ),
        WOp(
            "backupReportDelete",
            "backupReportDelete",
            (caps.BACKUP_REPORTS,),
            Action.DELETE,
            _mutation("backupReportDelete", BY_ID, DELETED),
            by_id,
            obj=lambda c: c.pick("BackupReport"),
            capability=_cap(caps.BACKUP_REPORTS),
            target=_company_target(caps.BACKUP_REPORTS.kind),
        ),
        WOp(
            "pluginDelete",
            "pluginDelete",
            (caps.PLUGIN_ENTRIES,),
            Action.DELETE,
            _mutation("pluginDelete", BY_ID, DELETED),
            by_id,
            obj=lambda c: c.pick("Plugin"),
        ),
    ]


OPERATIONS: tuple[WOp, ...] = (*lists(), *single_reads(), *creations(), *changes(), *removals())


# --- running the table --------------------------------------------------------------------


@pytest.fixture
def no_broker():
    """Background jobs are created (QUEUED) but not sent anywhere: the table is about who may
    start them, the job tests run them."""
    from app.services import jobs

    previous = jobs._dispatcher
    jobs.set_dispatcher(lambda job_id, delay_ms=None: None)
    yield
    jobs.set_dispatcher(previous)


async def build_ctx(subject: Subject) -> Ctx:
    world = await build_world()
    scene = await build_scene(world, subject, enterprise=subject.edition == "enterprise")
    fleet = await add_operations(world, await build_fleet(world))
    ctx = Ctx(scene, fleet, await inventory(world))
    ctx.subtenant_users = {s.id: s.user_id for s in fleet.subtenants.values()}  # type: ignore[attr-defined]
    return ctx


async def run_table(ctx: Ctx, gql: Any, subtests: Any) -> dict[str, tuple[str | None, ...]]:
    """Every operation for the context's principal, each a subtest; returns case name →
    (expected, observed)."""
    results: dict[str, tuple[str | None, ...]] = {}
    for op in OPERATIONS:
        if not op.applies(ctx):
            continue
        o = op.obj(ctx)
        if op.prepare is not None and o is not None:
            await op.prepare(o)
        expected = op.expected(ctx, o)
        body = await gql(op.document, op.variables(ctx, o), token=ctx.scene.token)
        case = f"{ctx.scene.subject.id}/{op.name}"
        with subtests.test(msg=case):
            observed = outcome(body, op.field)
            results[op.name] = (expected, observed)
            assert observed == expected, f"{case}: expected {expected or 'OK'}, got {body}"
            if observed is None:
                data = body["data"][op.field]
                if op.listing is not None and op.ids is not None:
                    assert op.ids(data) == op.listing(ctx, o), case
                if op.check is not None:
                    op.check(ctx, data)
                if o is not None and op.action is Action.READ and "id" in data:
                    assert data["id"] == o.gid, case
    return results


ALL_SUBJECTS = [s for edition in EDITIONS for s in subjects(edition)]

SPOT_CHECKS: dict[tuple[str, str, str], dict[str, str | None]] = {
    # The seeds' words, checked by hand against what the computed table expects and gets.
    ("service_provider", "A1", "Company Owner"): {
        "backupJobStart@AGENT-assigned": None,  # operates the provider's jobs...
        "backupJobUpdate@AGENT-assigned": "FORBIDDEN",  # ...but does not reconfigure them
        "backupJobDelete@AGENT-assigned": "FORBIDDEN",
        "backupJobUpdate@AGENT": None,
        "licenseUsage": "FORBIDDEN",  # Licensing is a Reseller Portal row
        "pluginSetEnabled": None,
        "pluginCreate": "FORBIDDEN",  # the library is the provider's
    },
    ("service_provider", "A1", "Location User"): {
        "managedComputers": None,  # Read
        "backupJobStart@AGENT": "FORBIDDEN",
        "backupJob@VBR_BACKUP": "NOT_FOUND",  # B&R Read, but the job is in A1-Default
        "backupJob@PUBLIC_CLOUD_POLICY": "NOT_FOUND",  # Public Clouds N/A: rows filtered out
        "discoveryRules": "FORBIDDEN",  # N/A
    },
    ("service_provider", "A1", "Subtenant"): {
        "managedComputers": "FORBIDDEN",
        "protectedComputers": None,  # Read*: their own computer
        "fileRestoreRequest": None,  # Full*
        "fileRestoreCancel": None,
        "backupJob@AGENT": None,  # their own cloud agent job (Read*)
        "backupJobStart@AGENT": "FORBIDDEN",
        "backupJob@AGENT-assigned": "NOT_FOUND",  # no "Jobs assigned by service provider" cell
        "restorePoints@out": "NOT_FOUND",
    },
    ("service_provider", "Provider", "Service Provider Operator"): {
        "pluginCreate": "FORBIDDEN",  # Plugin library: N/A
        "licenseUsageCollect": "FORBIDDEN",
        "backupJobUpdate@AGENT-assigned": None,
        "fileRestoreRequest": None,
    },
    ("service_provider", "Provider", "Service Provider Global Administrator"): {
        "pluginCreate": None,
        "pluginDelete": None,
        "licenseUsageCollect": None,
        "backupReportGenerate": None,
    },
    ("service_provider", "R1", "Service Provider Global Administrator"): {
        "pluginCreate": "FORBIDDEN",  # the library's entries are the provider's
        "pluginSetEnabled": None,
        "managedComputer@out": "NOT_FOUND",  # R2's company
    },
    ("enterprise", "A1", "Department Owner"): {
        "backupJob@PUBLIC_CLOUD_POLICY": "NOT_FOUND",  # no such row in the Department Portal
        "backupJobUpdate@AGENT-assigned": None,  # and no "assigned by the provider" row
        "fileRestores": "FORBIDDEN",
        "veeamOneRecords": "FORBIDDEN",
    },
}


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_workload_operations_follow_the_matrix(
    subject: Subject, use_settings, db, gql, subtests, no_broker
) -> None:
    use_settings(edition=subject.edition)  # before the world: it builds that edition's roles
    ctx = await build_ctx(subject)
    results = await run_table(ctx, gql, subtests)
    assert len(results) == sum(1 for op in OPERATIONS if op.applies(ctx))
    for name, wanted in SPOT_CHECKS.get((subject.edition, subject.org, subject.role), {}).items():
        assert subject.suffix or results[name] == (wanted, wanted), name


def test_every_operation_of_the_schema_is_in_the_table() -> None:
    """Each query field and mutation of the workloads modules has a case (a new one must be
    added here)."""
    from app.graphql.schema import schema

    names = {op.field for op in OPERATIONS}
    seen = set()
    workload_modules = (
        "agent_keys discovery licensing monitoring operations plugins protected queries "
        "reports restores veeam_one"
    ).split()
    for root in (schema.get_type_by_name("Query"), schema.get_type_by_name("Mutation")):
        for f in root.fields:  # type: ignore[union-attr]
            module = getattr(f.base_resolver, "wrapped_func", None)
            where = getattr(module, "__module__", "") or ""
            if any(where.endswith(f"workloads.{m}") for m in workload_modules):
                seen.add(_camel(f.name))
    assert len(seen) >= 45, sorted(seen)
    assert seen - names == set()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def test_the_table_is_not_trivial() -> None:
    """Each operation is allowed to some role and refused to another, by the matrix alone
    (field level and the capability of its object's kind, unrestricted principals)."""
    principals = [
        make_principal(portal, r.name)
        for portal in Portal
        for r in load_matrix().portals[portal].roles
    ]
    for op in OPERATIONS:
        deciding: Iterable[Capability] = op.decided_by or op.family
        answers = {any(engine.allows(p, cap, op.action) for cap in deciding) for p in principals}
        assert answers == {True, False}, op.name
