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


def database_defaults() -> dict[str, Any]:
    """Celery's Django fix-up closes the database connection around every task unless
    CELERY_DB_REUSE_MAX is set. With the psycopg pool, closing hands the connection back to
    the pool, which is cheap, and reusing it instead made each worker thread that had run a
    connector task keep one of the pool's connections: 10 threads of 64 held them all and
    the others' runs failed with PoolTimeout (bench/end_to_end.py, docs/benchmarks.md).
    Without a pool, reuse saves a new connection per task."""
    from django.conf import settings

    pooled = any(db.get("OPTIONS", {}).get("pool") for db in settings.DATABASES.values())
    return {} if pooled else {"CELERY_DB_REUSE_MAX": 1000}


app.add_defaults(database_defaults)


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
