"""The gateway every model call goes through: chat (streaming or not), embeddings, probes.

What it adds around the official ``openai`` client (whose own retries are turned off):

- **Fallback.** ``chat`` tries the endpoints in the order given. A retryable failure that used
  up its retries, an open circuit or a disabled endpoint moves on to the next; a failure that
  no retry can fix (context length, bad request, wrong key, unknown model) stops at once.
- **Retries** on 429, 500, 502, 503, 504, timeouts and connection errors: ``max_retries``
  more tries per endpoint, exponential backoff with full jitter, or the server's
  ``Retry-After`` (seconds or an HTTP date, capped) when it sent one.
- **A circuit breaker** per endpoint and process (``circuit.py``).
- **A concurrency limit** per endpoint and process, shared by every thread and event loop
  (``limiter.py``). Waiting for a slot is not part of the per-call timeout: the run's own
  timeout bounds it (a cancelled waiter leaves the queue cleanly).
- **HTTP clients per (endpoint, revision, event loop)**: httpx clients belong to the loop
  that first used them, and a Celery worker thread keeps one persistent loop. A client's pool
  serves at most ``POOL_SIZE`` requests (one more client per 64 of ``max_concurrency``) and
  has headroom above that, so no pool caps what the limiter allows. An edited endpoint (new
  revision, URL, key...) gets new clients on its next call; the old ones are closed once
  their last request is done.
- **Streaming reassembly**, ``on_delta`` per content piece, TTFT, and metrics.

A stream that breaks after some text was already handed to ``on_delta`` is *not* retried,
on this endpoint or another: the caller has shown that text, and a second answer would
repeat or contradict it. The error says how many characters got through. A stream that
breaks before its first content delta is retried like any other failure.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import httpx2
import openai
from openai import AsyncOpenAI
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from assistant_site.metrics import (
    LLM_CIRCUIT_OPEN,
    LLM_IN_FLIGHT,
    LLM_LATENCY,
    LLM_REQUESTS,
    LLM_TOKENS,
    LLM_TTFT,
)
from workflows.llm.circuit import CircuitBreaker
from workflows.llm.endpoints import EndpointConfig
from workflows.llm.errors import Attempt, LlmError, LlmErrorKind
from workflows.llm.limiter import ConcurrencyLimiter

__all__ = [
    "Attempt",
    "ChatRequest",
    "ChatResult",
    "Gateway",
    "LlmError",
    "ProbeResult",
    "backoff_delay",
    "gateway",
    "parse_retry_after",
]

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Failures that are the endpoint's fault: they count towards opening its circuit. Any other
# answer (a 400, a 401...) proves the server is up and resets the count.
SERVER_FAULT_KINDS = frozenset(
    {"rate_limited", "unavailable", "timeout", "connection", "malformed"}
)
# The gateway sets these itself; a node's params cannot override them.
RESERVED_PARAMS = frozenset({"model", "messages", "stream", "stream_options"})
# vLLM removed these: it logs a warning and answers 200 with UNCONSTRAINED output.
REMOVED_GUIDED_PARAMS = frozenset(
    {
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "guided_decoding_backend",
        "guided_whitespace_pattern",
    }
)
# An endpoint without a key still needs an Authorization header for the openai client;
# servers without --api-key ignore it (vLLM's own documentation uses the same placeholder).
NO_API_KEY = "EMPTY"
PROBE_TIMEOUT_S = 10.0
# Requests per connection pool. httpcore's pool scans every connection it holds (a poll()
# syscall each) whenever a request starts or ends, so one pool of 256 costs far more CPU
# than four of 64: 256 short streams took 1.7 s of CPU with one pool, 1.1 s with four
# (measured, tests/doubles/vllm_server.py in another process).
POOL_SIZE = 64
_CONTEXT_LENGTH = re.compile(r"maximum context length is (\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    # temperature, top_p, max_tokens, stop, seed, vLLM extras (top_k...): merged over the
    # endpoint's default_params and sent as given.
    params: Mapping[str, Any] = field(default_factory=dict)
    # OpenAI form: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}.
    response_format: dict[str, Any] | None = None
    stream: bool = False


@dataclass
class ChatResult:
    text: str
    finish_reason: str | None
    tokens_in: int
    tokens_out: int
    endpoint: str  # the name of the endpoint that answered
    model: str
    attempts: list[Attempt]
    latency_ms: float  # from the call to the last byte, retries and queueing included
    ttft_ms: float | None  # from the call to the first content delta (streaming only)


@dataclass
class ProbeResult:
    ok: bool
    models: list[str]
    latency_ms: float  # of GET <base>/models
    health: str  # "ok", "unhealthy" or "no /health endpoint"
    error: str  # "" when ok


@dataclass(eq=False)
class _Client:
    """One AsyncOpenAI (one connection pool) and the requests using it right now."""

    client: AsyncOpenAI
    group: _ClientGroup
    users: int = 0


@dataclass(eq=False)
class _ClientGroup:
    """The clients of one endpoint revision on one event loop: one per POOL_SIZE requests
    of the endpoint's max_concurrency, made as the load needs them."""

    fingerprint: tuple[object, ...]
    clients: list[_Client] = field(default_factory=list)
    retired: bool = False

    @property
    def users(self) -> int:
        return sum(client.users for client in self.clients)


@dataclass
class _Progress:
    """How far a chat call got; kept across its attempts."""

    started: float  # time.monotonic() at the call
    chars: int = 0  # characters handed to on_delta so far
    first_delta_at: float | None = None


@dataclass
class _Timing:
    """When one attempt got its slot and went out."""

    started_at: float = field(default_factory=time.time)  # epoch seconds, for the trace
    started: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self.started_at, self.started = time.time(), time.monotonic()

    def ms(self) -> float:
        return (time.monotonic() - self.started) * 1000


@dataclass
class _Reply:
    text: str
    finish_reason: str | None
    tokens_in: int
    tokens_out: int


class _CallbackError(Exception):
    """Wraps an exception raised by on_delta so that it is not mistaken for a server fault;
    chat() raises the original."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


def parse_retry_after(headers: Mapping[str, str], *, cap_s: float = 30.0) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date;
    ``retry-after-ms`` too), capped at ``cap_s``; None when it did not say."""
    value = headers.get("retry-after-ms")
    seconds: float | None = None
    if value:
        try:
            seconds = float(value) / 1000
        except ValueError:
            seconds = None
    value = headers.get("retry-after")
    if seconds is None and value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap_s)


def backoff_delay(retry: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**retry)]."""
    return random.uniform(0, min(cap_s, base_s * 2**retry))  # noqa: S311  (jitter, not a secret)


def _server_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message[:500]
    if isinstance(body, str) and body:
        return body[:500]  # vLLM's 401 is the flat {"error": "Unauthorized"}
    return exc.message[:500]


def _fingerprint(endpoint: EndpointConfig) -> tuple[object, ...]:
    # The revision is what changes on an edit; the connection fields are included as well
    # so that a runner that forgot to fill the revision still never talks to an old URL.
    return (
        endpoint.revision,
        endpoint.base_url,
        endpoint.api_key,
        endpoint.timeout_s,
        endpoint.max_concurrency,
    )


def _health_url(base_url: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000/health`` (vLLM serves it at the root)."""
    root = base_url.rstrip("/")
    root = re.sub(r"/v\d+$", "", root)
    return f"{root}/health"


_tls_lock = threading.Lock()
_tls_shared: list[ssl.SSLContext] = []


def _tls_context() -> ssl.SSLContext:
    """One TLS context per process, shared by every client: building one loads the CA
    bundle (about 25 ms of CPU), and each worker thread makes its own clients
    (bench/llm_gateway.py found it dominating a fresh thread's first runs). Built under a
    lock: without it, a burst reaching a fresh worker had each of its threads build one at
    once (a third of the workers' CPU in the first seconds of bench/end_to_end.py's fan-out,
    functools.cache does not stop that)."""
    with _tls_lock:
        if not _tls_shared:
            _tls_shared.append(ssl.create_default_context())
        return _tls_shared[0]


class Gateway:
    """Process-wide: the limiters and circuit breakers it holds are per process by design,
    and so is the ``gateway`` instance below. Tests make their own with small delays."""

    def __init__(
        self,
        *,
        max_retries: int = 2,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 8.0,
        retry_after_cap_s: float = 30.0,
        failure_threshold: int = 5,
        open_for_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_retries = max(0, max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.retry_after_cap_s = retry_after_cap_s
        self.breaker = CircuitBreaker(
            failure_threshold=failure_threshold,
            open_for_s=open_for_s,
            clock=clock,
            on_change=lambda label, is_open: LLM_CIRCUIT_OPEN.labels(label).set(int(is_open)),
        )
        self._lock = threading.Lock()
        self._limiters: dict[int, ConcurrencyLimiter] = {}
        # Per event loop, per endpoint id. Entries of closed loops are dropped on the next
        # lookup (a weak mapping would never let go: the clients refer to their loop).
        self._clients: dict[asyncio.AbstractEventLoop, dict[int, _ClientGroup]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # -- public API --------------------------------------------------------------------------

    async def chat(
        self,
        endpoints: Sequence[EndpointConfig],
        request: ChatRequest,
        *,
        on_delta: Callable[[str], None] | None = None,
    ) -> ChatResult:
        """Answer ``request`` from the first endpoint that can; see the module docstring."""
        if not endpoints:
            raise LlmError("no_endpoint", "no model endpoint configured")
        removed = sorted(REMOVED_GUIDED_PARAMS & {*request.params} | _guided(endpoints))
        if removed:
            raise LlmError(
                "bad_request",
                f"{', '.join(removed)}: removed from vLLM (it would answer without the "
                "constraint); use response_format with a json_schema instead",
            )
        progress = _Progress(started=time.monotonic())
        attempts: list[Attempt] = []
        last: LlmError | None = None
        for endpoint in endpoints:
            if not endpoint.enabled:
                attempts.append(Attempt(endpoint.name, time.time(), 0.0, "no_endpoint"))
                continue

            async def call(client: AsyncOpenAI, endpoint: EndpointConfig = endpoint) -> _Reply:
                return await self._chat_once(client, endpoint, request, on_delta, progress)

            try:
                reply = await self._with_retries(endpoint, attempts, call)
            except LlmError as err:
                err.attempts = attempts
                if not err.retryable:
                    raise
                last = err
                continue
            except _CallbackError as exc:
                raise exc.original from None
            return ChatResult(
                text=reply.text,
                finish_reason=reply.finish_reason,
                tokens_in=reply.tokens_in,
                tokens_out=reply.tokens_out,
                endpoint=endpoint.name,
                model=endpoint.model,
                attempts=attempts,
                latency_ms=(time.monotonic() - progress.started) * 1000,
                ttft_ms=None
                if progress.first_delta_at is None
                else (progress.first_delta_at - progress.started) * 1000,
            )
        if last is None:
            names = ", ".join(endpoint.name for endpoint in endpoints)
            raise LlmError(
                "no_endpoint", f"every model endpoint is disabled ({names})", attempts=attempts
            )
        if len(endpoints) > 1:
            last.message = f"{last.message} (tried {len(endpoints)} endpoints, none answered)"
            last.args = (last.message,)
        raise last

    async def embed(self, endpoint: EndpointConfig, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order. Same retries, circuit and limit as chat."""
        if not texts:
            return []
        if not endpoint.enabled:
            raise LlmError(
                "no_endpoint", f"endpoint {endpoint.name} is disabled", endpoint=endpoint.name
            )
        attempts: list[Attempt] = []

        async def call(client: AsyncOpenAI) -> list[list[float]]:
            return await self._embed_once(client, endpoint, list(texts))

        try:
            return await self._with_retries(endpoint, attempts, call)
        except LlmError as err:
            err.attempts = attempts
            raise

    async def probe(self, endpoint: EndpointConfig) -> ProbeResult:
        """``GET <base>/models`` with the key, and ``GET <server root>/health``. Goes around
        the limiter and the circuit breaker: it is how an administrator checks an endpoint,
        whatever state this process holds about it. Timeout: the endpoint's, at most 10 s."""
        timeout = min(endpoint.timeout_s, PROBE_TIMEOUT_S)
        client = AsyncOpenAI(
            api_key=endpoint.api_key or NO_API_KEY,
            base_url=endpoint.base_url,
            max_retries=0,
            timeout=timeout,
        )
        models: list[str] = []
        error = ""
        started = time.monotonic()
        try:
            page = await client.models.list()
            models = [model.id for model in page.data]
        except LlmError as exc:
            error = exc.message
        except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
            error = self._map_error(exc, endpoint).message
        finally:
            latency_ms = (time.monotonic() - started) * 1000
            await client.close()
        if not error and endpoint.model and endpoint.model not in models:
            served = ", ".join(models) or "none"
            error = f"model {endpoint.model} is not served by {endpoint.name} (served: {served})"
        health = await self._health(endpoint, timeout)
        if health == "unhealthy" and not error:
            error = f"{_health_url(endpoint.base_url)} says the server is unhealthy"
        return ProbeResult(
            ok=not error, models=models, latency_ms=latency_ms, health=health, error=error
        )

    async def aclose(self) -> None:
        """Close this event loop's HTTP clients (tests; a worker thread's loop lives on)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._clients.pop(loop, {})
        for group in clients.values():
            for entry in group.clients:
                await entry.client.close()

    def limiter(self, endpoint: EndpointConfig) -> ConcurrencyLimiter:
        with self._lock:
            limiter = self._limiters.get(endpoint.id)
            if limiter is None:
                limiter = self._limiters[endpoint.id] = ConcurrencyLimiter(endpoint.max_concurrency)
        if limiter.limit != endpoint.max_concurrency:
            limiter.set_limit(endpoint.max_concurrency)
        return limiter

    # -- one endpoint: circuit, retries, limit -------------------------------------------------

    async def _with_retries(
        self,
        endpoint: EndpointConfig,
        attempts: list[Attempt],
        call: Callable[[AsyncOpenAI], Awaitable[T]],
    ) -> T:
        name = endpoint.name
        for retry in range(self.max_retries + 1):
            verdict = self.breaker.check(endpoint.id)
            if not verdict.allowed:
                LLM_REQUESTS.labels(name, "circuit_open").inc()
                attempts.append(Attempt(name, time.time(), 0.0, "circuit_open"))
                wait = math.ceil(verdict.retry_in_s)
                raise LlmError(
                    "circuit_open",
                    f"endpoint {name} failed {verdict.failures} times in a row; calls resume "
                    f"after {wait} s",
                    endpoint=name,
                    retry_after_s=verdict.retry_in_s,
                )
            timing = _Timing()
            try:
                result = await self._attempt(endpoint, call, timing)
            except LlmError as err:
                attempt = Attempt(name, timing.started_at, timing.ms(), err.kind, err.status_code)
                attempts.append(attempt)
                LLM_REQUESTS.labels(name, err.kind).inc()
                if err.kind in SERVER_FAULT_KINDS:
                    self.breaker.record_failure(endpoint.id, name)
                else:
                    self.breaker.record_success(endpoint.id, name)
                if not err.retryable or retry == self.max_retries:
                    raise
                if err.retry_after_s is not None:
                    delay = min(err.retry_after_s, self.retry_after_cap_s)
                else:
                    delay = backoff_delay(
                        retry, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s
                    )
                attempt.retry_in_s = delay
                await asyncio.sleep(delay)
                continue
            except BaseException:  # cancelled, or on_delta raised: no verdict on the server
                if verdict.trial:
                    self.breaker.record_abandoned(endpoint.id)
                raise
            attempts.append(Attempt(name, timing.started_at, timing.ms(), "ok", 200))
            LLM_REQUESTS.labels(name, "ok").inc()
            self.breaker.record_success(endpoint.id, name)
            return result
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _attempt(
        self,
        endpoint: EndpointConfig,
        call: Callable[[AsyncOpenAI], Awaitable[T]],
        timing: _Timing,
    ) -> T:
        async with self.limiter(endpoint).slot():
            # The attempt's clock starts with its slot: queueing shows in the call's
            # latency_ms, not in the attempt's duration or the latency histogram.
            timing.start()
            entry = self._client_for(endpoint)
            in_flight = LLM_IN_FLIGHT.labels(endpoint.name)
            in_flight.inc()
            started = timing.started
            try:
                return await call(entry.client)
            except (LlmError, _CallbackError):
                raise
            except (openai.OpenAIError, httpx2.HTTPError, TimeoutError, ValueError) as exc:
                raise self._map_error(exc, endpoint) from exc
            finally:
                in_flight.dec()
                LLM_LATENCY.labels(endpoint.name).observe(time.monotonic() - started)
                await self._release_client(entry)

    # -- the calls -----------------------------------------------------------------------------

    async def _chat_once(
        self,
        client: AsyncOpenAI,
        endpoint: EndpointConfig,
        request: ChatRequest,
        on_delta: Callable[[str], None] | None,
        progress: _Progress,
    ) -> _Reply:
        body: dict[str, Any] = {
            key: value
            for key, value in {**endpoint.default_params, **request.params}.items()
            if key not in RESERVED_PARAMS
        }
        if request.response_format is not None:
            body["response_format"] = request.response_format  # passed through as given
        messages = cast(Any, request.messages)
        if request.stream:
            reply = await self._chat_stream(
                client,
                endpoint,
                messages=messages,
                body=body,
                on_delta=on_delta,
                progress=progress,
            )
        else:
            async with asyncio.timeout(endpoint.timeout_s):
                completion = await client.chat.completions.create(
                    model=endpoint.model, messages=messages, extra_body=body
                )
            reply = _reply_of(completion, endpoint)
            if on_delta is not None and reply.text:
                _deliver(on_delta, reply.text)  # one delta: the whole text
        self._count_tokens(endpoint, reply)
        return reply

    async def _chat_stream(
        self,
        client: AsyncOpenAI,
        endpoint: EndpointConfig,
        *,
        messages: Any,
        body: dict[str, Any],
        on_delta: Callable[[str], None] | None,
        progress: _Progress,
    ) -> _Reply:
        assembler = _Assembler(endpoint, on_delta, progress)
        try:
            stream = await client.chat.completions.create(
                model=endpoint.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                extra_body=body,
            )
            try:
                async for chunk in stream:
                    assembler.feed(chunk)
            finally:
                await stream.close()
        except _CallbackError:
            raise
        except (LlmError, openai.OpenAIError, httpx2.HTTPError, TimeoutError, ValueError) as exc:
            err = exc if isinstance(exc, LlmError) else self._map_error(exc, endpoint)
            if progress.chars:
                raise _broken_stream(err, endpoint, progress.chars) from exc
            raise err from exc
        return assembler.reply()

    async def _embed_once(
        self, client: AsyncOpenAI, endpoint: EndpointConfig, texts: list[str]
    ) -> list[list[float]]:
        async with asyncio.timeout(endpoint.timeout_s):
            response = await client.embeddings.create(
                model=endpoint.model, input=texts, encoding_format="float"
            )
        if not isinstance(response, CreateEmbeddingResponse) or len(response.data) != len(texts):
            raise LlmError(
                "malformed",
                f"endpoint {endpoint.name} returned no embedding for some of the "
                f"{len(texts)} texts",
                endpoint=endpoint.name,
            )
        if response.usage is not None:
            LLM_TOKENS.labels(endpoint.name, "prompt").inc(response.usage.prompt_tokens or 0)
        ordered = sorted(response.data, key=lambda item: item.index)
        return [list(item.embedding) for item in ordered]

    async def _health(self, endpoint: EndpointConfig, timeout: float) -> str:
        try:
            async with httpx2.AsyncClient(timeout=timeout) as http:
                response = await http.get(_health_url(endpoint.base_url))
        except httpx2.HTTPError:
            return "unhealthy"
        if response.is_success:
            return "ok"
        if response.status_code in (401, 403, 404, 405):
            return "no /health endpoint"  # commercial APIs and some proxies have none
        return "unhealthy"

    # -- clients, errors, metrics --------------------------------------------------------------

    def _client_for(self, endpoint: EndpointConfig) -> _Client:
        loop = asyncio.get_running_loop()
        fingerprint = _fingerprint(endpoint)
        with self._lock:
            for dead in [other for other in self._clients if other.is_closed()]:
                del self._clients[dead]
            per_loop = self._clients.setdefault(loop, {})
        # per_loop is only ever touched from this loop's thread: no lock needed below.
        group = per_loop.get(endpoint.id)
        if group is None or group.fingerprint != fingerprint:
            if group is not None:
                group.retired = True  # closed once its last request is done
                if group.users == 0:
                    self._close_later(group)
            group = per_loop[endpoint.id] = _ClientGroup(fingerprint)
        # The least busy client; a new one when all are full. The limiter keeps this loop's
        # requests at or below max_concurrency, so no client goes much above POOL_SIZE.
        entry = min(group.clients, key=lambda client: client.users, default=None)
        wanted = math.ceil(endpoint.max_concurrency / POOL_SIZE)
        if entry is None or (entry.users >= POOL_SIZE and len(group.clients) < wanted):
            entry = _Client(self._make_client(endpoint), group)
            group.clients.append(entry)
        entry.users += 1
        return entry

    async def _release_client(self, entry: _Client) -> None:
        entry.users -= 1
        group = entry.group
        if group.retired and group.users == 0:
            for client in group.clients:
                await client.client.close()

    def _close_later(self, group: _ClientGroup) -> None:
        for entry in group.clients:
            task = asyncio.get_running_loop().create_task(entry.client.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    def _make_client(endpoint: EndpointConfig) -> AsyncOpenAI:
        # One pool serves at most about POOL_SIZE requests (DESIGN §6: the pool's per-request
        # work grows with its size), and gets headroom above that so that it never queues
        # what the limiter let through.
        size = min(endpoint.max_concurrency, POOL_SIZE)
        limits = httpx2.Limits(max_connections=size + 16, max_keepalive_connections=size)
        timeout = httpx2.Timeout(endpoint.timeout_s, connect=min(endpoint.timeout_s, 10.0))
        return AsyncOpenAI(
            api_key=endpoint.api_key or NO_API_KEY,
            base_url=endpoint.base_url,
            max_retries=0,  # ours are the only retries
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(
                limits=limits, timeout=timeout, verify=_tls_context()
            ),
        )

    def _map_error(self, exc: BaseException, endpoint: EndpointConfig) -> LlmError:
        name = endpoint.name
        if isinstance(exc, openai.APIStatusError):
            return self._map_status(exc, endpoint)
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | TimeoutError):
            return LlmError(
                "timeout",
                f"endpoint {name} did not answer within {endpoint.timeout_s:g} s",
                endpoint=name,
            )
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
            return LlmError(
                "connection",
                f"connection to endpoint {name} ({endpoint.base_url}) failed: "
                f"{exc.__cause__ or exc}",
                endpoint=name,
            )
        if isinstance(exc, openai.APIResponseValidationError | ValueError):
            return LlmError(
                "malformed",
                f"endpoint {name} sent an answer that is not in the OpenAI format: {exc}",
                endpoint=name,
            )
        if isinstance(exc, openai.APIError):
            # An error event inside a 200 stream: vLLM's engine failed after the headers went
            # out. Handled like a 500.
            return LlmError(
                "unavailable",
                f"endpoint {name} reported an error in the stream: {_server_message(exc)}",
                endpoint=name,
            )
        return LlmError("connection", f"endpoint {name}: {exc}", endpoint=name)

    def _map_status(self, exc: openai.APIStatusError, endpoint: EndpointConfig) -> LlmError:
        name = endpoint.name
        status = exc.status_code
        detail = _server_message(exc)
        kind: LlmErrorKind
        retryable: bool | None = None
        if status in (400, 422) and "maximum context length" in detail.lower():
            match = _CONTEXT_LENGTH.search(detail)
            size = f" ({match.group(1)} tokens)" if match else ""
            kind = "context_length"
            message = (
                f"the prompt is longer than the model's context{size}: shorten the prompt or "
                "the history"
            )
        elif status in (401, 403):
            kind = "unauthorized"
            message = (
                f"endpoint {name} refused the API key (HTTP {status}): check the endpoint's key"
            )
        elif status == 404:
            kind = "not_found"
            message = (
                f"endpoint {name} answered 404 ({detail}): check its base URL "
                f"({endpoint.base_url}) and model name ({endpoint.model})"
            )
        elif status == 429:
            kind = "rate_limited"
            message = f"endpoint {name} is rate limiting requests (HTTP 429)"
        elif status == 408:
            kind = "timeout"
            message = f"endpoint {name} timed out the request (HTTP 408)"
        elif status >= 500:
            kind = "unavailable"
            message = f"endpoint {name} is unavailable (HTTP {status}): {detail}"
            retryable = status in RETRYABLE_STATUS  # not 501 and the like
        else:
            kind = "bad_request"
            message = f"endpoint {name} rejected the request (HTTP {status}): {detail}"
        return LlmError(
            kind,
            message,
            endpoint=name,
            retryable=retryable,
            status_code=status,
            retry_after_s=parse_retry_after(exc.response.headers, cap_s=self.retry_after_cap_s),
        )

    @staticmethod
    def _count_tokens(endpoint: EndpointConfig, reply: _Reply) -> None:
        if reply.tokens_in:
            LLM_TOKENS.labels(endpoint.name, "prompt").inc(reply.tokens_in)
        if reply.tokens_out:
            LLM_TOKENS.labels(endpoint.name, "completion").inc(reply.tokens_out)


def _guided(endpoints: Sequence[EndpointConfig]) -> set[str]:
    return {
        key for endpoint in endpoints for key in endpoint.default_params
    } & REMOVED_GUIDED_PARAMS


def _deliver(on_delta: Callable[[str], None], piece: str) -> None:
    try:
        on_delta(piece)
    except Exception as exc:
        raise _CallbackError(exc) from exc


class _Assembler:
    """Turns vLLM's chunks into text: content deltas only (never assume a delta has
    ``content``; reasoning and tool-call deltas are not text), finish_reason from the final
    choice chunk, usage from the usage chunk (``choices: []``)."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        on_delta: Callable[[str], None] | None,
        progress: _Progress,
    ) -> None:
        self.endpoint = endpoint
        self.on_delta = on_delta
        self.progress = progress
        self.started = time.monotonic()
        self.pieces: list[str] = []
        self.finish_reason: str | None = None
        self.tokens_in = 0
        self.tokens_out = 0

    def feed(self, chunk: Any) -> None:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.tokens_in = getattr(usage, "prompt_tokens", 0) or 0
            self.tokens_out = getattr(usage, "completion_tokens", 0) or 0
        choices = getattr(chunk, "choices", None)
        if not isinstance(choices, list):
            raise LlmError(
                "malformed",
                f"endpoint {self.endpoint.name} sent a stream chunk without choices",
                endpoint=self.endpoint.name,
            )
        for choice in choices:
            if getattr(choice, "index", 0) != 0:
                continue  # n > 1 is not supported: the first choice is the answer
            piece = getattr(getattr(choice, "delta", None), "content", None)
            if isinstance(piece, str) and piece:
                self._add(piece)
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self.finish_reason = str(reason)

    def _add(self, piece: str) -> None:
        progress = self.progress
        if progress.first_delta_at is None:
            progress.first_delta_at = time.monotonic()
            LLM_TTFT.labels(self.endpoint.name).observe(progress.first_delta_at - self.started)
        self.pieces.append(piece)
        if self.on_delta is not None:
            _deliver(self.on_delta, piece)
        progress.chars += len(piece)

    def reply(self) -> _Reply:
        return _Reply("".join(self.pieces), self.finish_reason, self.tokens_in, self.tokens_out)


def _reply_of(completion: Any, endpoint: EndpointConfig) -> _Reply:
    choices = getattr(completion, "choices", None)
    if not isinstance(completion, ChatCompletion) or not isinstance(choices, list) or not choices:
        raise LlmError(
            "malformed",
            f"endpoint {endpoint.name} answered without choices",
            endpoint=endpoint.name,
        )
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None)
    usage = getattr(completion, "usage", None)
    return _Reply(
        text=text if isinstance(text, str) else "",
        finish_reason=getattr(choice, "finish_reason", None),
        tokens_in=(usage.prompt_tokens or 0) if usage is not None else 0,
        tokens_out=(usage.completion_tokens or 0) if usage is not None else 0,
    )


def _broken_stream(err: LlmError, endpoint: EndpointConfig, chars: int) -> LlmError:
    """A stream that failed after text reached on_delta: not retried anywhere, since the
    caller already showed that text and a second answer would repeat or contradict it."""
    kind = err.kind if err.kind in ("unavailable", "malformed", "timeout") else "connection"
    return LlmError(
        kind,
        f"the stream from endpoint {endpoint.name} broke after {chars} characters "
        f"({err.message}); not retried, so that the text already shown is not repeated",
        endpoint=endpoint.name,
        retryable=False,
        status_code=err.status_code,
    )


gateway = Gateway()
