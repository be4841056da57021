"""gunicorn's settings file for the HTTP server of every deployment: the systemd unit
(deploy/systemd/assistant-studio-web.service) and the image's `web` process
(deploy/docker/entrypoint.sh) pass it with --config. The settings themselves (bind address,
workers, timeouts) are on their command lines; this file holds what only Python can say.

Metrics: with PROMETHEUS_MULTIPROC_DIR set, every process writes its samples into that folder
and /metrics merges them (assistant_site/metrics.py). A gunicorn worker that exits (replaced
on SIGHUP, killed after --timeout, stopped) leaves its files behind. Its counters and
histograms must stay, or the totals would drop; its "live" gauges (runs executing, model
requests in flight, open circuit breakers) must go, or they would count a dead process
forever. gunicorn's master calls child_exit for each worker that exits.
"""

from __future__ import annotations

import os
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
