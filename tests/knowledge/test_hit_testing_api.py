"""Hit testing through the API (POST /api/knowledge-bases/<id>/search/): filters with a 400
that names the field, and the rerank endpoint option with its permission, kind and fallback."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm
from pytest_django.fixtures import Settings

from tests.doubles.rerank_server import RerankDouble
from tests.knowledge.conftest import Library
from workflows.models import ModelEndpoint


@pytest.fixture
def api(library: Library) -> Client:
    client = Client()
    client.force_login(library.curator)
    return client


def _post(api: Client, library: Library, **body: Any) -> Any:
    return api.post(
        f"/api/knowledge-bases/{library.base.pk}/search/",
        {"query": "annual leave", **body},
        content_type="application/json",
    )


def _endpoint(
    double: RerankDouble,
    library: Library,
    *,
    name: str = "rr",
    kind: str = "rerank",
    enabled: bool = True,
    usable: bool = True,
) -> ModelEndpoint:
    endpoint = ModelEndpoint.objects.create(
        name=name,
        kind=kind,
        base_url=double.base_url,
        model=double.model,
        api_key="rk-test-key",
        timeout_s=5,
        enabled=enabled,
    )
    if usable:
        assign_perm("use_modelendpoint", library.curator, endpoint)
    return endpoint


def test_the_answer_lists_passages_and_says_nothing_was_reranked(
    api: Client, library: Library
) -> None:
    response = _post(api, library, top_k=2)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"passages", "reranked", "rerank_error"}
    assert (body["reranked"], body["rerank_error"]) == (False, "")
    assert len(body["passages"]) == 2
    assert set(body["passages"][0]) == {
        "text",
        "document_id",
        "document_title",
        "location",
        "score",
        "chunk_id",
    }


def test_filters_restrict_the_passages(api: Client, library: Library) -> None:
    guide = library.documents["office-guide.md"]
    response = _post(
        api,
        library,
        top_k=2,
        mode="keyword",
        filters={"document_ids": [str(guide.pk)], "heading_prefix": "Office guide > Parking"},
    )
    assert response.status_code == 200, response.content
    [passage] = response.json()["passages"]
    assert passage["document_id"] == str(guide.pk)
    assert passage["location"] == "Office guide > Parking"
    response = _post(api, library, filters={"file_types": ["txt"]})
    assert response.status_code == 200
    assert {p["document_title"] for p in response.json()["passages"]} == {"contractors"}
    assert _post(api, library, filters=None).status_code == 200


@pytest.mark.parametrize(
    ("filters", "field", "message"),
    [
        ({"file_types": ["pdf", "exe"]}, "file_types.1", "Input should be 'pdf'"),
        ({"file_types": []}, "file_types", "at least 1 item"),
        ({"document_ids": ["not-a-uuid"]}, "document_ids.0", "valid UUID"),
        ({"title_contains": "  "}, "title_contains", "at least 1 character"),
        ({"heading_prefix": "Chapter 2 >> Leave"}, "heading_prefix", "a heading in the path"),
        ({"page": 3}, "page", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_filter_is_refused_naming_its_field(
    api: Client, library: Library, filters: dict[str, Any], field: str, message: str
) -> None:
    response = _post(api, library, filters=filters)
    assert response.status_code == 400
    errors = response.json()["filters"]
    assert list(errors) == [field]
    assert message in errors[field][0]


def test_filters_must_be_an_object(api: Client, library: Library) -> None:
    response = _post(api, library, filters=["pdf"])
    assert response.status_code == 400
    assert "must be an object" in response.json()["filters"][0]


def test_a_rerank_endpoint_reorders_the_passages(
    api: Client, library: Library, reranker: RerankDouble, settings: Settings
) -> None:
    # The endpoint's own host passes the SSRF guard without being listed: administrators
    # set model endpoints, and they usually live on a private network.
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []
    reranker.relevance = lambda query, document: 0.97 if "kitchen" in document else 0.05
    _endpoint(reranker, library)
    response = _post(api, library, top_k=3, rerank_endpoint="rr")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["reranked"], body["rerank_error"]) == (True, "")
    assert [p["score"] for p in body["passages"]] == [0.97, 0.05, 0.05]
    assert body["passages"][0]["location"] == "Office guide > Kitchen"
    [request] = reranker.requests
    assert request["top_n"] == 3
    assert len(request["documents"]) == sum(d.chunk_count for d in library.documents.values())


def test_a_failing_rerank_endpoint_keeps_the_search_order(
    api: Client, library: Library, reranker: RerankDouble
) -> None:
    _endpoint(reranker, library)
    plain = _post(api, library, top_k=3).json()
    reranker.inject("not_json", count=2)
    body = _post(api, library, top_k=3, rerank_endpoint="rr").json()
    assert body["passages"] == plain["passages"]
    assert body["reranked"] is False
    assert body["rerank_error"].startswith("rerank endpoint 'rr' failed: ")
    assert "is not JSON" in body["rerank_error"]


@pytest.mark.parametrize(
    ("endpoint_options", "message"),
    [
        ({"usable": False}, "no model endpoint named 'rr' that you may use"),
        ({"name": "other"}, "no model endpoint named 'rr' that you may use"),
        ({"kind": "chat"}, "'rr' is a chat endpoint, not a rerank endpoint"),
        ({"enabled": False}, "'rr' is disabled"),
    ],
)
def test_a_rerank_endpoint_must_be_usable_enabled_and_of_kind_rerank(
    api: Client,
    library: Library,
    reranker: RerankDouble,
    endpoint_options: dict[str, Any],
    message: str,
) -> None:
    _endpoint(reranker, library, **endpoint_options)
    response = _post(api, library, rerank_endpoint="rr")
    assert response.status_code == 400
    assert response.json() == {"rerank_endpoint": [message]}
    assert reranker.requests == []
