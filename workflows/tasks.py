from __future__ import annotations

from celery import shared_task

from workflows import services


@shared_task(name="workflows.run_execute", acks_late=True)
def run_execute_task(run_id: str) -> str:
    """Execute one queued run (on the `runs` queue). A redelivered task finds the run taken."""
    return services.run_execute(run_id=run_id).status
