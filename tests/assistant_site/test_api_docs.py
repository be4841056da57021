from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_openapi_schema_describes_the_api(admin_client: Client) -> None:
    response = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Assistant Studio API"
    for path in (
        "/api/workflows/",
        "/api/model-endpoints/create/",
        "/api/sharing/{label}/{id}/grant/",
    ):
        assert path in schema["paths"]
    endpoint = schema["components"]["schemas"]["ModelEndpointOutput"]["properties"]
    assert "api_key_set" in endpoint
    assert "api_key" not in endpoint


@pytest.mark.django_db
def test_browsable_docs_load_their_assets_locally(admin_client: Client) -> None:
    page = admin_client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    # No CDN: the machine may have no internet, and the CSP allows only 'self'.
    assert "cdn." not in page
    assert "unpkg" not in page


def test_api_refuses_anonymous_callers(client: Client) -> None:
    assert client.get("/api/workflows/").status_code == 403
    assert client.get("/api/schema/").status_code == 403
