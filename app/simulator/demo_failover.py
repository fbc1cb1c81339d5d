"""The demo's cloud failover: per demo company, a few VM replicas on its tenant account of the
demo cloud repository (restore points every 4 hours over the last 2 days) and one READY cloud
failover plan of them; for one company a finished test of its plan, so the sessions, their
steps and their log can be explored at once.

The replicas are bound to the tenant account's subscription of the demo hardware plan ("DR
Standard", granted to the company's reseller where there is one) and carry their VM's size by
role, so the subscriptions show storage used at once (Initech's file server puts it above the
storage alarm's warning level) and CPU and memory used while a failover has VMs up.

The plans are built through the failover plans service, and the test is really run (the runs
service, then the executor, in this process) on the hypervisor simulator with a short boot
time, whatever driver the settings name: demo replicas never reach a real hypervisor. The
actor is the demo provider's primary-role user (the services need a principal; the audit log
shows who "did" it). Companies that have their plan already are left alone: seeding twice
adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from app.integrations import hypervisor
from app.integrations.simulated_hypervisor import SimulatedHypervisor
from app.jobs.context import JobContext
from app.models import Organization, OrgKind, ResellerHardwarePlan, TenantAccount
from app.models.cloud import (
    HardwarePlan,
    HardwarePlanDatastore,
    HardwarePlanSubscription,
    ReplicaKind,
    VmReplica,
)
from app.models.failover import FailoverPlan, FailoverSession, FailurePolicy, PlanType, SessionKind
from app.services import failover_executor, failover_plan_vms, failover_plans, failover_runs, jobs
from app.services.actor import Actor
from app.services.failover_plan_vms import VmInput
from app.simulator.demo_actor import DEMO_WORKER, staff_actor
from app.simulator.demo_fleet import REPOSITORY

PLAN_NAME = "Headquarters to the cloud"
PLAN_DESCRIPTION = (
    "Brings the headquarters up on the provider's cloud host: the domain controller first, "
    "then the databases, then the applications."
)
# Per company: the plan's VMs in boot order, each with the delay (seconds) after it.
DEMO_SITES: dict[str, tuple[tuple[str, int], ...]] = {
    # The tested plan has no delays: its run takes well under a second while seeding.
    "Acme Corp": (("dc01", 0), ("sql01", 0), ("app01", 0), ("web01", 0), ("web02", 0)),
    "Globex": (("dc01", 30), ("sql01", 10), ("web01", 0)),
    "Initech": (("dc01", 20), ("sql01", 15), ("file01", 0), ("web01", 0)),
    "Umbrella Labs": (
        ("dc01", 30),
        ("dc02", 10),
        ("sql01", 15),
        ("app01", 5),
        ("web01", 0),
        ("web02", 0),
    ),
    "Hooli": (("dc01", 25), ("sql01", 0), ("web01", 0)),
    "Stark Industries": (("dc01", 30), ("sql01", 20), ("sql02", 10), ("app01", 5), ("web01", 0)),
}
TESTED_COMPANY = "Acme Corp"
# The demo hardware plan: 40 GHz, 64 GB of memory, 2.5 TB on one datastore (no networks: the
# demo has no VLAN ranges to give them).
HARDWARE_PLAN = "DR Standard"
PLAN_CPU_MHZ, PLAN_MEMORY_MB = 40_000, 65_536
DATASTORE, DATASTORE_GB = "replica-ds01", 2_500
# A replicated VM's resources by its role (its name without the number): vCPUs, memory MB,
# disks GB; a vCPU counts at the host's clock.
HOST_MHZ = 2_400
VM_SIZES: dict[str, tuple[int, int, int]] = {
    "dc": (2, 4_096, 80),
    "sql": (4, 16_384, 500),
    "app": (4, 8_192, 120),
    "web": (2, 4_096, 60),
    "file": (2, 4_096, 1_500),
}
POINT_EVERY = timedelta(hours=4)
POINT_SPAN = timedelta(days=2)
# The simulator's boot time for the demo test (the settings' default too).
DEMO_BOOT_SECONDS = 0.05


def restore_points(end: datetime) -> list[str]:
    """Every 4 hours over the 2 days before `end` (on a 4-hour boundary), oldest first."""
    last = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last -= timedelta(hours=last.hour % 4)
    count = POINT_SPAN // POINT_EVERY
    return [(last - POINT_EVERY * i).isoformat() for i in reversed(range(count))]


def vm_size(name: str) -> dict[str, int]:
    """The replica columns of a demo VM's size ("sql01": a database server's)."""
    vcpus, memory_mb, storage_gb = VM_SIZES[name.rstrip("0123456789")]
    return {"cpu_mhz": vcpus * HOST_MHZ, "memory_mb": memory_mb, "storage_gb": storage_gb}


async def _subscription(company: Organization, account: TenantAccount) -> int:
    """The account's subscription of the demo hardware plan (the plan, its datastore and the
    reseller's grant made when missing)."""
    plan, created = await HardwarePlan.get_or_create(
        name=HARDWARE_PLAN, defaults={"cpu_mhz": PLAN_CPU_MHZ, "memory_mb": PLAN_MEMORY_MB}
    )
    if created:
        await HardwarePlanDatastore.create(plan=plan, datastore=DATASTORE, quota_gb=DATASTORE_GB)
    parent = await Organization.get_or_none(id=company.parent_id)  # type: ignore[attr-defined]
    if parent is not None and parent.kind == OrgKind.RESELLER:
        await ResellerHardwarePlan.get_or_create(reseller_id=parent.id, plan_id=plan.id)
    sub, _ = await HardwarePlanSubscription.get_or_create(
        tenant_account_id=account.id, plan_id=plan.id
    )
    return sub.id


async def _replicas(
    account: TenantAccount, names: list[str], points: list[str], subscription_id: int
) -> list[int]:
    """The account's replicas of these names (the missing ones created), in the given order."""
    have = dict(
        await VmReplica.filter(tenant_account_id=account.id, name__in=names).values_list(
            "name", "id"
        )
    )
    slug = account.name.removesuffix("-cloud")
    await VmReplica.bulk_create(
        [
            VmReplica(
                tenant_account_id=account.id,
                name=name,
                source_vm=f"{name}.{slug}.local",
                kind=ReplicaKind.SNAPSHOT,
                restore_points=points,
                subscription_id=subscription_id,
                **vm_size(name),
            )
            for name in names
            if name not in have
        ]
    )
    have = dict(
        await VmReplica.filter(tenant_account_id=account.id, name__in=names).values_list(
            "name", "id"
        )
    )
    return [int(have[name]) for name in names]


@contextmanager
def _run_here() -> Iterator[None]:
    """Jobs sent meanwhile go nowhere (seeding has no worker: the caller runs them), and the
    dispatcher in place before is put back."""

    def nowhere(job_id: int, delay_ms: int | None = None) -> None:
        return None

    previous = jobs._dispatcher
    jobs.set_dispatcher(nowhere)
    try:
        yield
    finally:
        jobs.set_dispatcher(previous)


async def _run_test(actor: Actor, plan: FailoverPlan) -> FailoverSession:
    """A test of the plan, started as a user would and executed in this process."""
    previous = hypervisor._override
    hypervisor.override_hypervisor(SimulatedHypervisor(boot_seconds=DEMO_BOOT_SECONDS))
    try:
        with _run_here():
            session = await failover_runs.start(actor, plan.id, SessionKind.TEST)
        job_id: int = session.job_id  # type: ignore[attr-defined]
        job = await jobs.claim(job_id, DEMO_WORKER)
        if job is None:
            raise RuntimeError(f"the demo test's job {job_id} was claimed elsewhere")
        result = await failover_executor.execute(session.id, JobContext(job, DEMO_WORKER))
        await jobs.succeed(job.id, DEMO_WORKER, result)
    finally:
        hypervisor.override_hypervisor(previous)
    return await FailoverSession.get(id=session.id)


async def seed_demo_failover(end: datetime | None = None) -> int:
    """Replicas and a plan for each demo company without its plan (and the test of the tested
    company's new plan). Returns the plans created."""
    companies = await Organization.filter(
        kind=OrgKind.COMPANY.value, name__in=list(DEMO_SITES)
    ).order_by("id")
    done = set(
        await FailoverPlan.filter(
            company_id__in=[c.id for c in companies], name=PLAN_NAME
        ).values_list("company_id", flat=True)
    )
    todo = [c for c in companies if c.id not in done]
    actor = await staff_actor() if todo else None
    if actor is None:
        return 0
    points = restore_points(end or datetime.now(UTC))
    created = 0
    for company in todo:
        account = (
            await TenantAccount.filter(
                company_id=company.id, backup_resources__repository__name=REPOSITORY
            )
            .order_by("id")
            .first()
        )
        if account is None:  # no demo fleet for this company
            continue
        site = DEMO_SITES[company.name]
        subscription_id = await _subscription(company, account)
        ids = await _replicas(account, [name for name, _ in site], points, subscription_id)
        plan = await failover_plans.create(
            actor,
            company.id,
            PLAN_NAME,
            type=PlanType.CLOUD,
            failure_policy=FailurePolicy.STOP,
            description=PLAN_DESCRIPTION,
            tenant_account_id=account.id,
        )
        vms = [VmInput(rid, delay) for rid, (_, delay) in zip(ids, site, strict=True)]
        await failover_plan_vms.set_vms(actor, plan.id, vms)
        created += 1
        if company.name == TESTED_COMPANY:
            await _run_test(actor, plan)
    return created
