"""Prometheus metrics shared by every process.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the run command and the deployment files set it),
each web and worker process writes its samples to that folder and ``/metrics`` merges them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "assistant_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "assistant_http_request_duration_seconds",
    "Time from the request reaching Django to the response leaving it.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
AUDIT_ENTRIES = Counter(
    "assistant_audit_entries_total",
    "Audit trail entries written, by action.",
    ["action"],
)


RUNS_FINISHED = Counter(
    "assistant_runs_finished_total", "Workflow runs finished, by final status.", ["status"]
)
MESSAGES_RECEIVED = Counter(
    "assistant_messages_received_total",
    "Chat messages offered to workflows, by outcome: started (a run), ignored (no trigger "
    "accepted it), rate_limited (the sender was over the workflow's limit; no run).",
    ["outcome"],
)
RUNS_ACTIVE = Gauge(
    "assistant_runs_active",
    "Workflow runs executing right now, over all worker processes.",
    multiprocess_mode="livesum",
)
RUN_QUEUE_WAIT = Histogram(
    "assistant_run_queue_wait_seconds",
    "Time from a run being queued to a worker starting it.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
NODE_DURATION = Histogram(
    "assistant_node_duration_seconds",
    "Time a node took, by node type and outcome.",
    ["node_type", "status"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def render_latest() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
