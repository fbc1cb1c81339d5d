"""Managed workloads of another tenant, another location or another Subtenant do not exist for
you: NOT_FOUND, no data, and nothing changes.

For each principal, the objects of a "foreign" location (or a Subtenant's own computer) of the
shared fleet: every node type, every single-object query and every mutation on them. Where
the principal's role has no right to the field at all, the answer is FORBIDDEN whatever the
object (the field guard answers first); the expectation is computed from the engine (for the
per-kind families of jobs and servers: any capability of the family).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.authz import capabilities as caps
from app.authz import engine
from app.authz.capabilities import Capability
from app.authz.matrix import Action, Portal
from app.graphql.ids import to_global_id
from app.models import (
    AgentKey,
    BackupAgent,
    BackupJob,
    BackupJobSession,
    BackupReport,
    DiscoveryRule,
    FileRestoreRequest,
    Job,
    LicenseUsage,
    ManagedComputer,
    Organization,
    Plugin,
    PluginActivation,
    RestorePoint,
    ServerKind,
)
from tests.factories import World
from tests.permission_cases import Scene, Subject, build_scene, make_principal, org_gid
from tests.test_workload_permissions import (  # noqa: F401 (no_broker: a fixture)
    JOB_SETTINGS,
    JOBS,
    MONTH,
    SERVERS,
    no_broker,
)
from tests.workload_fleet import Fleet, add_operations, build_fleet

R2_ADMIN = "R2:Service Provider Global Administrator"
B1_OWNER = "B1:Company Owner"
A2_OWNER = "A2:Company Owner"
P1_OWNER = "P1:Company Owner"
A1_LOCATION_USER = "A1:Location User"  # limited to A1-East
A1_LOCATION_ADMIN = "A1:Location Administrator"  # limited to A1-East
P1_OPERATOR = "Provider:Service Provider Operator:P1"  # limited to company P1
A1_SUBTENANT = "A1:Subtenant"  # its own computer only

# principal → the fleet's keys of what lies outside its scope: a location's objects
# ("<org>-<location>") or another Subtenant's computer ("<org>:own").
FOREIGN: dict[str, tuple[str, ...]] = {
    R2_ADMIN: ("A1-Default",),
    B1_OWNER: ("A1-Default",),
    A2_OWNER: ("A1-Default",),  # A1: same reseller
    P1_OWNER: ("B1-Default",),
    A1_LOCATION_USER: ("A1-Default", "A2-Default"),  # own company, other location; another
    A1_LOCATION_ADMIN: ("A1-Default", "A2-Default"),
    P1_OPERATOR: ("A1-Default",),
    A1_SUBTENANT: ("A1-Default", "B1:own"),  # the company's computers; another Subtenant's
}


@dataclass
class Foreign:
    """The objects of one foreign location (or Subtenant computer), by GraphQL type."""

    key: str
    company: Organization
    company_foreign: bool  # the company itself is outside the principal's tree
    ids: dict[str, int] = field(default_factory=dict)

    def gid(self, type_name: str) -> str:
        return to_global_id(type_name, self.ids[type_name])

    def has(self, *types: str) -> bool:
        return all(t in self.ids for t in types)


async def foreign(scene: Scene, fleet: Fleet, key: str) -> Foreign:
    own = key.endswith(":own")
    org_key = key.split(":" if own else "-", 1)[0]
    company = scene.world.orgs[org_key]
    f = Foreign(key, company, not scene.in_tree(company))
    computer = fleet.subtenant_computers[key] if own else fleet.computers[key]
    job = await BackupJob.get(computer_id=computer.id, assigned_by_provider=False)
    f.ids.update(
        ManagedComputer=computer.id,
        BackupAgent=(await BackupAgent.get(computer_id=computer.id)).id,
        BackupJob=job.id,
        BackupJobSession=(await BackupJobSession.filter(job_id=job.id).first()).id,  # type: ignore[union-attr]
        RestorePoint=fleet.restore_points[key].id,
        FileRestoreRequest=fleet.file_restores[key].id,
    )
    # Background jobs the company's owner started about these objects: they belong to the
    # company, not to the location or computer, and stay out of a narrower principal's sight.
    owner = scene.world.user(org_key, "Company Owner")
    f.ids["Job"] = (
        await Job.create(
            kind="file_restore.run",
            functionality="FILE_LEVEL_RESTORE",
            organization=company,
            requested_by=owner,
            params={"restore_id": f.ids["FileRestoreRequest"]},
        )
    ).id
    if not own:
        f.ids["Job:discovery"] = (
            await Job.create(
                kind="discovery.run",
                functionality="DISCOVERY_RULES",
                organization=company,
                requested_by=owner,
                params={"rule_id": fleet.discovery_rules[key].id},
            )
        ).id
        f.ids.update(
            Location=computer.location_id,  # type: ignore[attr-defined]
            DiscoveryRule=fleet.discovery_rules[key].id,
            AgentKey=fleet.agent_keys[key].id,
            VeeamOneRecord=fleet.veeam_one[key].id,
            BackupReport=fleet.reports[org_key].id,
        )
        if key.endswith("-Default"):  # servers and server jobs live at the default location
            for kind in ServerKind:
                f.ids[f"BackupServer:{kind.value}"] = fleet.servers[(org_key, kind)].id
            for (o, kind, assigned), j in fleet.jobs.items():
                if o == org_key and (assigned or kind.value != "AGENT"):
                    f.ids[f"BackupJob:{kind.value}{'-assigned' if assigned else ''}"] = j.id
    return f


# --- the attempts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    name: str
    family: tuple[Capability, ...]  # the field guard: any of these allows; () none (jobs)
    action: Action
    document: str
    variables: Callable[[Foreign], dict[str, Any]]
    applies: Callable[[Foreign], bool] = lambda f: True

    @property
    def field(self) -> str:
        return self.document.split("{", 1)[1].split("(", 1)[0].strip()


def _q(name: str, sel: str = "{ id }") -> str:
    return f"query($id: ID!) {{ {name}(id: $id) {sel} }}"


def _m(name: str, sel: str = "{ id }", arg: str = "$id: ID!") -> str:
    var = arg.split(":", 1)[0]
    return f"mutation({arg}) {{ {name}({var[1:]}: {var}) {sel} }}"


def _input(name: str, kind: str, sel: str = "{ id }") -> str:
    return _m(name, sel, f"$input: {kind}!")


def by_id(type_name: str) -> Callable[[Foreign], dict[str, Any]]:
    return lambda f: {"id": f.gid(type_name)}


def having(*types: str) -> Callable[[Foreign], bool]:
    return lambda f: f.has(*types)


NODES: dict[str, tuple[Capability, ...]] = {
    "ManagedComputer": (caps.MANAGED_COMPUTERS,),
    "BackupAgent": (caps.BACKUP_AGENTS,),
    "BackupJob": JOBS,
    "BackupJobSession": JOBS,
    "RestorePoint": (caps.PROTECTED_DATA,),
    "FileRestoreRequest": (caps.FILE_RESTORES,),
    "DiscoveryRule": (caps.DISCOVERY_RULES,),
    "AgentKey": (caps.AGENT_KEYS,),
    "VeeamOneRecord": (caps.VEEAM_ONE,),
    "BackupReport": (caps.BACKUP_REPORTS,),
}
SINGLE_FIELDS = {
    "managedComputer": "ManagedComputer",
    "backupJob": "BackupJob",
    "fileRestore": "FileRestoreRequest",
    "discoveryRule": "DiscoveryRule",
    "veeamOneRecord": "VeeamOneRecord",
    "backupReport": "BackupReport",
}
JOB_MUTATIONS = ("backupJobStart", "backupJobStop", "backupJobRetry")
JOB_MUTATIONS += ("backupJobEnable", "backupJobDisable")


def reads() -> list[Attempt]:
    out = [
        Attempt(f"node({t})", family, Action.READ, _q("node"), by_id(t), having(t))
        for t, family in NODES.items()
    ]
    out += [
        Attempt(name, NODES[t], Action.READ, _q(name), by_id(t), having(t))
        for name, t in SINGLE_FIELDS.items()
    ]
    for kind in ServerKind:
        key = f"BackupServer:{kind.value}"
        out.append(
            Attempt(
                f"backupServer@{kind.value}",
                SERVERS,
                Action.READ,
                _q("backupServer"),
                lambda f, k=key: {"id": to_global_id("BackupServer", f.ids[k])},
                having(key),
            )
        )
        out.append(
            Attempt(
                f"node(BackupServer)@{kind.value}",
                SERVERS,
                Action.READ,
                _q("node"),
                lambda f, k=key: {"id": to_global_id("BackupServer", f.ids[k])},
                having(key),
            )
        )
    for key in ("Job", "Job:discovery"):
        job = lambda f, k=key: {"id": to_global_id("Job", f.ids[k])}  # noqa: E731
        out += [
            Attempt(f"job@{key}", (), Action.READ, _q("job"), job, having(key)),
            Attempt(f"node(Job)@{key}", (), Action.READ, _q("node"), job, having(key)),
            Attempt(f"jobCancel@{key}", (), Action.UPDATE, _m("jobCancel"), job, having(key)),
        ]
    out.append(
        Attempt(
            "restorePoints",
            (caps.PROTECTED_DATA,),
            Action.READ,
            "query($id: ID!) { restorePoints(computerId: $id) { nodes { id } } }",
            by_id("ManagedComputer"),
        )
    )
    # Another company asked about by id in a filter.
    company_only = lambda f: f.company_foreign  # noqa: E731
    company = lambda f: {"id": org_gid(f.company)}  # noqa: E731
    out += [
        Attempt(
            "monitoringSummary(companyId)",
            (caps.MONITORING,),
            Action.READ,
            'query($id: ID!) { monitoringSummary(from: "2026-11-01", to: "2026-11-30", '
            "companyId: $id) { jobsByLastResult { count } } }",
            company,
            company_only,
        ),
        Attempt(
            "veeamOneSummary(companyId)",
            (caps.VEEAM_ONE,),
            Action.READ,
            "query($id: ID!) { veeamOneSummary(companyId: $id) { total } }",
            company,
            company_only,
        ),
        Attempt(
            "licenseUsage(companyId)",
            (caps.LICENSING,),
            Action.READ,
            f'query($id: ID!) {{ licenseUsage(month: "{MONTH}", companyId: $id) '
            "{ nodes { id } } }",
            company,
            company_only,
        ),
        Attempt(
            "plugins(organizationId)",
            (caps.PLUGINS,),
            Action.READ,
            "query($id: ID!) { plugins(organizationId: $id) { nodes { id } } }",
            company,
            company_only,
        ),
    ]
    return out


def job_mutations() -> list[Attempt]:
    out = []
    keys = ["BackupJob", "BackupJob:VBR_BACKUP", "BackupJob:AGENT-assigned"]
    for key in keys:
        suffix = "" if key == "BackupJob" else "@" + key.split(":")[1]
        job = lambda f, k=key: to_global_id("BackupJob", f.ids[k])  # noqa: E731
        out += [
            Attempt(
                name + suffix,
                JOBS,
                Action.UPDATE,
                _m(name),
                lambda f, j=job: {"id": j(f)},
                having(key),
            )
            for name in JOB_MUTATIONS
        ]
        out += [
            Attempt(
                "backupJobUpdate" + suffix,
                JOB_SETTINGS,
                Action.UPDATE,
                _input("backupJobUpdate", "BackupJobUpdateInput"),
                lambda f, j=job: {"input": {"id": j(f), "name": "Hijacked", "schedule": ""}},
                having(key),
            ),
            Attempt(
                "backupJobDelete" + suffix,
                JOB_SETTINGS,
                Action.DELETE,
                _m("backupJobDelete", "{ deletedId }"),
                lambda f, j=job: {"id": j(f)},
                having(key),
            ),
        ]
    return out


def mutations() -> list[Attempt]:
    company_only = lambda f: f.company_foreign  # noqa: E731
    return [
        *job_mutations(),
        Attempt(
            "backupJobCreate",
            JOB_SETTINGS,
            Action.CREATE,
            _input("backupJobCreate", "BackupJobCreateInput"),
            lambda f: {"input": {"computerId": f.gid("ManagedComputer"), "name": "Intruder"}},
        ),
        Attempt(
            "fileRestoreRequest",
            (caps.FILE_RESTORES,),
            Action.CREATE,
            _input("fileRestoreRequest", "FileRestoreRequestInput"),
            lambda f: {
                "input": {
                    "computerId": f.gid("ManagedComputer"),
                    "paths": ["/etc/shadow"],
                    "destination": "/tmp/loot",
                }
            },
        ),
        Attempt(
            "fileRestoreCancel",
            (caps.FILE_RESTORES,),
            Action.UPDATE,
            _m("fileRestoreCancel"),
            by_id("FileRestoreRequest"),
        ),
        Attempt(
            "discoveryRuleCreate",
            (caps.DISCOVERY_RULES,),
            Action.CREATE,
            _input("discoveryRuleCreate", "DiscoveryRuleCreateInput"),
            lambda f: {
                "input": {
                    "locationId": f.gid("Location"),
                    "name": "Intruder",
                    "kind": "NETWORK_SCAN",
                    "ranges": ["10.9.0.0/30"],
                }
            },
            having("Location"),
        ),
        Attempt(
            "discoveryRuleUpdate",
            (caps.DISCOVERY_RULES,),
            Action.UPDATE,
            _input("discoveryRuleUpdate", "DiscoveryRuleUpdateInput"),
            lambda f: {"input": {"id": f.gid("DiscoveryRule"), "name": "Hijacked"}},
            having("DiscoveryRule"),
        ),
        Attempt(
            "discoveryRuleRun",
            (caps.DISCOVERY_RULES,),
            Action.UPDATE,
            _m("discoveryRuleRun", "{ created }"),
            by_id("DiscoveryRule"),
            having("DiscoveryRule"),
        ),
        Attempt(
            "discoveryRuleDelete",
            (caps.DISCOVERY_RULES,),
            Action.DELETE,
            _m("discoveryRuleDelete", "{ deletedId }"),
            by_id("DiscoveryRule"),
            having("DiscoveryRule"),
        ),
        Attempt(
            "agentKeyCreate",
            (caps.AGENT_KEYS,),
            Action.CREATE,
            _input("agentKeyCreate", "AgentKeyCreateInput", "{ secret }"),
            lambda f: {
                "input": {
                    "companyId": org_gid(f.company),
                    "locationId": f.gid("Location"),
                    "name": "Intruder",
                }
            },
            having("Location"),
        ),
        Attempt(
            "agentKeyRevoke",
            (caps.AGENT_KEYS,),
            Action.DELETE,
            _m("agentKeyRevoke"),
            by_id("AgentKey"),
            having("AgentKey"),
        ),
        Attempt(
            "backupReportGenerate",
            (caps.BACKUP_REPORTS,),
            Action.CREATE,
            _input("backupReportGenerate", "BackupReportGenerateInput", "{ created }"),
            lambda f: {
                "input": {
                    "companyId": org_gid(f.company),
                    "periodStart": "2026-10-01",
                    "periodEnd": "2026-10-31",
                }
            },
            company_only,
        ),
        Attempt(
            "backupReportDelete",
            (caps.BACKUP_REPORTS,),
            Action.DELETE,
            _m("backupReportDelete", "{ deletedId }"),
            by_id("BackupReport"),
            having("BackupReport"),
        ),
        Attempt(
            "pluginSetEnabled",
            (caps.PLUGINS,),
            Action.UPDATE,
            _input("pluginSetEnabled", "PluginSetEnabledInput", "{ enabled }"),
            lambda f: {
                "input": {
                    "pluginId": to_global_id("Plugin", f.ids["Plugin"]),
                    "organizationId": org_gid(f.company),
                    "enabled": False,
                }
            },
            company_only,
        ),
    ]


ATTEMPTS: tuple[Attempt, ...] = (*reads(), *mutations())


# --- running them ------------------------------------------------------------------------------


async def snapshot() -> list[Any]:
    """Every row an attempt could touch (workload objects, background jobs, plugin switches)."""
    models = (
        ManagedComputer,
        BackupJob,
        BackupJobSession,
        RestorePoint,
        DiscoveryRule,
        FileRestoreRequest,
        BackupReport,
        AgentKey,
        LicenseUsage,
        Plugin,
        PluginActivation,
        Job,
    )
    return [await m.all().order_by("id").values() for m in models]


def subject_of(key: str) -> Subject:
    org, role, *suffix = key.split(":")
    return Subject("service_provider", org, role, f":{suffix[0]}" if suffix else "")


@pytest.mark.usefixtures("no_broker")
@pytest.mark.parametrize("principal", list(FOREIGN))
async def test_other_tenants_workloads_are_not_found(
    world: World, gql, subtests, principal: str
) -> None:
    scene = await build_scene(world, subject_of(principal), enterprise=False)
    fleet = await add_operations(world, await build_fleet(world))
    p = scene.principal
    ran = 0
    for key in FOREIGN[principal]:
        f = await foreign(scene, fleet, key)
        f.ids["Plugin"] = fleet.plugins[0].id
        for attempt in ATTEMPTS:
            if not attempt.applies(f):
                continue
            allowed = not attempt.family or any(
                engine.allows(p, cap, attempt.action) for cap in attempt.family
            )
            expected = "NOT_FOUND" if allowed else "FORBIDDEN"
            before = await snapshot()
            body = await gql(attempt.document, attempt.variables(f), token=scene.token)
            ran += 1
            with subtests.test(msg=f"{principal}/{key}/{attempt.name}"):
                assert [e["extensions"]["code"] for e in body.get("errors", [])] == [expected], body
                assert (body.get("data") or {}).get(attempt.field) is None, body
                assert await snapshot() == before, "the database changed"
        # Nor in any list: the foreign objects' ids appear nowhere the principal can read.
        listed = await lists(gql, scene.token)
        for type_name, pk in f.ids.items():
            with subtests.test(msg=f"{principal}/{key}/lists/{type_name}"):
                assert to_global_id(type_name.split(":")[0], pk) not in listed
    assert ran >= 40, ran


LISTS = (
    "{ jobs(first: 500) { nodes { id } } }",
    "{ managedComputers(first: 500) { nodes { id } } }",
    "{ backupAgents(first: 500) { nodes { id } } }",
    "{ backupServers(first: 500) { nodes { id } } }",
    "{ backupJobs(first: 500) { nodes { id } } }",
    "{ backupJobSessions(first: 500) { nodes { id } } }",
    "{ agentKeys(first: 500) { nodes { id } } }",
    "{ discoveryRules(first: 500) { nodes { id } } }",
    "{ fileRestores(first: 500) { nodes { id } } }",
    "{ backupReports(first: 500) { nodes { id } } }",
    "{ veeamOneRecords(first: 500) { nodes { id } } }",
    "{ protectedComputers(first: 500) { nodes { id: computerId } } }",
)


async def lists(gql: Any, token: str) -> set[str]:
    """Every id of every workload list the principal may read (refused lists: none)."""
    ids: set[str] = set()
    for document in LISTS:
        body = await gql(document, token=token)
        for connection in (body.get("data") or {}).values():
            if connection is not None:
                ids |= {n["id"] for n in connection["nodes"]}
    return ids


def test_the_table_mostly_reaches_the_object() -> None:
    """Guard against a table of field-level refusals only: for every principal, attempts on
    fields it may use test scope (NOT_FOUND), not the matrix."""

    def principal(key: str):
        org, role = key.split(":")[:2]
        portal = Portal.RESELLER if org in {"Provider", "R1", "R2"} else Portal.CLIENT
        return make_principal(portal, role)

    for key in FOREIGN:
        p = principal(key)
        reaching = [
            a.name for a in ATTEMPTS if any(engine.allows(p, cap, a.action) for cap in a.family)
        ]
        assert len(reaching) >= 5, (key, reaching)


GENERATE = (
    "mutation($input: BackupReportGenerateInput!) { backupReportGenerate(input: $input) "
    "{ created report { id } } }"
)


@pytest.mark.usefixtures("no_broker")
async def test_a_report_in_flight_is_never_handed_to_another_requester(world: World, gql) -> None:
    """A report covers what its requester sees: the owner's company-wide report in flight is
    not what an A1-East Location Administrator gets (they could not even read it), nor the
    other way round; the same requester asking again gets the same report."""
    ask = {
        "input": {
            "companyId": org_gid(world.orgs["A1"]),
            "periodStart": "2026-10-01",
            "periodEnd": "2026-10-31",
        }
    }
    made: dict[str, str] = {}
    for key in ("A1:Company Owner", A1_LOCATION_ADMIN, "A1:Company Owner", A1_LOCATION_ADMIN):
        body = await gql(GENERATE, ask, token=world.tokens[key])
        answer = body["data"]["backupReportGenerate"]
        assert answer["created"] is (key not in made), (key, body)
        assert made.setdefault(key, answer["report"]["id"]) == answer["report"]["id"]
        one = await gql(_q("backupReport"), {"id": answer["report"]["id"]}, token=world.tokens[key])
        assert one["data"]["backupReport"] == {"id": answer["report"]["id"]}, one
    assert len(set(made.values())) == 2
