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
CONNECTOR_EVENTS = Counter(
    "assistant_connector_events_total",
    "Platform events received by connectors, by platform and outcome: accepted (stored), "
    "duplicate (a redelivery, dropped), ignored (acknowledged, nothing to do), "
    "rejected_signature (bad signature or token), rejected (any other refusal).",
    ["connector", "platform", "outcome"],
)
CONNECTOR_DELIVERIES = Counter(
    "assistant_connector_deliveries_total",
    "Replies delivered by connectors, by platform and outcome: sent, retry (a temporary "
    "failure, tried again later), dead (given up; a dead letter in the admin).",
    ["connector", "platform", "outcome"],
)
INGESTION_DOCUMENTS = Counter(
    "assistant_ingestion_documents_total",
    "Documents that finished ingestion, by outcome: indexed, or failed (the reason is on the "
    "document).",
    ["outcome"],
)
CONNECTOR_DELIVERY_LATENCY = Histogram(
    "assistant_connector_delivery_latency_seconds",
    "From the platform's event reaching us to its last reply being sent.",
    ["platform"],
    buckets=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0),
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


LLM_REQUESTS = Counter(
    "assistant_llm_requests_total",
    "Requests to model endpoints, one per attempt (retries and fallbacks included), by "
    "endpoint name and outcome: ok, or the error kind (rate_limited, unavailable, timeout, "
    "circuit_open...).",
    ["endpoint", "outcome"],
)
LLM_LATENCY = Histogram(
    "assistant_llm_latency_seconds",
    "Time one request to a model endpoint took, from sending it to the last byte.",
    ["endpoint"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
)
LLM_TTFT = Histogram(
    "assistant_llm_ttft_seconds",
    "Time from sending a streaming request to its first content token.",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
LLM_TOKENS = Counter(
    "assistant_llm_tokens_total",
    "Tokens the model endpoints reported, by direction: prompt or completion.",
    ["endpoint", "direction"],
)
LLM_IN_FLIGHT = Gauge(
    "assistant_llm_in_flight",
    "Requests to a model endpoint waiting for their answer right now, over all processes.",
    ["endpoint"],
    multiprocess_mode="livesum",
)
LLM_CIRCUIT_OPEN = Gauge(
    "assistant_llm_circuit_open",
    "1 while the circuit breaker of an endpoint is open in at least one process, else 0.",
    ["endpoint"],
    multiprocess_mode="livemax",
)


def render_latest() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


LLM_CACHE = Counter(
    "assistant_llm_cache_total",
    "LLM node response cache lookups, by outcome (hit or miss); only nodes with a cache TTL.",
    ["outcome"],
)
