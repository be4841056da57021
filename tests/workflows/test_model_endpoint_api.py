from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from assistant_site.roles import ADMINISTRATOR
from workflows.models import ModelEndpoint


@pytest.fixture
def admin_api(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user("ops-admin", roles=(ADMINISTRATOR,)))
    return client


@pytest.mark.parametrize(
    "url", ["http://vllm:8000/v1", "https://api.example.com/v1", "http://10.0.0.7:8000/v1"]
)
def test_service_names_and_addresses_are_accepted_as_base_url(admin_api: Client, url: str) -> None:
    response = admin_api.post(
        "/api/model-endpoints/create/",
        {"name": f"chat-{url[-12:]}", "kind": "chat", "base_url": url, "model": "qwen3"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["base_url"] == url


@pytest.mark.parametrize(
    "url", ["ftp://vllm/v1", "vllm:8000", "http://", "http://vllm:99999/v1", "http://a b/v1"]
)
def test_a_bad_base_url_is_refused_naming_the_field(admin_api: Client, url: str) -> None:
    response = admin_api.post(
        "/api/model-endpoints/create/",
        {"name": "bad", "kind": "chat", "base_url": url, "model": "qwen3"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "base_url" in response.json()
    assert not ModelEndpoint.objects.exists()
