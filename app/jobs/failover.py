"""`failover.run`: execute a failover session (app/services/failover_executor.py), resumable at
any point: the steps and their outcomes are the checkpoint."""

from __future__ import annotations

from typing import Any

from app.authz.matrix import Functionality
from app.jobs.context import JobCancelled, JobContext, JobLost, is_transient
from app.jobs.registry import JobKind, register
from app.models.failover import FailoverSessionState
from app.services import failover_executor, failover_progress


async def run(ctx: JobContext) -> dict[str, Any]:
    session_id = int(ctx.params["session_id"])
    try:
        return await failover_executor.execute(session_id, ctx)
    except (JobCancelled, JobLost):
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
        # Plans wait for boots and delays; the steps, not the clock, say where a run is.
        time_limit_seconds=6 * 3600,
        max_attempts=10,
    )
)
