"""`failover.run`: execute a failover session (app/services/failover_executor.py), resumable at
any point: the steps and their outcomes are the checkpoint. Waiting for a VM to boot or for a
delay between VMs parks the job (ContinueLater) instead of holding a worker thread."""

from __future__ import annotations

from typing import Any

from app.authz.matrix import Functionality
from app.jobs.context import ContinueLater, JobCancelled, JobContext, JobLost, is_transient
from app.jobs.registry import JobKind, register
from app.models.failover import FailoverSessionState
from app.services import failover_executor, failover_progress


async def run(ctx: JobContext) -> dict[str, Any]:
    session_id = int(ctx.params["session_id"])
    try:
        return await failover_executor.execute(session_id, ctx)
    except (JobCancelled, JobLost, ContinueLater):
        raise
    except Exception as exc:
        if is_transient(exc) and ctx.attempt < ctx.job.max_attempts:
            raise  # retried later: the run resumes from its steps
        # The job ends here: so does the session, or the plan would stay in progress.
        await failover_progress.finish(
            session_id, FailoverSessionState.FAILED, f"the run stopped: {exc}"[:500]
        )
        raise


RUN = register(
    JobKind(
        name="failover.run",
        label="Failover plan run",
        functionality=Functionality.FAILOVER_PLANS,
        handler=run,
        # Of one delivery: a plan's waits (boots, delays) park the job between deliveries.
        time_limit_seconds=6 * 3600,
        max_attempts=10,
    )
)
