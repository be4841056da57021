from __future__ import annotations

import logging

from celery import shared_task

from workflows import services
from workflows.models import Run

logger = logging.getLogger(__name__)


# ignore_result: the Run row is the result; storing one in Redis too cost about a tenth of a
# short run's worker time (bench/workflow_runs.py, profiled with py-spy).
@shared_task(name="workflows.run_execute", acks_late=True, ignore_result=True)
def run_execute_task(run_id: str) -> str:
    """Execute one queued run (on the `runs` queue). A redelivered task finds the run taken."""
    try:
        return services.run_execute(run_id=run_id).status
    except Run.DoesNotExist:
        # Its workflow was deleted while the run waited in the queue.
        logger.warning("run %s no longer exists; nothing to execute", run_id)
        return "missing"


@shared_task(name="workflows.runs_sweep")
def runs_sweep_task() -> dict[str, int]:
    """Periodic (beat): recover runs left behind by dead workers or a lost broker message."""
    return services.runs_sweep()


# At most once, unlike the run tasks: a redelivered firing would start a second run of the
# same schedule tick (a second reminder sent...), and the task only inserts the run row, so a
# worker dying in that instant and losing one firing is the lesser harm.
@shared_task(name="workflows.run_scheduled", acks_late=False)
def run_scheduled_task(workflow_id: str, node_id: str) -> str | None:
    """Periodic (beat, one entry per published schedule trigger): start that trigger's run.
    Goes to the `runs` queue (the default; the beat entry names it too)."""
    run = services.run_scheduled(workflow_id=workflow_id, node_id=node_id)
    return str(run.pk) if run is not None else None
