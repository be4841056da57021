from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Self
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

from pydantic import Field, StringConstraints, field_validator, model_validator

from assistant_site import http
from workflows.engine.templates import TemplateError
from workflows.nodes.base import (
    CREDENTIAL_RESOURCE,
    Node,
    NodeCategory,
    NodeConfig,
    NodeContext,
    NodeResult,
    ResourceKey,
)
from workflows.nodes.registry import register

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
MAX_RESPONSE_BYTES = 1_000_000
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# Set by the HTTP client itself: Host carries the checked destination (SSRF guard), the
# framing headers follow from the body.
_RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
# Unreserved URL characters plus brackets (names such as keys[api]); urlencode escapes them.
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.~\-\[\]]{1,100}$")

# As workflows.models.Credential.name allows.
CredentialName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$"
    ),
]


def _header_problem(name: str) -> str | None:
    if not _HEADER_NAME.match(name):
        return f"{name!r} is not a valid header name"
    if name.lower() in _RESERVED_HEADERS:
        return f"the {name} header is set by the HTTP client"
    return None


class HttpAuthConfig(NodeConfig):
    credential: CredentialName = Field(
        title="Credential",
        description="Name of a credential, managed in the admin (Workflows > Credentials). "
        "Its value is sent as the scheme says and is masked in traces.",
    )
    scheme: Literal["bearer", "header", "query"] = Field(
        title="Scheme",
        description="bearer: Authorization: Bearer <secret>; header: the header named in "
        "header_name carries the secret; query: the query parameter named in param_name does.",
    )
    header_name: str | None = Field(
        default=None, title="Header name (header scheme)", description="e.g. X-Api-Key"
    )
    param_name: str | None = Field(
        default=None, title="Query parameter (query scheme)", description="e.g. api_key"
    )

    @model_validator(mode="after")
    def _fields_of_the_scheme(self) -> Self:
        if self.scheme == "header":
            if not self.header_name:
                raise ValueError("the header scheme needs header_name")
            problem = _header_problem(self.header_name)
            if problem:
                raise ValueError(problem)
        elif self.header_name is not None:
            raise ValueError("header_name is used only by the header scheme")
        if self.scheme == "query":
            if not self.param_name:
                raise ValueError("the query scheme needs param_name")
            if not _PARAM_NAME.match(self.param_name):
                raise ValueError(
                    f"{self.param_name!r} is not a valid query parameter name "
                    "(letters, digits, _ . - ~ [ ])"
                )
        elif self.param_name is not None:
            raise ValueError("param_name is used only by the query scheme")
        return self

    @property
    def header(self) -> str | None:
        """The request header that carries the secret, if the scheme uses one."""
        if self.scheme == "bearer":
            return "Authorization"
        return self.header_name if self.scheme == "header" else None


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
    auth: HttpAuthConfig | None = Field(
        default=None,
        title="Authentication",
        description="Sends a credential's secret with the request; no secret in the config.",
    )

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            problem = _header_problem(name)
            if problem:
                raise ValueError(problem)
        return headers

    @model_validator(mode="after")
    def _auth_header_not_set_twice(self) -> Self:
        header = self.auth.header if self.auth else None
        if header and any(name.lower() == header.lower() for name in self.headers):
            raise ValueError(f"the {header} header is set by auth: remove it from headers")
        return self

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


def _with_query_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    pair = urlencode({name: value})
    return urlunsplit(parts._replace(query=f"{parts.query}&{pair}" if parts.query else pair))


def _redacted(message: str, secret: str, credential: str) -> str:
    """A failure message without the secret: an invalid URL is quoted whole (query scheme) and
    an error answer's preview may echo what was sent."""
    for form in sorted({secret, quote_plus(secret)}, key=len, reverse=True):
        message = message.replace(form, f"<credential {credential}>")
    return message


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

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        assert isinstance(config, HttpRequestConfig)  # noqa: S101  (registry guarantees it)
        return [(CREDENTIAL_RESOURCE, config.auth.credential)] if config.auth else []

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
        auth = config.auth
        if auth is None:
            return await self._send(url, headers, content)
        secret = context.resources.get((CREDENTIAL_RESOURCE, auth.credential))
        if not isinstance(secret, str) or not secret:
            return NodeResult.failure(
                f"credential {auth.credential!r} does not exist or has no usable value"
            )
        if auth.scheme == "query":
            assert auth.param_name is not None  # noqa: S101  (validated with the scheme)
            try:
                url = _with_query_param(url, auth.param_name, secret)
            except ValueError:
                return NodeResult.failure(f"url {http.display_url(url)} is not a valid URL")
        elif auth.header is not None:
            value = f"Bearer {secret}" if auth.scheme == "bearer" else secret
            headers[auth.header] = value
        result = await self._send(url, headers, content)
        if result.error is not None:
            result.error = _redacted(result.error, secret, auth.credential)
        return result

    async def _send(self, url: str, headers: dict[str, str], content: bytes | None) -> NodeResult:
        config = self.config
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
