from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_healthz_answers_ok_without_login(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-ID"]


@pytest.mark.django_db
def test_probes_and_scrapes_addressed_by_an_internal_name_are_answered(client: Client) -> None:
    # Prometheus scrapes web:8000 and orchestrators probe a pod's address; pages still refuse
    # a Host outside ALLOWED_HOSTS.
    assert client.get("/healthz", HTTP_HOST="web:8000").status_code == 200
    assert client.get("/readyz", HTTP_HOST="10.1.2.3:8000").status_code in {200, 503}
    assert client.get("/metrics", HTTP_HOST="web:8000").status_code == 200
    assert client.get("/studio/", HTTP_HOST="web:8000").status_code == 400
