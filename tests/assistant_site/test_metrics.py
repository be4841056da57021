from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.test import Client, override_settings

from tests.conftest import REPO


def _sample(body: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith(f"{name}{{") and line.split("}")[0][len(name) + 1 :] == wanted:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_template_method_and_status(client: Client) -> None:
    before = _sample(
        client.get("/metrics").content.decode(),
        "assistant_http_requests_total",
        method="GET",
        route="/healthz",
        status="200",
    )
    client.get("/healthz")
    client.get("/healthz")
    client.get("/no/such/page")
    body = client.get("/metrics").content.decode()
    after = _sample(
        body, "assistant_http_requests_total", method="GET", route="/healthz", status="200"
    )
    assert after == before + 2
    assert (
        _sample(
            body, "assistant_http_requests_total", method="GET", route="<unmatched>", status="404"
        )
        >= 1
    )
    assert "assistant_http_request_duration_seconds_bucket" in body


def test_metrics_use_the_route_template_not_the_raw_path(client: Client, db: None) -> None:
    client.get("/api/workflows/00000000-0000-0000-0000-000000000000/")
    body = client.get("/metrics").content.decode()
    assert 'route="/api/workflows/<uuid:pk>/"' in body
    assert "00000000-0000" not in body


def test_metrics_refuse_a_caller_from_outside_the_allow_list(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert b"assistant_http_requests_total" not in response.content


@override_settings(METRICS_BEARER_TOKEN="s3cret-token", METRICS_ALLOWED_IPS=[])
def test_metrics_accept_only_the_right_bearer_token(client: Client) -> None:
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"].startswith("Bearer")
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert right.status_code == 200
    assert b"assistant_http_requests_total" in right.content


def test_metrics_merge_samples_from_several_processes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "assistant_site.settings.test",
    }
    increment = (
        "from assistant_site.metrics import HTTP_REQUESTS as c; "
        "c.labels('/api/x/', 'GET', '200').inc(3)"
    )
    for _ in range(2):  # two separate worker processes
        subprocess.run([sys.executable, "-c", increment], env=env, cwd=REPO, check=True)
    render = "from assistant_site.metrics import render_latest; print(render_latest().decode())"
    output = subprocess.run(
        [sys.executable, "-c", render],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert (
        _sample(
            output, "assistant_http_requests_total", method="GET", route="/api/x/", status="200"
        )
        == 6.0
    )
