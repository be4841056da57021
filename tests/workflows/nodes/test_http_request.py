from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError
from pytest_django.fixtures import Settings

from tests.assistant_site.test_http import LocalServer, _Handler, serve
from tests.workflows.nodes.helpers import run_node
from workflows.nodes import (
    http_request,  # noqa: F401  (registers the type)
    registry,
)
from workflows.nodes.base import CREDENTIAL_RESOURCE, NodeContext, NodeResult
from workflows.nodes.http_request import HttpRequest, HttpRequestConfig

SECRET = "tok_9f2c/+&= x"  # characters that need escaping in a query string


@pytest.fixture
def server(settings: Settings) -> Iterator[LocalServer]:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with serve() as local:
        yield local


def _config(url: str, **fields: Any) -> dict[str, Any]:
    return {"url": url, **fields}


def test_get_maps_fields_of_the_json_answer(server: LocalServer) -> None:
    config = _config(
        server.url("/json"),
        response_mapping={"event_id": "data.id", "first_tag": "data.tags.0"},
    )
    result = run_node("http_request", config)
    assert result.error is None
    assert result.outputs["status"] == 200
    assert result.outputs["mapped"] == {"event_id": "evt_42", "first_tag": "vip"}
    assert result.outputs["json"] == {"data": {"id": "evt_42", "tags": ["vip", "new"]}}
    assert '"evt_42"' in result.outputs["body"]


def test_url_headers_and_a_json_template_body_are_rendered(server: LocalServer) -> None:
    config = _config(
        server.url("/echo?order={{ trigger.payload.order }}"),
        method="POST",
        headers={"X-Customer": "{{ trigger.payload.customer }}"},
        json_body='{"text": {{ trigger.text | tojson }}, "n": {{ trigger.payload.order }}}',
        response_mapping={"sent": "json", "customer": "headers.X-Customer"},
    )
    result = run_node(
        "http_request",
        config,
        trigger={"text": '我要退款 "now"', "payload": {"order": 7, "customer": "c-1"}},
    )
    assert result.error is None
    assert result.outputs["mapped"] == {
        "sent": {"text": '我要退款 "now"', "n": 7},
        "customer": "c-1",
    }


def test_an_object_body_renders_its_text_values(server: LocalServer) -> None:
    config = _config(
        server.url("/echo"),
        method="PUT",
        json_body={"reply": {"text": "Hi {{ trigger.text }}", "tags": ["{{ vars.tag }}", 1]}},
        response_mapping={"sent": "json", "content_type": "headers.Content-Type"},
    )
    result = run_node("http_request", config, trigger={"text": "Ann"}, vars={"tag": "vip"})
    assert result.error is None
    assert result.outputs["mapped"] == {
        "sent": {"reply": {"text": "Hi Ann", "tags": ["vip", 1]}},
        "content_type": "application/json",
    }


def test_a_404_fails_with_the_status_and_a_body_preview(server: LocalServer) -> None:
    result = run_node("http_request", _config(server.url("/status/404")))
    assert result.error is not None
    assert "HTTP 404" in result.error
    assert "status 404 body" in result.error
    assert "GET 127.0.0.1/status/404" in result.error


def test_a_503_is_retried_when_asked(server: LocalServer) -> None:
    result = run_node("http_request", _config(server.url("/flaky/n?failures=1"), retries=2))
    assert result.error is None
    assert server.hits["/flaky/n"] == 2


def test_a_redirect_fails_and_says_redirects_are_not_followed(server: LocalServer) -> None:
    result = run_node("http_request", _config(server.url("/redirect")))
    assert result.error is not None
    assert "HTTP 302 (redirects are not followed" in result.error


def test_an_internal_address_is_refused_without_the_allow_list(settings: Settings) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []
    with serve() as local:
        result = run_node("http_request", _config(local.url("/json")))
        assert local.hits == Counter()
    assert result.error is not None
    assert "refused: 127.0.0.1 is a loopback address" in result.error
    assert "OUTBOUND_HTTP_ALLOWED_HOSTS" in result.error


def test_a_mapped_path_missing_from_the_answer_fails(server: LocalServer) -> None:
    config = _config(server.url("/json"), response_mapping={"name": "data.customer.name"})
    result = run_node("http_request", config)
    assert result.error is not None
    assert "response_mapping.name: 'data.customer.name' is not in the answer" in result.error


def test_a_body_that_does_not_render_to_json_fails_before_sending(server: LocalServer) -> None:
    config = _config(server.url("/echo"), method="POST", json_body='{"text": {{ trigger.text }}}')
    result = run_node("http_request", config, trigger={"text": "unquoted"})
    assert result.error is not None
    assert "json_body does not render to JSON" in result.error
    assert "tojson" in result.error
    assert server.hits == Counter()


def test_a_template_error_names_the_field(server: LocalServer) -> None:
    config = _config(server.url("/json"), headers={"X-A": "{{ trigger.missing }}"})
    result = run_node("http_request", config)
    assert result.error is not None
    assert result.error.startswith("headers.X-A:")


def test_a_timeout_fails_the_node(server: LocalServer) -> None:
    result = run_node("http_request", _config(server.url("/slow?seconds=2"), timeout_s=0.2))
    assert result.error is not None
    assert "no complete answer within 0.2 s" in result.error


def test_template_sources_cover_url_headers_and_body() -> None:
    config = HttpRequestConfig.model_validate(
        _config(
            "https://api.example.com/{{ trigger.text }}",
            headers={"Authorization": "Bearer {{ vars.token }}"},
            json_body={"a": {"b": "{{ nodes.llm_1.text }}"}, "list": ["{{ trigger.text }}"]},
        )
    )
    assert HttpRequest.template_sources(config) == {
        "url": "https://api.example.com/{{ trigger.text }}",
        "headers.Authorization": "Bearer {{ vars.token }}",
        "json_body.a.b": "{{ nodes.llm_1.text }}",
        "json_body.list.0": "{{ trigger.text }}",
    }
    text_body = HttpRequestConfig.model_validate(_config("https://x.example/", json_body="{}"))
    assert HttpRequest.template_sources(text_body)["json_body"] == "{}"


def test_it_is_registered_with_a_config_schema() -> None:
    node_type = registry.get("http_request", 1)
    assert node_type is HttpRequest
    described = registry.describe(HttpRequest)
    assert described["category"] == "processing"
    assert set(described["config_schema"]["properties"]) == {
        "method",
        "url",
        "headers",
        "json_body",
        "timeout_s",
        "retries",
        "response_mapping",
        "auth",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "FETCH"},
        {"method": "get"},
        {"proxy": "http://proxy"},
        {"url": ""},
        {"headers": {"Bad Header": "x"}},
        {"headers": {"Host": "internal.example"}},
        {"retries": 9},
        {"timeout_s": 0},
        {"timeout_s": 600},
        {"response_mapping": {"bad-name": "data.id"}},
        {"response_mapping": {"id": "data..id"}},
        {"json_body": 42},
    ],
)
def test_invalid_configs_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HttpRequestConfig.model_validate({"url": "https://api.example.com/", **fields})


# --- auth from a credential ----------------------------------------------------------------

Received = list[tuple[str, dict[str, str]]]


@pytest.fixture
def received(server: LocalServer) -> Received:
    """The path (with query) and headers of each request the local server receives."""
    seen: Received = []

    class Recording(_Handler):
        def _route(self) -> None:
            seen.append((self.path, dict(self.headers.items())))
            super()._route()

    server.RequestHandlerClass = Recording
    return seen


def _run_with_credentials(
    config: dict[str, Any], credentials: dict[str, str] | None = None
) -> NodeResult:
    """Run the node with credentials loaded as the runner loads them: name -> plaintext."""
    node = HttpRequest("n1", HttpRequestConfig.model_validate(config))
    resources = {(CREDENTIAL_RESOURCE, name): value for name, value in (credentials or {}).items()}
    variables: dict[str, Any] = {"trigger": {}, "conversation": {}, "nodes": {}, "vars": {}}
    return asyncio.run(node.run(NodeContext(variables=variables, resources=resources)))


def test_bearer_auth_sends_the_credential_in_the_authorization_header(
    server: LocalServer, received: Received
) -> None:
    config = _config(server.url("/json"), auth={"credential": "crm", "scheme": "bearer"})
    result = _run_with_credentials(config, {"crm": SECRET})
    assert result.error is None
    [(path, headers)] = received
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert path == "/json"
    assert SECRET not in repr(result.outputs)


def test_header_auth_sends_the_credential_in_the_named_header(
    server: LocalServer, received: Received
) -> None:
    config = _config(
        server.url("/json"),
        headers={"Accept": "application/json"},
        auth={"credential": "crm", "scheme": "header", "header_name": "X-Api-Key"},
    )
    result = _run_with_credentials(config, {"crm": SECRET})
    assert result.error is None
    [(path, headers)] = received
    assert headers["X-Api-Key"] == SECRET
    assert headers["Accept"] == "application/json"
    assert "Authorization" not in headers
    assert path == "/json"


def test_query_auth_adds_the_credential_as_an_escaped_query_parameter(
    server: LocalServer, received: Received
) -> None:
    config = _config(
        server.url("/json?page=2"),
        auth={"credential": "crm", "scheme": "query", "param_name": "api_key"},
    )
    result = _run_with_credentials(config, {"crm": SECRET})
    assert result.error is None
    [(path, headers)] = received
    parts = urlsplit(path)
    assert parts.path == "/json"
    assert parse_qs(parts.query) == {"page": ["2"], "api_key": [SECRET]}
    assert "Authorization" not in headers


def test_a_missing_credential_fails_before_sending(server: LocalServer) -> None:
    config = _config(server.url("/json"), auth={"credential": "crm", "scheme": "bearer"})
    result = _run_with_credentials(config, {"other": SECRET})
    assert result.error is not None
    assert result.error.startswith("credential 'crm' does not exist")
    assert server.hits == Counter()


def test_a_failure_message_never_quotes_the_secret(server: LocalServer) -> None:
    # The client quotes an invalid URL whole, query string included.
    config = _config(
        "ftp://files.example/report",
        auth={"credential": "crm", "scheme": "query", "param_name": "key"},
    )
    result = _run_with_credentials(config, {"crm": SECRET})
    assert result.error is not None
    assert "only http and https" in result.error
    assert "<credential crm>" in result.error
    assert SECRET not in result.error
    assert "tok_9f2c%2F%2B%26%3D+x" not in result.error


def test_required_resources_name_the_credential() -> None:
    with_auth = HttpRequestConfig.model_validate(
        _config("https://api.example.com/", auth={"credential": "crm", "scheme": "bearer"})
    )
    assert HttpRequest.required_resources(with_auth) == [(CREDENTIAL_RESOURCE, "crm")]
    without = HttpRequestConfig.model_validate(_config("https://api.example.com/"))
    assert HttpRequest.required_resources(without) == []


def test_configs_without_auth_stay_valid() -> None:
    config = HttpRequestConfig.model_validate(_config("https://api.example.com/"))
    assert config.auth is None


@pytest.mark.parametrize(
    "auth",
    [
        {"credential": "crm", "scheme": "header"},  # no header_name
        {"credential": "crm", "scheme": "header", "header_name": "Bad Header"},
        {"credential": "crm", "scheme": "header", "header_name": "Host"},
        {"credential": "crm", "scheme": "header", "header_name": "content-length"},
        {"credential": "crm", "scheme": "query"},  # no param_name
        {"credential": "crm", "scheme": "query", "param_name": "api key"},
        {"credential": "crm", "scheme": "bearer", "header_name": "X-Api-Key"},
        {"credential": "crm", "scheme": "bearer", "param_name": "key"},
        {"credential": "crm", "scheme": "basic"},  # unknown scheme
        {"credential": "crm"},  # no scheme
        {"scheme": "bearer"},  # no credential
        {"credential": "", "scheme": "bearer"},
        {"credential": "my token", "scheme": "bearer"},
        {"credential": "crm", "scheme": "bearer", "secret": "tok_inline"},  # unknown field
    ],
)
def test_invalid_auth_blocks_are_refused(auth: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HttpRequestConfig.model_validate({"url": "https://api.example.com/", "auth": auth})


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        ({"credential": "crm", "scheme": "bearer"}, "authorization"),
        ({"credential": "crm", "scheme": "header", "header_name": "X-Api-Key"}, "x-api-key"),
    ],
)
def test_a_header_set_by_auth_cannot_also_be_in_headers(auth: dict[str, Any], header: str) -> None:
    with pytest.raises(ValidationError, match="is set by auth"):
        HttpRequestConfig.model_validate(
            {"url": "https://api.example.com/", "headers": {header: "x"}, "auth": auth}
        )
