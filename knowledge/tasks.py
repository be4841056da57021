from __future__ import annotations

from celery import shared_task

from knowledge import services


# On the `ingest` queue (CELERY_TASK_ROUTES): parsing and embedding are CPU-bound and must not
# hold up workflow runs. Late acks: a worker killed mid-document gets it redelivered.
# The soft limit interrupts a document that takes too long (a huge PDF) inside the service,
# which marks it failed; the hard limit is the backstop if that is stuck in C code.
@shared_task(
    name="knowledge.document_ingest",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=1800,
    time_limit=1900,
)
def document_ingest_task(document_id: str) -> None:
    services.document_ingest(document_id=document_id)
