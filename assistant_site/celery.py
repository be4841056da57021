"""The Celery application shared by the web process, the workers and beat."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings.base")

app = Celery("assistant_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Celery's Django fix-up closes the database connection around every task unless this is
# set; reusing it tripled run throughput here (docs/benchmarks.md).
app.add_defaults(lambda: {"CELERY_DB_REUSE_MAX": 1000})
