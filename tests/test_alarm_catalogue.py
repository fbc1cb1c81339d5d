"""The alarm catalogue and its evaluators: every template fires on data that is in alarm and
not on data next to it (below a threshold, outside a window, cleared by a later success), with
the severity of the level reached, the owner / location / Subtenant of the object, scope
narrowing by organization, and a statement count that does not grow with the objects.

Each scenario creates fresh objects (named by `i`) on top of the shared fleet and returns the
conditions it expects; running it twice doubles the objects in alarm, which the statement
count test uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from app.alarms.catalogue import CATALOGUE, Condition, EvalScope, validate_thresholds
from app.alarms.evaluators.base import stamp
from app.alarms.evaluators.security import address_id
from app.errors import BadInput
from app.models import (
    AgentStatus,
    AlarmSeverity,
    AlarmTemplate,
    AuditEntry,
    BackupJobKind,
    BackupResource,
    BackupServer,
    Certificate,
    CloudGateway,
    CloudRepository,
    DiscoveryKind,
    DiscoveryRule,
    FailoverPlan,
    FailoverSession,
    FailoverSessionState,
    FileRestoreRequest,
    GatewayPool,
    GatewaySelection,
    HardwarePlan,
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    Invoice,
    InvoiceState,
    InvoiceType,
    Job,
    JobRunState,
    JobState,
    LicensedProduct,
    LicenseUsage,
    ReplicaState,
    RestoreState,
    RuleKind,
    ServerKind,
    SessionKind,
    SessionResult,
    Severity,
    Subtenant,
    TenantAccount,
    TenantAccountType,
    User,
    VeeamOneRecord,
    VmReplica,
)
from tests.factories import World, password_hash
from tests.querycount import count_queries
from tests.workload_fleet import (
    NOW,
    Fleet,
    _computer,
    _job,
    _subtenant_role,
    add_operations,
    build_fleet,
)

E, W = AlarmSeverity.ERROR, AlarmSeverity.WARNING


@dataclass
class Ctx:
    world: World
    fleet: Fleet
    thresholds: dict[str, Any] = field(default_factory=dict)

    def org(self, key: str) -> int:
        return self.world.orgs[key].id

    def loc(self, key: str) -> int:
        return self.world.locations[key].id

    @property
    def provider(self) -> int:
        return self.org("Provider")

    @property
    def sub_org(self) -> str:
        return next(iter(self.fleet.subtenants))

    async def machine(self, i: int, tag: str, org: str = "A1", loc: str = "A1-Default", **kw: Any):
        company = self.world.orgs[org]
        computer = await _computer(company, self.loc(loc), f"{tag}{i}-{org}", kw.pop("sub", None))
        if kw:
            await type(computer).filter(id=computer.id).update(**kw)
        job = await _job(
            company, self.loc(loc), f"{tag}{i}-{org}-job", BackupJobKind.AGENT, computer=computer
        )
        agent = await computer.agent
        return computer, agent, job

    async def account(self, i: int, tag: str, org: str = "A1", **kw: Any) -> TenantAccount:
        return await TenantAccount.create(
            company=self.world.orgs[org],
            name=f"{tag}{i}-{org}",
            type=TenantAccountType.STANDALONE,
            password_hash=password_hash(),
            **kw,
        )


# (object type, object id, severity, organization, location, subtenant)
Expect = tuple[str, int, AlarmSeverity, int, int | None, int | None]
Scenario = Callable[[Ctx, int], Awaitable[list[Expect]]]
SCENARIOS: dict[str, Scenario] = {}
THRESHOLDS: dict[str, dict[str, Any]] = {}


def scenario(key: str, thresholds: dict[str, Any] | None = None):
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[key] = fn
        THRESHOLDS[key] = thresholds or {}
        return fn

    return register


# --- jobs and computers ---------------------------------------------------------------------


async def _last_result(c: Ctx, i: int, fire: SessionResult, other: SessionResult) -> list[Expect]:
    _, _, job = await c.machine(i, "res", "A2", "A2-Default")
    await type(job).filter(id=job.id).update(last_result=fire)
    _, _, quiet = await c.machine(i, "ok", "A2", "A2-Default")
    await type(quiet).filter(id=quiet.id).update(last_result=other)
    sub = c.fleet.subtenants[c.sub_org]
    _, _, own_job = await c.machine(i, "own", c.sub_org, f"{c.sub_org}-Default", sub=sub)
    await type(own_job).filter(id=own_job.id).update(last_result=fire)
    sev = E if fire is SessionResult.FAILED else W
    return [
        ("BackupJob", job.id, sev, c.org("A2"), c.loc("A2-Default"), None),
        ("BackupJob", own_job.id, sev, c.org(c.sub_org), c.loc(f"{c.sub_org}-Default"), sub.id),
    ]


@scenario("job_session_failed")
async def _job_failed(c: Ctx, i: int) -> list[Expect]:
    return await _last_result(c, i, SessionResult.FAILED, SessionResult.WARNING)


@scenario("job_session_warning")
async def _job_warning(c: Ctx, i: int) -> list[Expect]:
    return await _last_result(c, i, SessionResult.WARNING, SessionResult.FAILED)


@scenario("job_running_too_long")
async def _too_long(c: Ctx, i: int) -> list[Expect]:
    _, _, slow = await c.machine(i, "slow", "A1", "A1-East")
    await (
        type(slow)
        .filter(id=slow.id)
        .update(run_state=JobRunState.RUNNING, last_run_at=NOW - timedelta(hours=9))
    )
    _, _, fine = await c.machine(i, "fine")
    await (
        type(fine)
        .filter(id=fine.id)
        .update(run_state=JobRunState.RUNNING, last_run_at=NOW - timedelta(hours=7))
    )
    return [("BackupJob", slow.id, W, c.org("A1"), c.loc("A1-East"), None)]


@scenario("rpo_exceeded")
async def _rpo(c: Ctx, i: int) -> list[Expect]:
    late, _, _ = await c.machine(i, "late", last_restore_point_at=NOW - timedelta(hours=31))
    await c.machine(i, "recent", last_restore_point_at=NOW - timedelta(hours=23))
    _, _, job = await c.machine(i, "bare", last_restore_point_at=NOW - timedelta(days=9))
    await job.delete()  # no backup job: not a protected computer
    return [("ManagedComputer", late.id, E, c.org("A1"), c.loc("A1-Default"), None)]


@scenario("file_restore_failed")
async def _restore(c: Ctx, i: int) -> list[Expect]:
    async def restore(computer: Any, state: RestoreState, hours_ago: int) -> FileRestoreRequest:
        return await FileRestoreRequest.create(
            company_id=computer.company_id,
            computer=computer,
            paths=["/etc/hosts"],
            destination="/tmp/x",
            state=state,
            error="disk full" if state is RestoreState.FAILED else None,
            finished_at=NOW - timedelta(hours=hours_ago),
        )

    a, _, _ = await c.machine(i, "rs-a", "B1", "B1-Default")
    failed = await restore(a, RestoreState.FAILED, 1)
    b, _, _ = await c.machine(i, "rs-b", "B1", "B1-Default")
    await restore(b, RestoreState.FAILED, 3)
    await restore(b, RestoreState.COMPLETED, 2)  # a later restore of b worked
    await restore(a, RestoreState.FAILED, 100)  # outside the 72 h window (and older)
    return [("FileRestoreRequest", failed.id, E, c.org("B1"), c.loc("B1-Default"), None)]


@scenario("discovery_rule_failed")
async def _discovery(c: Ctx, i: int) -> list[Expect]:
    async def rule(name: str, **kw: Any) -> DiscoveryRule:
        return await DiscoveryRule.create(
            company=c.world.orgs["A1"],
            location_id=c.loc("A1-East"),
            name=f"{name}{i}",
            kind=DiscoveryKind.NETWORK_SCAN,
            **kw,
        )

    errors = await rule("errors", last_result={"found": 1, "errors": ["10.0.0.9: timeout"]})
    await rule("clean", last_result={"found": 3, "new": 1, "known": 2, "errors": []})
    job = await Job.create(
        kind="discovery.run", functionality="DISCOVERY_RULES", state=JobState.FAILED, error="x"
    )
    crashed = await rule("crashed", last_run_job=job)
    return [
        ("DiscoveryRule", errors.id, W, c.org("A1"), c.loc("A1-East"), None),
        ("DiscoveryRule", crashed.id, W, c.org("A1"), c.loc("A1-East"), None),
    ]


# --- agents and servers ---------------------------------------------------------------------


@scenario("backup_agent_offline")
async def _agent_offline(c: Ctx, i: int) -> list[Expect]:
    _, silent, _ = await c.machine(i, "silent", last_heartbeat_at=NOW - timedelta(minutes=45))
    _, lost, _ = await c.machine(i, "lost")
    await type(lost).filter(id=lost.id).update(status=AgentStatus.INACCESSIBLE)
    await c.machine(i, "quiet", last_heartbeat_at=NOW - timedelta(minutes=20))
    where = (c.org("A1"), c.loc("A1-Default"), None)
    return [("BackupAgent", silent.id, E, *where), ("BackupAgent", lost.id, E, *where)]


@scenario("backup_agent_error")
async def _agent_error(c: Ctx, i: int) -> list[Expect]:
    _, bad, _ = await c.machine(i, "bad")
    _, meh, _ = await c.machine(i, "meh")
    await type(bad).filter(id=bad.id).update(status=AgentStatus.ERROR)
    await type(meh).filter(id=meh.id).update(status=AgentStatus.WARNING)
    where = (c.org("A1"), c.loc("A1-Default"), None)
    return [("BackupAgent", bad.id, E, *where), ("BackupAgent", meh.id, W, *where)]


@scenario("management_agent_offline")
async def _mgmt_offline(c: Ctx, i: int) -> list[Expect]:
    sub = c.fleet.subtenants[c.sub_org]
    silent, _, _ = await c.machine(
        i,
        "m-silent",
        c.sub_org,
        f"{c.sub_org}-Default",
        sub=sub,
        last_heartbeat_at=NOW - timedelta(hours=2),
    )
    lost, _, _ = await c.machine(i, "m-lost", agent_status=AgentStatus.INACCESSIBLE)
    await c.machine(i, "m-fresh", last_heartbeat_at=NOW - timedelta(minutes=29))
    return [
        ("ManagedComputer", silent.id, E, c.org(c.sub_org), c.loc(f"{c.sub_org}-Default"), sub.id),
        ("ManagedComputer", lost.id, E, c.org("A1"), c.loc("A1-Default"), None),
    ]


@scenario("management_agent_error")
async def _mgmt_error(c: Ctx, i: int) -> list[Expect]:
    bad, _, _ = await c.machine(i, "m-bad", agent_status=AgentStatus.ERROR)
    meh, _, _ = await c.machine(i, "m-meh", agent_status=AgentStatus.WARNING)
    await c.machine(i, "m-unknown", agent_status=AgentStatus.UNKNOWN)
    where = (c.org("A1"), c.loc("A1-Default"), None)
    return [("ManagedComputer", bad.id, E, *where), ("ManagedComputer", meh.id, W, *where)]


async def _server(c: Ctx, i: int, tag: str, **kw: Any) -> BackupServer:
    return await BackupServer.create(
        company=c.world.orgs["A2"],
        location_id=c.loc("A2-Default"),
        uid=f"{tag}{i}",
        name=f"{tag}{i}",
        **{
            "kind": ServerKind.BACKUP_AND_REPLICATION,
            "status": AgentStatus.HEALTHY,
            "last_heartbeat_at": NOW,
            **kw,
        },
    )


@scenario("backup_server_offline")
async def _server_offline(c: Ctx, i: int) -> list[Expect]:
    silent = await _server(c, i, "s-silent", last_heartbeat_at=NOW - timedelta(minutes=31))
    lost = await _server(c, i, "s-lost", status=AgentStatus.INACCESSIBLE)
    await _server(c, i, "s-ok", last_heartbeat_at=NOW - timedelta(minutes=10))
    where = (c.org("A2"), c.loc("A2-Default"), None)
    return [("BackupServer", silent.id, E, *where), ("BackupServer", lost.id, E, *where)]


@scenario("backup_server_error")
async def _server_error(c: Ctx, i: int) -> list[Expect]:
    bad = await _server(c, i, "s-bad", status=AgentStatus.ERROR)
    meh = await _server(c, i, "s-meh", status=AgentStatus.WARNING)
    where = (c.org("A2"), c.loc("A2-Default"), None)
    return [("BackupServer", bad.id, E, *where), ("BackupServer", meh.id, W, *where)]


@scenario("veeam_one_errors")
async def _veeam_one(c: Ctx, i: int) -> list[Expect]:
    noisy = await _server(c, i, "v1-noisy", kind=ServerKind.VEEAM_ONE)
    calm = await _server(c, i, "v1-calm", kind=ServerKind.VEEAM_ONE)
    for n, (server, severity, hours_ago) in enumerate(
        [
            (noisy, Severity.ERROR, 1),
            (noisy, Severity.ERROR, 2),
            (calm, Severity.ERROR, 30),  # outside the 24 h window
            (calm, Severity.WARNING, 1),
        ]
    ):
        await VeeamOneRecord.create(
            company_id=server.company_id,
            location_id=server.location_id,
            server=server,
            uid=f"r{n}",
            object_name="vm",
            metric="state",
            severity=severity,
            recorded_at=NOW - timedelta(hours=hours_ago),
        )
    return [("BackupServer", noisy.id, E, c.org("A2"), c.loc("A2-Default"), None)]


# --- quotas and plans -----------------------------------------------------------------------


@scenario("cloud_storage_quota")
async def _storage(c: Ctx, i: int) -> list[Expect]:
    repo = await CloudRepository.create(name=f"q-repo{i}", capacity_gb=10**6)
    out: list[Expect] = []
    for n, (used, level) in enumerate([(850, W), (960, E), (799, None)]):
        account = await c.account(i, f"q{n}-", "B1")
        resource = await BackupResource.create(
            tenant_account=account, repository=repo, quota_gb=1000, used_gb=used
        )
        if level:
            out.append(("BackupResource", resource.id, level, c.org("B1"), None, None))
    return out


@scenario("subtenant_quota")
async def _subtenant(c: Ctx, i: int) -> list[Expect]:
    repo = await CloudRepository.create(name=f"st-repo{i}", capacity_gb=10**6)
    account = await c.account(i, "st", "A2")
    resource = await BackupResource.create(tenant_account=account, repository=repo, quota_gb=10**4)

    async def sub(tag: str, quota: int | None, used: int) -> Subtenant:
        user = await User.create(
            email=f"{tag}{i}@st.test",
            name=tag,
            password_hash=password_hash(),
            role=_subtenant_role(),
            organization=c.world.orgs["A2"],
        )
        return await Subtenant.create(user=user, resource=resource, quota_gb=quota, used_gb=used)

    hot, warm = await sub("hot", 100, 96), await sub("warm", 100, 80)
    await sub("cool", 100, 79)
    await sub("unlimited", None, 9999)  # no quota of its own: the company's quota applies
    a2 = c.org("A2")
    return [
        ("Subtenant", hot.id, E, a2, None, hot.id),
        ("Subtenant", warm.id, W, a2, None, warm.id),
    ]


@scenario("cloud_repository_capacity")
async def _repository(c: Ctx, i: int) -> list[Expect]:
    warm = await CloudRepository.create(name=f"warm{i}", capacity_gb=100, used_gb=85)
    full = await CloudRepository.create(name=f"full{i}", capacity_gb=100, used_gb=90)
    await CloudRepository.create(name=f"cool{i}", capacity_gb=100, used_gb=79)
    return [
        ("CloudRepository", warm.id, W, c.provider, None, None),
        ("CloudRepository", full.id, E, c.provider, None, None),
    ]


async def _plans(c: Ctx, i: int, measure: str) -> list[Expect]:
    """Usage comes from the replicas: disks always, CPU and memory only while powered on."""
    plan = await HardwarePlan.create(name=f"plan-{measure}{i}", cpu_mhz=1000, memory_mb=2000)
    await HardwarePlanDatastore.create(plan=plan, datastore="ds1", quota_gb=60)
    await HardwarePlanDatastore.create(plan=plan, datastore="ds2", quota_gb=40)
    on, off, back = ReplicaState.FAILOVER, ReplicaState.READY, ReplicaState.FAILBACK
    replicas = {  # (state, cpu MHz, memory MB, storage GB) of each subscription's replicas
        # 90 % CPU, 98 % memory, 100 % storage (the powered-off replica's disks count).
        "hot": ((on, 600, 1200, 30), (on, 300, 760, 30), (off, 4000, 8000, 40)),
        # Far above the plan's CPU and memory, but powered off: only 79 % storage.
        "cold": ((off, 5000, 9000, 50), (back, 5000, 9000, 29)),
    }
    out: list[Expect] = []
    for tag, vms in replicas.items():
        account = await c.account(i, f"hw-{measure}-{tag}", "P1")
        sub = await HardwarePlanSubscription.create(tenant_account=account, plan=plan)
        for n, (state, cpu, mem, gb) in enumerate(vms):
            await VmReplica.create(
                tenant_account=account,
                subscription=sub,
                name=f"vm{n}",
                source_vm=f"vm{n}",
                state=state,
                cpu_mhz=cpu,
                memory_mb=mem,
                storage_gb=gb,
            )
        if tag == "hot":
            level = W if measure == "cpu" else E
            out.append(("HardwarePlanSubscription", sub.id, level, c.org("P1"), None, None))
    return out


@scenario("hardware_plan_cpu")
async def _plan_cpu(c: Ctx, i: int) -> list[Expect]:
    return await _plans(c, i, "cpu")


@scenario("hardware_plan_memory")
async def _plan_memory(c: Ctx, i: int) -> list[Expect]:
    return await _plans(c, i, "memory")


@scenario("hardware_plan_storage")
async def _plan_storage(c: Ctx, i: int) -> list[Expect]:
    return await _plans(c, i, "storage")


# --- tenants, gateways, certificates, failover ----------------------------------------------


@scenario("tenant_lease_expiring")
async def _lease(c: Ctx, i: int) -> list[Expect]:
    soon = await c.account(i, "soon", lease_expires_at=NOW + timedelta(days=10))
    sooner = await c.account(i, "sooner", lease_expires_at=NOW + timedelta(days=2))
    ended = await c.account(i, "ended", lease_expires_at=NOW - timedelta(days=1))
    await c.account(i, "later", lease_expires_at=NOW + timedelta(days=30))
    await c.account(i, "off", enabled=False, lease_expires_at=NOW + timedelta(days=1))
    a1 = c.org("A1")
    return [
        ("TenantAccount", soon.id, W, a1, None, None),
        ("TenantAccount", sooner.id, E, a1, None, None),
        ("TenantAccount", ended.id, E, a1, None, None),
    ]


@scenario("tenant_disabled_with_data")
async def _disabled(c: Ctx, i: int) -> list[Expect]:
    repo = await CloudRepository.create(name=f"d-repo{i}", capacity_gb=1000)
    with_replica = await c.account(i, "d-rep", "A2", enabled=False)
    await VmReplica.create(tenant_account=with_replica, name="vm1", source_vm="vm1")
    with_backups = await c.account(i, "d-bak", "A2", enabled=False)
    await BackupResource.create(tenant_account=with_backups, repository=repo, quota_gb=9, used_gb=5)
    empty = await c.account(i, "d-empty", "A2", enabled=False)
    await BackupResource.create(tenant_account=empty, repository=repo, quota_gb=9, used_gb=0)
    enabled = await c.account(i, "d-on", "A2")
    await VmReplica.create(tenant_account=enabled, name="vm2", source_vm="vm2")
    return [
        ("TenantAccount", with_replica.id, W, c.org("A2"), None, None),
        ("TenantAccount", with_backups.id, W, c.org("A2"), None, None),
    ]


async def _pool(i: int, tag: str, enabled: bool | None) -> GatewayPool:
    pool = await GatewayPool.create(name=f"{tag}{i}")
    if enabled is not None:
        await CloudGateway.create(
            name=f"gw-{tag}{i}", address=f"{tag}{i}.gw.test", enabled=enabled, pool=pool
        )
    return pool


@scenario("tenant_no_gateway")
async def _no_gateway(c: Ctx, i: int) -> list[Expect]:
    dead, live = await _pool(i, "dead", False), await _pool(i, "live", True)
    stranded = await c.account(i, "stranded", "B1", gateway_selection=GatewaySelection.POOLS)
    await stranded.gateway_pools.add(dead)
    served = await c.account(i, "served", "B1", gateway_selection=GatewaySelection.POOLS)
    await served.gateway_pools.add(dead, live)
    # An enabled gateway failing its probes serves nobody; one never probed (or answering) does.
    failing = await _pool(i, "failing", True)
    await CloudGateway.filter(pool=failing).update(reachable=False)
    cut_off = await c.account(i, "cut-off", "B1", gateway_selection=GatewaySelection.POOLS)
    await cut_off.gateway_pools.add(failing)
    answering = await _pool(i, "answering", True)
    await CloudGateway.filter(pool=answering).update(reachable=True)
    reached = await c.account(i, "reached", "B1", gateway_selection=GatewaySelection.POOLS)
    await reached.gateway_pools.add(failing, answering)
    return [
        ("TenantAccount", stranded.id, E, c.org("B1"), None, None),
        ("TenantAccount", cut_off.id, E, c.org("B1"), None, None),
    ]


@scenario("cloud_gateway_unreachable")
async def _gateway(c: Ctx, i: int) -> list[Expect]:
    used, unused = await _pool(i, "used", False), await _pool(i, "unused", False)
    account = await c.account(i, "pooled", "B1", gateway_selection=GatewaySelection.POOLS)
    await account.gateway_pools.add(used)
    off = await c.account(
        i, "pooled-off", "B1", enabled=False, gateway_selection=GatewaySelection.POOLS
    )
    await off.gateway_pools.add(unused)  # a disabled account depends on nothing
    gateway = await CloudGateway.get(pool=used)

    # Probes (tests/test_gateway_probes.py writes them for real): an enabled gateway whose last
    # probe failed fires; one that answered, one never probed and a disabled one that failed
    # and nobody uses do not.
    def probed(tag: str, reachable: bool | None, enabled: bool = True) -> Any:
        return CloudGateway.create(
            name=f"probe-{tag}{i}",
            address=f"{tag}{i}.gw.test",
            enabled=enabled,
            reachable=reachable,
            last_probe_at=None if reachable is None else NOW,
            last_probe_error="" if reachable is not False else "connection refused",
        )

    down = await probed("down", False)
    await probed("up", True)
    await probed("new", None)
    await probed("off", False, enabled=False)
    return [
        ("CloudGateway", gateway.id, E, c.provider, None, None),
        ("CloudGateway", down.id, E, c.provider, None, None),
    ]


@scenario("certificate_expiring")
async def _certificate(c: Ctx, i: int) -> list[Expect]:
    async def cert(tag: str, days: int, active: bool = True) -> Certificate:
        return await Certificate.create(
            name=f"{tag}{i}",
            certificate_pem="-",
            key_encrypted="-",
            subject=f"CN={tag}",
            issuer="CN=ca",
            not_before=NOW - timedelta(days=300),
            not_after=NOW + timedelta(days=days, hours=1),
            fingerprint_sha256=f"{tag}{i}".ljust(64, "0"),
            active=active,
        )

    soon, sooner = await cert("soon", 20), await cert("sooner", 5)
    await cert("later", 60)
    await cert("retired", 1, active=False)
    return [
        ("Certificate", soon.id, W, c.provider, None, None),
        ("Certificate", sooner.id, E, c.provider, None, None),
    ]


@scenario("failover_session_failed")
async def _failover(c: Ctx, i: int) -> list[Expect]:
    company = c.world.orgs["A1"]

    async def plan(tag: str, *states: FailoverSessionState) -> list[FailoverSession]:
        p = await FailoverPlan.create(company=company, name=f"{tag}{i}")
        return [
            await FailoverSession.create(
                plan=p,
                company_id=company.id,
                kind=SessionKind.TEST,
                state=s,
                finished_at=NOW - timedelta(minutes=10 * (len(states) - n)),
            )
            for n, s in enumerate(states)
        ]

    F, OK = FailoverSessionState.FAILED, FailoverSessionState.SUCCEEDED
    failed = await plan("broken", F)
    await plan("fixed", F, OK)
    relapsed = await plan("relapsed", OK, F, F)
    await plan("running", FailoverSessionState.RUNNING)
    return [
        ("FailoverSession", failed[0].id, E, c.org("A1"), None, None),
        ("FailoverSession", relapsed[2].id, E, c.org("A1"), None, None),
    ]


# --- billing, licensing, security -----------------------------------------------------------


@scenario("invoice_unpaid")
async def _invoice(c: Ctx, i: int) -> list[Expect]:
    async def invoice(tag: str, state: InvoiceState, due_days_ago: int) -> Invoice:
        return await Invoice.create(
            customer=c.world.orgs["A2"],
            issuer=c.world.orgs["R1"],
            type=InvoiceType.SUMMARY,
            number=f"{tag}{i}",
            period_start=NOW.date() - timedelta(days=60 + 40 * i + due_days_ago + len(tag)),
            period_end=NOW.date() - timedelta(days=31),
            issued_on=NOW.date() - timedelta(days=30),
            due_on=NOW.date() - timedelta(days=due_days_ago),
            currency="EUR",
            total=12,
            state=state,
            generated=True,
        )

    late = await invoice("late", InvoiceState.UNPAID, 10)
    overdue = await invoice("overdue", InvoiceState.OVERDUE, 30)
    await invoice("fresh", InvoiceState.UNPAID, 3)
    await invoice("paid", InvoiceState.PAID, 30)
    return [
        ("Invoice", late.id, W, c.org("A2"), None, None),
        ("Invoice", overdue.id, W, c.org("A2"), None, None),
    ]


@scenario("license_over_quota", {"AGENT_SERVER": 5, "MICROSOFT_365_USER": 100})
async def _license(c: Ctx, i: int) -> list[Expect]:
    month = NOW.date().replace(day=1)
    out: list[Expect] = []
    for org, units in (("A1", 6 + i), ("A2", 5 + i), ("B1", 7 + i)):
        row = await LicenseUsage.get(company_id=c.org(org), product=LicensedProduct.AGENT_SERVER)
        await LicenseUsage.filter(id=row.id).update(units=units)
        if units > 5:
            out.append(("LicenseUsage", row.id, W, c.org(org), None, None))
    # last month's usage and products without a quota are not watched
    await LicenseUsage.get_or_create(
        company_id=c.org("P1"),
        product=LicensedProduct.AGENT_SERVER,
        month=(month - timedelta(days=1)).replace(day=1),
        defaults={"units": 100},
    )
    await LicenseUsage.get_or_create(
        company_id=c.org("P1"),
        product=LicensedProduct.VBR_WORKLOAD,
        month=month,
        defaults={"units": 10**6},
    )
    return out


async def _failures(n: int, *, user: Any = None, address: str, minutes_ago: int = 1) -> None:
    for k in range(n):
        await AuditEntry.create(
            at=NOW - timedelta(minutes=minutes_ago, seconds=k),
            action="login",
            object_type="User",
            object_id=str(user.id) if user else "",
            organization_id=user.organization_id if user else None,
            client_address=address,
            outcome="FAILURE",
            details={"email": user.email if user else "nobody@example.test"},
        )


@scenario("suspicious_logins_account")
async def _logins_account(c: Ctx, i: int) -> list[Expect]:
    users = list(c.world.users.values())
    target, near, old = users[3 * i], users[3 * i + 1], users[3 * i + 2]
    await _failures(5, user=target, address=f"10.0.{i}.1")
    await _failures(4, user=near, address=f"10.0.{i}.2")
    await _failures(9, user=old, address=f"10.0.{i}.3", minutes_ago=20)
    await _failures(9, address=f"10.0.{i}.4")  # unknown e-mails: per address only
    return [("User", target.id, W, target.organization_id, None, None)]


@scenario("suspicious_logins_address")
async def _logins_address(c: Ctx, i: int) -> list[Expect]:
    user = next(u for k, u in c.world.users.items() if k.startswith("A1:"))
    await _failures(12, user=user, address=f"203.0.113.{i}")
    await _failures(8, address=f"203.0.113.{i}")
    await _failures(19, address=f"198.51.100.{i}")
    return [("ClientAddress", address_id(f"203.0.113.{i}"), W, c.provider, None, None)]


# --- the tests ------------------------------------------------------------------------------

MESSAGES = {
    # Moments, not durations: an unchanged condition reads the same at every evaluation.
    "rpo_exceeded": f"no successful backup since {stamp(NOW - timedelta(hours=31))} (limit 24 h)",
    "job_running_too_long": f"running since {stamp(NOW - timedelta(hours=9))} (limit 8 h)",
    "backup_agent_offline": (
        f"no heartbeat since {stamp(NOW - timedelta(minutes=45))} (limit 30 min)"
    ),
    "cloud_storage_quota": "85% used (850 of 1000 GB; limit 80%)",
    "tenant_lease_expiring": f"lease ends {stamp(NOW + timedelta(days=10))}",
    "veeam_one_errors": "2 Veeam ONE error record(s) in the last 24 h",
    "invoice_unpaid": f"unpaid since its due date {NOW.date() - timedelta(days=10)}",
    "suspicious_logins_account": "5 failed logins in 15 min (limit 5",
    "tenant_disabled_with_data": "disabled while it holds 1 replica(s)",
    "license_over_quota": "6 AGENT_SERVER units used in November 2026 (quota 5)",
    "file_restore_failed": "disk full",
    "hardware_plan_cpu": "CPU 90% used (900 of 1000 MHz; limit 80%)",
    "cloud_gateway_unreachable": "disabled while 1 tenant account(s) use its pool",
}


@pytest.fixture
async def ctx(world: World) -> Ctx:
    fleet = await add_operations(world, await build_fleet(world))
    # a gateway for every account allowed to use all of them
    await CloudGateway.create(name="main", address="gw.example.test")
    return Ctx(world, fleet)


def template(
    key: str, thresholds: dict[str, Any] | None = None, severity: Any = None
) -> AlarmTemplate:
    d = CATALOGUE[key]
    return AlarmTemplate(
        catalogue_key=key,
        name=d.name,
        kind=d.kind,
        severity=severity or d.default_severity,
        thresholds=THRESHOLDS.get(key, {}) if thresholds is None else thresholds,
    )


async def run(key: str, orgs: list[int] | None = None, **kw: Any) -> list[Condition]:
    return await CATALOGUE[key].evaluate(template(key, **kw), EvalScope(NOW, orgs))


def seen(conditions: list[Condition]) -> list[Expect]:
    return sorted(
        (c.object_type, c.object_id, c.severity, c.organization_id, c.location_id, c.subtenant_id)
        for c in conditions
    )


def test_catalogue_has_every_kind_of_rule_with_unique_keys_and_names() -> None:
    from app.alarms.evaluators import agents, billing, quotas, security, tenants, workloads

    modules = (agents, billing, quotas, security, tenants, workloads)
    keys = [d.key for m in modules for d in m.DEFINITIONS]
    assert len(keys) == len(set(keys)) == len(CATALOGUE) >= 22
    assert len({d.name for d in CATALOGUE.values()}) == len(CATALOGUE)  # (owner, name) unique
    assert {d.kind for d in CATALOGUE.values()} == set(RuleKind)
    assert set(SCENARIOS) == set(CATALOGUE)
    for key, d in CATALOGUE.items():
        assert d.source and d.description and d.object_type, key
        assert validate_thresholds(key, {}) == d.default_thresholds
        assert validate_thresholds(key, d.default_thresholds) == d.default_thresholds
        assert set(d.default_thresholds) == set(d.limits), key


@pytest.mark.parametrize("key", sorted(CATALOGUE))
async def test_template_fires_on_its_data_only(ctx: Ctx, key: str) -> None:
    assert await run(key) == [], "the healthy fleet raises nothing"
    expected = await SCENARIOS[key](ctx, 0)
    assert expected
    conditions = await run(key)
    assert seen(conditions) == sorted(expected)
    assert all(c.message and c.object_name for c in conditions)
    assert {c.object_type for c in conditions} == {CATALOGUE[key].object_type}
    if key in MESSAGES:
        assert any(MESSAGES[key] in c.message for c in conditions), [c.message for c in conditions]
    # scope: the owners' organizations see them, every other organization sees nothing
    owners = sorted({e[3] for e in expected})
    assert seen(await run(key, owners)) == sorted(expected)
    others = [o.id for o in ctx.world.orgs.values() if o.id not in owners]
    assert await run(key, others) == []
    assert await run(key, []) == []


@pytest.mark.parametrize("key", sorted(CATALOGUE))
async def test_statements_do_not_grow_with_the_objects(ctx: Ctx, key: str) -> None:
    await SCENARIOS[key](ctx, 0)
    with count_queries() as once:
        first = await run(key)
    await SCENARIOS[key](ctx, 1)
    with count_queries() as twice:
        second = await run(key)
    assert len(second) > len(first) > 0
    assert once.count == twice.count <= 3, (str(once), str(twice))


async def test_thresholds_and_severity_come_from_the_template(ctx: Ctx) -> None:
    await SCENARIOS["cloud_storage_quota"](ctx, 0)
    levels = sorted(c.severity for c in await run("cloud_storage_quota"))
    assert levels == [E, W]
    lower = await run("cloud_storage_quota", thresholds={"warning": 50, "error": 85})
    assert sorted(c.severity for c in lower) == [E, E, W]  # 799 → W, 850 and 960 → E
    assert await run("cloud_storage_quota", thresholds={"warning": 97, "error": 99}) == []

    await SCENARIOS["rpo_exceeded"](ctx, 0)
    assert len(await run("rpo_exceeded")) == 1
    assert await run("rpo_exceeded", thresholds={"hours": 48}) == []
    assert len(await run("rpo_exceeded", thresholds={"hours": 12})) == 2  # 23 h is late too

    await SCENARIOS["job_session_failed"](ctx, 0)
    assert {c.severity for c in await run("job_session_failed", severity=W)} == {W}

    # a license quota of 0 watches nothing: the default template raises nothing
    await SCENARIOS["license_over_quota"](ctx, 0)
    assert await run("license_over_quota", thresholds={}) == []


async def test_failover_alarm_clears_with_a_later_success(ctx: Ctx) -> None:
    [failed, relapsed] = await SCENARIOS["failover_session_failed"](ctx, 0)
    session = await FailoverSession.get(id=relapsed[1])
    await FailoverSession.create(
        plan_id=session.plan_id,
        company_id=session.company_id,
        kind=SessionKind.FAILOVER,
        state=FailoverSessionState.SUCCEEDED,
        finished_at=NOW,
    )
    assert [c.object_id for c in await run("failover_session_failed")] == [failed[1]]


@pytest.mark.parametrize(
    ("key", "thresholds", "field", "fragment"),
    [
        ("rpo_exceeded", {"bogus": 1}, "input.thresholds.bogus", "unknown threshold"),
        ("rpo_exceeded", {"hours": 0}, "input.thresholds.hours", "between 1 and 2160 hours"),
        ("rpo_exceeded", {"hours": "24"}, "input.thresholds.hours", "integer"),
        ("rpo_exceeded", {"hours": True}, "input.thresholds.hours", "integer"),
        ("cloud_storage_quota", {"warning": 101}, "input.thresholds.warning", "between 1 and 100"),
        ("cloud_storage_quota", {"warning": 96}, "input.thresholds.warning", "must not exceed"),
        ("tenant_lease_expiring", {"error": 20}, "input.thresholds.warning", "at least"),
        ("license_over_quota", {"NOT_A_PRODUCT": 3}, "input.thresholds.NOT_A_PRODUCT", "unknown"),
        ("no_such_template", {}, "input.catalogueKey", "unknown alarm template"),
    ],
)
def test_validate_thresholds_names_the_field(
    key: str, thresholds: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(BadInput) as caught:
        validate_thresholds(key, thresholds)
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_validate_thresholds_merges_over_the_defaults() -> None:
    assert validate_thresholds("cloud_storage_quota", {"error": 90}) == {"warning": 80, "error": 90}
    assert validate_thresholds("license_over_quota", {"AGENT_SERVER": 40})["AGENT_SERVER"] == 40
    assert validate_thresholds("suspicious_logins_account", {"count": 3}) == {
        "count": 3,
        "minutes": 15,
    }
