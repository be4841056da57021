from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator

from assistant_site import http
from workflows.engine.templates import TemplateError
from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
MAX_RESPONSE_BYTES = 1_000_000
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# Set by the HTTP client itself: Host carries the checked destination (SSRF guard), the
# framing headers follow from the body.
_RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


class HttpRequestConfig(NodeConfig):
    method: Method = Field(default="GET", title="Method")
    url: str = Field(
        min_length=1,
        max_length=2000,
        title="URL",
        description="http or https; template, e.g. https://api.example.com/v1/orders/"
        "{{ trigger.payload.order_id }}",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=30,
        title="Headers",
        description="Header name -> value (template), e.g. Accept: application/json.",
    )
    json_body: str | dict[str, Any] | None = Field(
        default=None,
        title="JSON body",
        description="Either a template that renders to JSON (insert values with | tojson, "
        'e.g. {"text": {{ trigger.text | tojson }}}) or an object whose text values are '
        "templates. Sent as application/json.",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=60,
        title="Timeout (seconds)",
        description="For the whole request, each attempt.",
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=5,
        title="Retries",
        description="Repeats after a connection error, a timeout, 429 or 5xx, with backoff. "
        "Retries resend the body: use them only if the receiver tolerates duplicates.",
    )
    response_mapping: dict[str, str] = Field(
        default_factory=dict,
        max_length=30,
        title="Response mapping",
        description="Output name -> dotted path into the JSON answer, e.g. "
        "event_id: data.id or first: items.0.name; read as nodes.<id>.mapped.<name>.",
    )

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"the {name} header is set by the HTTP client")
        return headers

    @field_validator("response_mapping")
    @classmethod
    def _valid_mapping(cls, mapping: dict[str, str]) -> dict[str, str]:
        for name, path in mapping.items():
            if not _OUTPUT_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid output name (letters, digits, _)")
            if not _PATH.match(path):
                raise ValueError(f"{path!r} is not a dotted path such as data.items.0.id")
        return mapping


class _MissingPathError(Exception):
    pass


def lookup(document: Any, path: str) -> Any:
    """Follow a dotted path through objects (by key) and arrays (by index)."""
    value = document
    for segment in path.split("."):
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.lstrip("-").isdigit():
            index = int(segment)
            if not -len(value) <= index < len(value):
                raise _MissingPathError(segment)
            value = value[index]
        else:
            raise _MissingPathError(segment)
    return value


def _body_sources(value: Any, path: str) -> dict[str, str]:
    if isinstance(value, str):
        return {path: value}
    if isinstance(value, dict):
        return {
            key: source
            for name, item in value.items()
            for key, source in _body_sources(item, f"{path}.{name}").items()
        }
    if isinstance(value, list):
        return {
            key: source
            for index, item in enumerate(value)
            for key, source in _body_sources(item, f"{path}.{index}").items()
        }
    return {}


def _render(context: NodeContext, source: str, path: str) -> str:
    try:
        return context.render(source)
    except TemplateError as exc:
        raise TemplateError(f"{path}: {exc}") from exc


def _render_leaves(value: Any, context: NodeContext, path: str) -> Any:
    if isinstance(value, str):
        return _render(context, value, path)
    if isinstance(value, dict):
        return {
            name: _render_leaves(item, context, f"{path}.{name}") for name, item in value.items()
        }
    if isinstance(value, list):
        return [
            _render_leaves(item, context, f"{path}.{index}") for index, item in enumerate(value)
        ]
    return value


@register
class HttpRequest(Node[HttpRequestConfig]):
    """Calls an HTTP API through ``assistant_site.http`` (SSRF guard, caps, retries)."""

    type_id = "http_request"
    category = NodeCategory.PROCESSING
    title = "HTTP request"
    description = (
        "Calls an external HTTP API and maps fields of its JSON answer to outputs. Internal "
        "addresses are refused unless an administrator allows them."
    )
    Config = HttpRequestConfig
    outputs = {"status": "number", "body": "string", "json": "object", "mapped": "object"}
    template_fields = ("url", "headers", "json_body")

    @classmethod
    def template_sources(cls, config: NodeConfig) -> dict[str, str]:
        assert isinstance(config, HttpRequestConfig)  # noqa: S101  (registry guarantees it)
        sources = {"url": config.url}
        sources.update({f"headers.{name}": value for name, value in config.headers.items()})
        sources.update(_body_sources(config.json_body, "json_body"))
        return sources

    async def run(self, context: NodeContext) -> NodeResult:
        config = self.config
        try:
            url = _render(context, config.url, "url").strip()
            headers = {
                name: _render(context, value, f"headers.{name}").strip()
                for name, value in config.headers.items()
            }
            content = self._body(context)
        except TemplateError as exc:
            return NodeResult.failure(str(exc))
        if content is not None and not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = "application/json"
        try:
            response = await http.request(
                config.method,
                url,
                headers=headers,
                content=content,
                timeout_s=config.timeout_s,
                retries=config.retries,
                max_response_bytes=MAX_RESPONSE_BYTES,
            )
        except http.OutboundHttpError as exc:
            return NodeResult.failure(f"{config.method} request failed: {exc.message}")
        where = f"{config.method} {http.display_url(url)}"
        if not response.ok:
            hint = (
                " (redirects are not followed: use the final URL)" if response.status < 400 else ""
            )
            return NodeResult.failure(
                f"{where} answered HTTP {response.status}{hint}: {response.preview() or '(empty)'}"
            )
        return self._result(response, where)

    def _body(self, context: NodeContext) -> bytes | None:
        body = self.config.json_body
        if body is None:
            return None
        if isinstance(body, dict):
            value = _render_leaves(body, context, "json_body")
        else:
            text = _render(context, body, "json_body")
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise TemplateError(
                    f"json_body does not render to JSON ({exc}); insert text with "
                    "{{ value | tojson }}"
                ) from exc
        return json.dumps(value, ensure_ascii=False).encode()

    def _result(self, response: http.HttpResponse, where: str) -> NodeResult:
        try:
            document = response.json() if response.body.strip() else None
        except http.OutboundHttpError as exc:
            if self.config.response_mapping:
                return NodeResult.failure(f"response_mapping needs JSON: {exc.message}")
            document = None
        mapped: dict[str, Any] = {}
        for name, path in self.config.response_mapping.items():
            try:
                mapped[name] = lookup(document, path)
            except _MissingPathError as exc:
                return NodeResult.failure(
                    f"response_mapping.{name}: {path!r} is not in the answer of {where} "
                    f"(no {str(exc)!r}): {response.preview()}"
                )
        return NodeResult(
            outputs={
                "status": response.status,
                "body": response.text,
                "json": document,
                "mapped": mapped,
            }
        )
