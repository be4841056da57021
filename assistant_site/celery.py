"""The Celery application shared by the web process, the workers and beat."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings.base")

app = Celery("assistant_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Celery's Django fix-up closes the database connection around every task unless this is
# set; reusing it tripled run throughput here (docs/benchmarks.md).
app.add_defaults(lambda: {"CELERY_DB_REUSE_MAX": 1000})


@worker_init.connect
def _worker_metrics(**kwargs: Any) -> None:
    """Each worker container serves its own samples when WORKER_METRICS_PORT is set
    (assistant_site/worker_metrics.py says when to set it)."""
    from django.conf import settings

    if settings.WORKER_METRICS_PORT:
        from assistant_site.worker_metrics import worker_metrics_serve

        worker_metrics_serve(
            port=settings.WORKER_METRICS_PORT, address=settings.WORKER_METRICS_ADDRESS
        )
