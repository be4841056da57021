"""A worker container's own /metrics: what it counted, behind the same rules as the web's."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import httpx
import pytest
from pytest_django.fixtures import Settings

from assistant_site.metrics import RUNS_FINISHED
from assistant_site.worker_metrics import worker_metrics_serve


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    served = worker_metrics_serve(port=0, address="127.0.0.1")
    yield served
    served.shutdown()
    served.server_close()


def _url(server: ThreadingHTTPServer, path: str = "/metrics") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_the_worker_serves_what_it_counted(server: ThreadingHTTPServer) -> None:
    RUNS_FINISHED.labels(status="succeeded").inc()
    answer = httpx.get(_url(server))
    assert answer.status_code == 200
    assert 'assistant_runs_finished_total{status="succeeded"}' in answer.text
    assert httpx.get(_url(server, "/other")).status_code == 404


def test_a_token_or_an_allowed_address_is_needed(
    server: ThreadingHTTPServer, settings: Settings
) -> None:
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.METRICS_BEARER_TOKEN = "scrape-me"
    assert httpx.get(_url(server)).status_code == 401
    wrong = httpx.get(_url(server), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = httpx.get(_url(server), headers={"Authorization": "Bearer scrape-me"})
    assert right.status_code == 200
    settings.METRICS_BEARER_TOKEN = ""
    assert httpx.get(_url(server)).status_code == 403
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1/32"]
    assert httpx.get(_url(server)).status_code == 200
