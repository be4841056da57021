"""Site-wide Celery tasks."""

from __future__ import annotations

import socket

from celery import shared_task


@shared_task(name="assistant_site.ping")
def ping_task(message: str) -> dict[str, str]:
    """Answers from a worker: checks the broker, a worker and the result store end to end."""
    return {"echo": message, "worker_host": socket.gethostname()}
