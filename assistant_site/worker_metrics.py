"""A worker's own `/metrics`, for deployments where each worker container has its own
``PROMETHEUS_MULTIPROC_DIR`` (Compose, Kubernetes): the web process cannot see those samples
(runs finished, node and LLM latencies are counted in the workers). On one host with one
shared folder (the run command, systemd) the web's `/metrics` already has them: leave
``WORKER_METRICS_PORT`` unset there, or the samples are scraped twice.

Same rules as the web's `/metrics`: the bearer token ``METRICS_BEARER_TOKEN`` or an address in
``METRICS_ALLOWED_IPS``."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings

from assistant_site.metrics import render_latest
from assistant_site.metrics_access import scrape_allowed

logger = logging.getLogger(__name__)
REFUSED = b"metrics: present a valid bearer token or call from an allowed address\n"


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404)
            return
        if not scrape_allowed(self.client_address[0], self.headers.get("Authorization", "")):
            status = 401 if settings.METRICS_BEARER_TOKEN else 403
            self.send_response(status)
            self.end_headers()
            self.wfile.write(REFUSED)
            return
        body = render_latest()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds are not worth a log line."""


def worker_metrics_serve(*, port: int, address: str) -> ThreadingHTTPServer:
    """Serve `/metrics` from a daemon thread of this process; returns the server."""
    server = ThreadingHTTPServer((address, port), _MetricsHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    logger.info("worker metrics on http://%s:%s/metrics", address, server.server_address[1])
    return server
