"""A protocol double of vLLM's OpenAI-compatible server (vLLM 0.33), for tests and benchmarks.

This is NOT a model and generates nothing: it answers in vLLM's exact wire format (JSON
bodies, SSE chunks, error bodies, /health, /v1/models, /metrics) with text that is fixed
by rule, so that clients can be tested byte for byte without a GPU. The reference is
vLLM's ``vllm/entrypoints/openai`` sources; docs/testing.md says how to use it.

What it answers
    The reply is ``reply`` (a string, or a callable on the request body), else a minimal
    JSON instance of the schema when ``response_format`` is ``json_schema`` (or
    ``structured_outputs.json``), ``{}`` for ``json_object``, else ``"Echo: "`` plus the
    last user message.

Tokens (a rule, not a tokenizer)
    Every CJK character (ideographs, kana, hangul, CJK and full-width punctuation) is one
    token, and so is every run of other non-space characters. Prompt tokens are counted
    over the text of all messages (string contents and ``text`` parts; roles, tools and
    the chat template are not counted). A reply token carries the whitespace after it,
    so the tokens of a reply concatenate back to the reply. As in vLLM, the end-of-sequence
    token counts as a generated token: a reply of 3 tokens that ends by itself uses 4
    completion tokens, and its final chunk carries ``"content":""``. Every chunk after the
    role chunk therefore carries exactly one token, and ``completion_tokens`` equals their
    number. ``max_tokens``/``max_completion_tokens`` (clamped to ``max_model_len`` minus
    the prompt, as in vLLM 0.33) cut the reply with finish_reason ``length``; ``stop``
    strings cut it with finish_reason ``stop`` and ``stop_reason`` set to the string.

Timing
    Streaming: headers at once, then after ``ttft_s`` the role chunk and the first token,
    then one token every ``token_delay_s``. With ``keep_alive_s > 0``, an SSE comment
    ``: keep-alive`` goes out for every ``keep_alive_s`` of silence (vLLM's
    ``--sse-keep-alive-interval``). Non-streaming answers after the same total time.

Faults (``inject(name, count=n, **params)``), each used by the next n requests it fits
    ``429`` (retry_after_s, message), ``500`` (message), ``503`` (message),
    ``drop_mid_stream`` (after_tokens=2), ``malformed_chunk`` (after_tokens=1, data),
    ``error_in_stream`` (after_tokens=0, message), ``slow_headers`` (delay_s=1.0),
    ``context_length`` (prompt_tokens) on chat; ``429``, ``500``, ``503``,
    ``drop_mid_stream``, ``slow_headers`` and ``context_length`` also on embeddings;
    ``unhealthy`` on ``GET /health``. Without streaming, ``drop_mid_stream`` closes the
    connection without an answer, ``malformed_chunk`` sends a cut-off JSON body and
    ``error_in_stream`` a 500.

Embeddings are unit vectors derived from a SHA-256 of the text: deterministic, not
semantic (similar texts are not close).

Not covered: ``n`` > 1, tool calls, logprobs, reasoning and ``continuous_usage_stats``
(accepted and ignored, as vLLM ignores unknown fields).

Command line: ``python -m tests.doubles.vllm_server --port 8100 [--ttft-ms 300]
[--tokens-per-s 30] [--model NAME] [--api-key KEY]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import math
import re
import secrets
import struct
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web

from tests.doubles.serving import ThreadedDouble

CHAT_FAULTS = frozenset(
    {
        "429",
        "500",
        "503",
        "drop_mid_stream",
        "malformed_chunk",
        "error_in_stream",
        "slow_headers",
        "context_length",
    }
)
EMBEDDING_FAULTS = frozenset(
    {"429", "500", "503", "drop_mid_stream", "slow_headers", "context_length"}
)
HEALTH_FAULTS = frozenset({"unhealthy"})
FAULTS = CHAT_FAULTS | EMBEDDING_FAULTS | HEALTH_FAULTS

_CJK = (
    "\u1100-\u11ff"  # hangul jamo
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3000-\u303f"  # CJK symbols and punctuation (。、「」)
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u31ff"  # bopomofo, hangul compatibility jamo, kana extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff00-\uffef"  # full-width forms (，！？)
    "\U00020000-\U0003134f"  # CJK extensions B to G
)
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_REPLY_TOKEN = re.compile(rf"\s*(?:[{_CJK}]|[^\s{_CJK}]+)\s*|\s+")

_SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
_JSON_CONTENT_TYPE = "application/json"
_KEEP_ALIVE = b": keep-alive\n\n"
_DONE = b"data: [DONE]\n\n"
_FINISH_REASONS = ("stop", "length", "abort")
# Keeps a handler that is still sleeping (a long ttft) from holding up stop().


def count_tokens(text: str) -> int:
    """Tokens of ``text`` by the double's rule: CJK characters plus other words."""
    return len(_WORD.findall(text))


def split_tokens(text: str) -> list[str]:
    """The reply tokens of ``text``; they concatenate back to ``text``."""
    return _REPLY_TOKEN.findall(text)


def _dumps(value: Any) -> str:
    # Both FastAPI's JSONResponse and pydantic's model_dump_json write compact JSON and
    # leave non-ASCII characters unescaped.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _error(message: str, err_type: str, code: int, param: str | None = None) -> dict[str, Any]:
    # Key order of vLLM's ErrorInfo: message, type, param, code.
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def _json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_dumps(body).encode(),
        status=status,
        content_type=_JSON_CONTENT_TYPE,
        headers=headers,
    )


def _validation_error(
    err_type: str, loc: str, msg: str, value: Any, param: str | None = None
) -> _AnswerNowError:
    """A 400 in the shape of vLLM's handler for pydantic validation errors."""
    entry = {"type": err_type, "loc": loc, "msg": msg, "input": _summarize(value)}
    message = f"1 validation error:\n  {entry}"
    body = _error(message, "Bad Request", 400, param or loc)
    return _AnswerNowError(_json_response(body, status=400))


def _summarize(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return f"<{type(value).__name__} of {len(value)} items>"
    return value


def _context_overflow_message(max_model_len: int, prompt_tokens: int) -> str:
    return (
        f"This model's maximum context length is {max_model_len} tokens. However, your "
        f"prompt contains {prompt_tokens} input tokens, which exceeds this limit even "
        "without any output tokens. Please reduce the length of the input prompt."
    )


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def _prompt_tokens(messages: list[Any]) -> int:
    return sum(
        count_tokens(_message_text(m.get("content"))) for m in messages if isinstance(m, dict)
    )


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message.get("content"))
    return ""


# ---------------------------------------------------------------------------------------
# Minimal instances of JSON schemas


def schema_instance(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A small value valid for common JSON schemas (pydantic's included).

    Objects get their required properties, strings "example" (or a value for a known
    ``format``), numbers 0 (moved into ``minimum``/``maximum``), booleans false, arrays
    ``minItems`` copies of their item, enums and anyOf/oneOf their first non-null choice.
    ``pattern`` is not honoured.
    """
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    inner = _inner_schema(schema, root)
    if inner is not None:
        return schema_instance(inner, root, depth + 1)
    return _typed_instance(schema, _schema_type(schema), root, depth)


def _inner_schema(schema: dict[str, Any], root: Any) -> Any:
    """The schema that ``schema`` stands for ($ref, anyOf, oneOf, allOf), else None."""
    if isinstance(schema.get("$ref"), str):
        return _resolve_ref(root, schema["$ref"])
    for key in ("anyOf", "oneOf"):
        choices = schema.get(key)
        if isinstance(choices, list) and choices:
            non_null = [c for c in choices if not (isinstance(c, dict) and c.get("type") == "null")]
            return (non_null or choices)[0]
    if isinstance(schema.get("allOf"), list):
        return _merge_all_of(schema, root)
    return None


def _merge_all_of(schema: dict[str, Any], root: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        resolved = _resolve_ref(root, part["$ref"]) if "$ref" in part else part
        for key, value in resolved.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _resolve_ref(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            return {}
        node = node[key]
    return node


def _schema_type(schema: dict[str, Any]) -> str | None:
    declared = schema.get("type")
    if isinstance(declared, list):
        non_null = [t for t in declared if t != "null"]
        return str(non_null[0]) if non_null else "null"
    if isinstance(declared, str):
        return declared
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


_STRING_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-0000-0000-000000000000",
}


def _typed_instance(schema: dict[str, Any], kind: str | None, root: Any, depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            name: schema_instance(properties.get(name, {}), root, depth + 1)
            for name in schema.get("required") or []
        }
    if kind == "array":
        count = int(schema.get("minItems") or 0)
        return [schema_instance(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "string":
        text = _STRING_FORMATS.get(str(schema.get("format")), "example")
        min_length = int(schema.get("minLength") or 0)
        if len(text) < min_length:
            text = (text * (min_length // len(text) + 1))[:min_length]
        if "maxLength" in schema:
            text = text[: int(schema["maxLength"])]
        return text
    if kind in ("integer", "number"):
        return _number_instance(schema)
    if kind == "boolean":
        return False
    return None


def _number_instance(schema: dict[str, Any]) -> int | float:
    value: int | float = 0
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(low, int | float) and value < low:
        value = math.ceil(low)
    if isinstance(ex_low, int | float) and value <= ex_low:
        value = math.floor(ex_low) + 1
    if isinstance(high, int | float) and value > high:
        value = math.floor(high)
    if isinstance(ex_high, int | float) and value >= ex_high:
        value = math.ceil(ex_high) - 1
    return value


# ---------------------------------------------------------------------------------------
# Generation plan


@dataclass(frozen=True)
class _Plan:
    """What the "model" generates: one piece of text per generated token."""

    pieces: list[str]
    finish_reason: str
    stop_reason: str | None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _plan(reply: str, limit: int, stops: Sequence[str]) -> _Plan:
    tokens = split_tokens(reply)
    pieces: list[str] = []
    produced = ""
    for token in tokens:
        if len(pieces) == limit:
            return _Plan(pieces, "length", None)
        produced += token
        pieces.append(token)
        hit = _first_stop(produced, stops)
        if hit is not None:
            # vLLM checks the stop strings after every token and cuts the text before the
            # match, which may reach back into tokens already produced.
            return _Plan(_clip(pieces, hit[0]), "stop", hit[1])
    if len(pieces) >= limit:
        return _Plan(pieces, "length", None)
    pieces.append("")  # the end-of-sequence token: generated, counted, no text
    return _Plan(pieces, "stop", None)


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    found: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (found is None or at < found[0]):
            found = (at, stop)
    return found


def _clip(pieces: list[str], end: int) -> list[str]:
    clipped, offset = [], 0
    for piece in pieces:
        clipped.append(piece[: max(0, end - offset)])
        offset += len(piece)
    return clipped


def _stop_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [s for s in value if isinstance(s, str) and s]
    return []


def _structured_schema(body: dict[str, Any]) -> tuple[bool, Any]:
    """(whether the reply must be JSON, the schema or None)."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema")
            return True, spec.get("schema") if isinstance(spec, dict) else None
        if response_format.get("type") == "json_object":
            return True, None
    structured = body.get("structured_outputs")
    if isinstance(structured, dict):
        if "json" in structured:
            schema = structured["json"]
            if isinstance(schema, str):
                with contextlib.suppress(ValueError):
                    schema = json.loads(schema)
            return True, schema
        if structured.get("json_object"):
            return True, None
    return False, None


# ---------------------------------------------------------------------------------------
# Embeddings


def embedding_vector(text: str, dim: int) -> list[float]:
    """A unit vector from SHA-256 blocks of ``text``: deterministic, not semantic.

    Values are rounded to float32, so the float and base64 encodings agree exactly.
    """
    raw = b""
    counter = 0
    while len(raw) < 4 * dim:
        raw += hashlib.sha256(f"{counter}\x00{text}".encode()).digest()
        counter += 1
    values = [u / 2**31 - 1.0 for u in struct.unpack(f"<{dim}I", raw[: 4 * dim])]
    return _unit_float32(values)


def _unit_float32(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    packed = struct.pack(f"<{len(values)}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{len(values)}f", packed))


def _embedding_inputs(value: Any) -> list[tuple[str, int]] | None:
    """(text to hash, prompt tokens) per input, or None when the input is malformed."""
    if isinstance(value, str):
        return [(value, count_tokens(value))]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return [(v, count_tokens(v)) for v in value]
        if all(isinstance(v, int) for v in value):
            return [(json.dumps(value), len(value))]
        if all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in value):
            return [(json.dumps(v), len(v)) for v in value]
    return None


# ---------------------------------------------------------------------------------------
# The server


@dataclass
class _Fault:
    name: str
    remaining: int
    params: dict[str, Any]

    def param(self, name: str, default: Any) -> Any:
        value = self.params.get(name)
        return default if value is None else value


class _DroppedError(Exception):
    """The double closed the connection on purpose; nothing more is to be written."""


class _AnswerNowError(Exception):
    """Ends a handler early with ``response`` (a validation error, an injected fault)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(frozen=True)
class _Chat:
    """One validated chat request and what the double will generate for it."""

    body: dict[str, Any]
    model: str
    request_id: str
    prompt_tokens: int
    plan: _Plan
    fault: _Fault | None
    stream: bool

    @property
    def fault_name(self) -> str:
        return self.fault.name if self.fault is not None else ""

    def fault_param(self, name: str, default: Any) -> Any:
        return self.fault.param(name, default) if self.fault is not None else default


class VllmDouble(ThreadedDouble):
    """vLLM's OpenAI-compatible HTTP API on a loopback port, served from a thread.

    Attributes such as ``ttft_s``, ``token_delay_s``, ``reply``, ``model`` and
    ``keep_alive_s`` are read per request, so a test may change them while it runs.
    """

    label = "vLLM"

    def __init__(
        self,
        *,
        model: str = "qwen2.5-7b-instruct",
        embedding_model: str = "bge-m3",
        ttft_s: float = 0.0,
        token_delay_s: float = 0.0,
        api_key: str | None = None,
        max_model_len: int = 4096,
        embedding_dim: int = 8,
        reply: str | Callable[[dict[str, Any]], str] | None = None,
        keep_alive_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.model = model
        self.embedding_model = embedding_model
        self.ttft_s = ttft_s
        self.token_delay_s = token_delay_s
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.embedding_dim = embedding_dim
        self.reply = reply
        self.keep_alive_s = keep_alive_s
        self.host = host
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._prompt_tokens: dict[str, int] = {}
        self._generation_tokens: dict[str, int] = {}
        self._successes: dict[tuple[str, str], int] = {}
        self._created = int(time.time())

    # -- public API --------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = self.host or "127.0.0.1"
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host)
            if address.is_unspecified:  # bound to every interface: call it on loopback
                address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
            host = f"[{address}]" if address.version == 6 else str(address)
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/version", self._version)
        app.on_response_prepare.append(_server_header)
        return app

    def inject(self, fault: str, *, count: int = 1, **params: Any) -> None:
        """Make the next ``count`` requests that the fault fits fail with it."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(_Fault(fault, count, dict(params)))

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.max_in_flight = self.in_flight

    # -- serving -----------------------------------------------------------------------

    def _take_fault(self, fits: frozenset[str]) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.name in fits:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return _Fault(fault.name, 0, fault.params)
        return None

    def _check_auth(self, request: web.Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("Authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
            # vLLM's authentication middleware answers with this flat body, not ErrorResponse.
            raise _AnswerNowError(_json_response({"error": "Unauthorized"}, status=401))

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        media_type = request.headers.get("Content-Type", "").lower().split(";", 1)[0].strip()
        if media_type != "application/json":
            message = (
                "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed"
            )
            raise _AnswerNowError(_json_response(_error(message, "Bad Request", 400), status=400))
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _validation_error("json_invalid", "body", "JSON decode error", str(exc)) from exc
        if not isinstance(body, dict):
            raise _validation_error(
                "model_attributes_type",
                "body",
                "Input should be a valid dictionary or object to extract fields from",
                body,
            )
        with self._lock:
            self.requests.append(body)
        return body

    async def _apply_fault(self, fits: frozenset[str]) -> _Fault | None:
        """Take the next fault that fits; answer now for those that replace the answer."""
        fault = self._take_fault(fits)
        if fault is None:
            return None
        if fault.name == "slow_headers":
            await asyncio.sleep(float(fault.param("delay_s", 1.0)))
        elif fault.name == "429":
            # vLLM never rate-limits; gateways in front of it do, with OpenAI's body.
            headers = {}
            retry_after = fault.params.get("retry_after_s")
            if retry_after is not None:
                value = float(retry_after)
                headers["Retry-After"] = str(int(value)) if value.is_integer() else str(value)
            message = fault.param("message", "Rate limit reached, retry later.")
            raise _AnswerNowError(
                _json_response(_error(message, "RateLimitError", 429), status=429, headers=headers)
            )
        elif fault.name in ("500", "503"):
            err_type, default = {
                "500": ("InternalServerError", "Engine failed to generate (injected fault)."),
                "503": ("ServiceUnavailableError", "The server is overloaded (injected fault)."),
            }[fault.name]
            code = int(fault.name)
            message = fault.param("message", default)
            raise _AnswerNowError(_json_response(_error(message, err_type, code), status=code))
        return fault

    def _check_model(self, requested: Any, served: str) -> None:
        # As in vLLM, an absent or empty model name means the served model.
        if requested and requested != served:
            message = f"The model `{requested}` does not exist. Valid aliases: {served}."
            raise _AnswerNowError(
                _json_response(_error(message, "NotFoundError", 404, "model"), status=404)
            )

    def _check_context(self, prompt_tokens: int, fault: _Fault | None) -> None:
        if fault is not None and fault.name == "context_length":
            prompt_tokens = int(
                fault.param("prompt_tokens", max(prompt_tokens, self.max_model_len + 1))
            )
        elif prompt_tokens <= self.max_model_len:
            return
        message = _context_overflow_message(self.max_model_len, prompt_tokens)
        raise _AnswerNowError(
            _json_response(_error(message, "BadRequestError", 400, "input_tokens"), status=400)
        )

    @staticmethod
    def _drop(request: web.Request) -> NoReturn:
        transport = request.transport
        if transport is not None:
            transport.close()
        raise _DroppedError

    async def _guarded(
        self, request: web.Request, answer: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            self._check_auth(request)
            return await answer(request)
        except _AnswerNowError as early:
            return early.response
        except (_DroppedError, ConnectionResetError):
            # The connection is gone (dropped on purpose, or the client left): aiohttp
            # only needs a response object to finish the handler.
            return web.Response(status=499)

    # -- /v1/chat/completions ----------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._guarded(request, self._answer_chat)
        finally:
            self.in_flight -= 1

    async def _answer_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        fault = await self._apply_fault(CHAT_FAULTS)
        chat = self._validate_chat(request, body, fault)
        if chat.stream:
            return await self._stream(request, chat)
        return await self._complete(request, chat)

    def _validate_chat(
        self, request: web.Request, body: dict[str, Any], fault: _Fault | None
    ) -> _Chat:
        if "messages" not in body:
            raise _validation_error("missing", "body.messages", "Field required", body)
        messages = body["messages"]
        if not isinstance(messages, list):
            raise _validation_error(
                "list_type", "body.messages", "Input should be a valid list", messages
            )
        stream = bool(body.get("stream"))
        if body.get("stream_options") and not stream:
            raise _validation_error(
                "value_error",
                "body",
                "Value error, Stream options can only be defined when `stream=True`.",
                body,
                param="stream_options",
            )
        model = self.model
        self._check_model(body.get("model"), model)
        prompt_tokens = _prompt_tokens(messages)
        self._check_context(prompt_tokens, fault)
        limit = self._token_limit(body, prompt_tokens)
        try:
            reply = self._reply_text(body, messages)
        except Exception as exc:  # a test's reply callable failed: answer like an engine error
            message = f"reply callable failed: {exc!r}"
            raise _AnswerNowError(
                _json_response(_error(message, "InternalServerError", 500), status=500)
            ) from exc
        request_id = (
            body.get("request_id") or request.headers.get("X-Request-Id") or uuid.uuid4().hex
        )
        return _Chat(
            body=body,
            model=model,
            request_id=f"chatcmpl-{request_id}",
            prompt_tokens=prompt_tokens,
            plan=_plan(reply, limit, _stop_strings(body.get("stop"))),
            fault=fault,
            stream=stream,
        )

    def _token_limit(self, body: dict[str, Any], prompt_tokens: int) -> int:
        requested = body.get("max_completion_tokens")
        if requested is None:
            requested = body.get("max_tokens")
        if requested is not None and (
            isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
        ):
            message = f"max_tokens must be at least 1, got {requested}."
            raise _AnswerNowError(
                _json_response(_error(message, "BadRequestError", 400, "max_tokens"), status=400)
            )
        # vLLM 0.33 clamps an oversized max_tokens to the room left in the context.
        room = max(1, self.max_model_len - prompt_tokens)
        return room if requested is None else min(requested, room)

    def _reply_text(self, body: dict[str, Any], messages: list[Any]) -> str:
        reply = self.reply
        if callable(reply):
            return str(reply(body))
        if isinstance(reply, str):
            return reply
        wants_json, schema = _structured_schema(body)
        if wants_json:
            instance = schema_instance(schema) if schema is not None else {}
            return json.dumps(instance, ensure_ascii=False)
        return "Echo: " + _last_user_text(messages)

    def _count(self, model: str, *, prompt: int = 0, generated: int = 0) -> None:
        self._prompt_tokens[model] = self._prompt_tokens.get(model, 0) + prompt
        self._generation_tokens[model] = self._generation_tokens.get(model, 0) + generated

    def _finished(self, model: str, reason: str) -> None:
        self._successes[(model, reason)] = self._successes.get((model, reason), 0) + 1

    async def _complete(self, request: web.Request, chat: _Chat) -> web.StreamResponse:
        plan = chat.plan
        await asyncio.sleep(self.ttft_s)
        self._count(chat.model, prompt=chat.prompt_tokens, generated=1)
        if chat.fault_name == "drop_mid_stream":
            self._drop(request)
        if chat.fault_name == "error_in_stream":
            # Without a stream to carry it, an engine failure is an HTTP 500.
            message = chat.fault_param("message", "Engine failed mid-generation (injected fault).")
            return _json_response(_error(message, "InternalServerError", 500), status=500)
        await asyncio.sleep(self.token_delay_s * (len(plan.pieces) - 1))
        self._count(chat.model, generated=len(plan.pieces) - 1)
        completion = len(plan.pieces)
        # vLLM returns model_dump() with no exclusions: every extension field, mostly null.
        # ChatMessage drops an empty tool_calls list.
        body = {
            "id": chat.request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": plan.text,
                        "refusal": None,
                        "annotations": None,
                        "audio": None,
                        "function_call": None,
                        "reasoning": None,
                    },
                    "logprobs": None,
                    "finish_reason": plan.finish_reason,
                    "stop_reason": plan.stop_reason,
                    "token_ids": None,
                    "routed_experts": None,
                }
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": {
                "prompt_tokens": chat.prompt_tokens,
                "total_tokens": chat.prompt_tokens + completion,
                "completion_tokens": completion,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "prompt_text": None,
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }
        self._finished(chat.model, plan.finish_reason)
        if chat.fault_name == "malformed_chunk":
            text = _dumps(body)
            return web.Response(
                body=text[: len(text) // 2].encode(), content_type=_JSON_CONTENT_TYPE
            )
        return _json_response(body)

    async def _stream(self, request: web.Request, chat: _Chat) -> web.StreamResponse:
        plan, fault_name = chat.plan, chat.fault_name
        options = chat.body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        created = int(time.time())
        response = web.StreamResponse(headers={"Content-Type": _SSE_CONTENT_TYPE})
        await response.prepare(request)

        async def send(payload: dict[str, Any]) -> None:
            await response.write(f"data: {_dumps(payload)}\n\n".encode())

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            # Keys in the field order of ChatCompletionStreamResponse, and only those vLLM
            # sets on that chunk (it serialises with model_dump_json(exclude_unset=True)).
            return {
                "id": chat.request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": chat.model,
                "choices": choices,
                **extra,
            }

        def token(piece: str, finish_reason: str | None = None) -> dict[str, Any]:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": piece},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            if finish_reason is not None:
                choice["stop_reason"] = plan.stop_reason
            choice["token_ids"] = None
            return chunk([choice], kv_transfer_params=None)

        await self._idle(self.ttft_s, response)
        self._count(chat.model, prompt=chat.prompt_tokens)
        error_after = int(chat.fault_param("after_tokens", 0))
        if fault_name == "error_in_stream" and error_after == 0:
            await self._stream_error(response, chat)
            return response
        role = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        await send(chunk([role], prompt_token_ids=None, prompt_text=None))

        last = len(plan.pieces) - 1
        for index, piece in enumerate(plan.pieces):
            if index > 0:
                await self._idle(self.token_delay_s, response)
            if fault_name == "drop_mid_stream" and index == min(
                int(chat.fault_param("after_tokens", 2)), last
            ):
                self._drop(request)
            if fault_name == "error_in_stream" and index == error_after:
                await self._stream_error(response, chat)
                return response
            self._count(chat.model, generated=1)
            await send(token(piece, plan.finish_reason if index == last else None))
            if fault_name == "malformed_chunk" and index + 1 == int(
                chat.fault_param("after_tokens", 1)
            ):
                bad = chat.fault_param("data", _dumps(token(piece))[:40])
                await response.write(f"data: {bad}\n\n".encode())

        if include_usage:
            completion = len(plan.pieces)
            usage = {
                "prompt_tokens": chat.prompt_tokens,
                "total_tokens": chat.prompt_tokens + completion,
                "completion_tokens": completion,
            }
            await send(chunk([], usage=usage))
        await response.write(_DONE)
        self._finished(chat.model, plan.finish_reason)
        await response.write_eof()
        return response

    @staticmethod
    async def _stream_error(response: web.StreamResponse, chat: _Chat) -> None:
        message = chat.fault_param("message", "Engine failed mid-generation (injected fault).")
        # vLLM writes in-stream errors with plain json.dumps (spaces after separators),
        # unlike its chunks.
        payload = json.dumps(_error(message, "InternalServerError", 500))
        await response.write(f"data: {payload}\n\n".encode())
        await response.write(_DONE)
        await response.write_eof()

    async def _idle(self, seconds: float, response: web.StreamResponse) -> None:
        """Wait ``seconds``, writing a keep-alive comment per ``keep_alive_s`` of silence."""
        interval = self.keep_alive_s
        if interval <= 0:
            if seconds > 0:
                await asyncio.sleep(seconds)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            if remaining < interval:
                await asyncio.sleep(remaining)
                return
            await asyncio.sleep(interval)
            await response.write(_KEEP_ALIVE)

    # -- /v1/embeddings ----------------------------------------------------------------

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._answer_embeddings)

    async def _answer_embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        fault = await self._apply_fault(EMBEDDING_FAULTS)
        if fault is not None and fault.name == "drop_mid_stream":
            self._drop(request)
        if "input" not in body:
            raise _validation_error("missing", "body.input", "Field required", body)
        inputs = _embedding_inputs(body["input"])
        if inputs is None:
            raise _validation_error(
                "value_error", "body.input", "Input should be text or token ids", body["input"]
            )
        model = self.embedding_model
        self._check_model(body.get("model"), model)
        dim = self._embedding_dimensions(body.get("dimensions"))
        for _, tokens in inputs:
            self._check_context(tokens, fault)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, (text, _) in enumerate(inputs):
            vector = embedding_vector(text, self.embedding_dim)
            if dim != self.embedding_dim:
                vector = _unit_float32(vector[:dim])
            embedding: Any = vector
            if as_base64:
                # vLLM sends the float32 buffer (little-endian), base64-encoded.
                embedding = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            data.append({"index": index, "object": "embedding", "embedding": embedding})
        prompt_tokens = sum(tokens for _, tokens in inputs)
        self._count(model, prompt=prompt_tokens)
        self._finished(model, "stop")
        return _json_response(
            {
                "id": f"embd-{uuid.uuid4().hex}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens,
                    "completion_tokens": 0,
                },
            }
        )

    def _embedding_dimensions(self, requested: Any) -> int:
        """``dimensions`` keeps the first n values, renormalised (matryoshka style)."""
        if requested is None:
            return self.embedding_dim
        valid = isinstance(requested, int) and not isinstance(requested, bool)
        if not valid or not 1 <= requested <= self.embedding_dim:
            message = f"dimensions must be between 1 and {self.embedding_dim}, got {requested}."
            raise _AnswerNowError(
                _json_response(_error(message, "BadRequestError", 400, "dimensions"), status=400)
            )
        return int(requested)

    # -- models, health, metrics ---------------------------------------------------------

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._answer_models)

    async def _answer_models(self, request: web.Request) -> web.StreamResponse:
        cards = [self._model_card(self.model), self._model_card(self.embedding_model)]
        return _json_response({"object": "list", "data": cards})

    def _model_card(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": self._created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid4().hex}",
                    "object": "model_permission",
                    "created": self._created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }

    async def _health(self, request: web.Request) -> web.StreamResponse:
        # vLLM answers 503 with an empty body when its engine is dead.
        status = 503 if self._take_fault(HEALTH_FAULTS) is not None else 200
        return web.Response(status=status)

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return _json_response({"version": "0.33.0"})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self.metrics_text(), content_type="text/plain", charset="utf-8")

    def metrics_text(self) -> str:
        """The Prometheus exposition text served on /metrics."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: Iterator[str]) -> None:
            # prometheus_client names a counter's family without its _total suffix.
            base = name.removesuffix("_total") if kind == "counter" else name
            lines.append(f"# HELP {base} {help_text}")
            lines.append(f"# TYPE {base} {kind}")
            lines.extend(samples)

        models = [self.model, self.embedding_model]

        def labels(model: str, **extra: str) -> str:
            pairs = {"model_name": model, "engine": "0", **extra}
            return ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs.items())

        family(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            (
                f"vllm:num_requests_running{{{labels(m)}}} "
                f"{float(self.in_flight if m == self.model else 0)}"
                for m in models
            ),
        )
        family(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            (f"vllm:num_requests_waiting{{{labels(m)}}} 0.0" for m in models),
        )
        family(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            (f"vllm:kv_cache_usage_perc{{{labels(m)}}} 0.0" for m in models),
        )
        family(
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            (
                f"vllm:prompt_tokens_total{{{labels(m)}}} {float(self._prompt_tokens.get(m, 0))}"
                for m in models
            ),
        )
        family(
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            (
                f"vllm:generation_tokens_total{{{labels(m)}}} "
                f"{float(self._generation_tokens.get(m, 0))}"
                for m in models
            ),
        )
        family(
            "vllm:request_success_total",
            "counter",
            "Count of successfully processed requests.",
            (
                f"vllm:request_success_total{{{labels(m, finished_reason=r)}}} "
                f"{float(self._successes.get((m, r), 0))}"
                for m in models
                for r in _FINISH_REASONS
            ),
        )
        return "\n".join(lines) + "\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    # vLLM runs under uvicorn; some clients log or branch on the Server header.
    response.headers["Server"] = "uvicorn"


# ---------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.vllm_server",
        description="Serve a protocol double of vLLM's OpenAI-compatible API (not a model).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token")
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="0: no delay")
    parser.add_argument("--model", default="qwen2.5-7b-instruct")
    parser.add_argument("--embedding-model", default="bge-m3")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--embedding-dim", type=int, default=8)
    parser.add_argument("--keep-alive-s", type=float, default=0.0)
    parser.add_argument("--reply", default=None, help="fixed reply text instead of the echo")
    args = parser.parse_args(argv)
    double = VllmDouble(
        model=args.model,
        embedding_model=args.embedding_model,
        ttft_s=args.ttft_ms / 1000,
        token_delay_s=1 / args.tokens_per_s if args.tokens_per_s > 0 else 0.0,
        api_key=args.api_key,
        max_model_len=args.max_model_len,
        embedding_dim=args.embedding_dim,
        reply=args.reply,
        keep_alive_s=args.keep_alive_s,
        host=args.host,
        port=args.port,
    )
    with double:
        sys.stdout.write(f"vLLM protocol double (not a model) serving {double.base_url}\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
