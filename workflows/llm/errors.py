"""Errors of the LLM gateway: one exception type, told apart by ``kind``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LlmErrorKind = Literal[
    "context_length",  # 400: the prompt does not fit the model's context
    "bad_request",  # other 400/422: the request is wrong, retrying cannot help
    "unauthorized",  # 401/403: wrong or missing API key
    "not_found",  # 404: wrong base URL or model name
    "rate_limited",  # 429
    "unavailable",  # 500/502/503/504, or an error inside a 200 stream
    "timeout",  # no answer within the endpoint's timeout
    "connection",  # refused, reset, or a stream that broke
    "circuit_open",  # the endpoint failed too often lately; skipped without a call
    "malformed",  # the server answered something that is not the OpenAI format
    "no_endpoint",  # nothing configured, or every endpoint disabled
]

# Kinds worth another try (same endpoint after a pause, then the next endpoint). A
# particular error may still be marked not retryable: a stream that broke after text was
# already delivered cannot be replayed without duplicating it.
RETRYABLE_KINDS: frozenset[str] = frozenset(
    {"rate_limited", "unavailable", "timeout", "connection", "malformed", "circuit_open"}
)


@dataclass
class Attempt:
    """One try against one endpoint (or one endpoint skipped), as the trace shows it."""

    endpoint: str
    started_at: float  # seconds since the epoch
    duration_ms: float
    outcome: str  # "ok" or an LlmError kind
    status_code: int | None = None
    retry_in_s: float | None = None  # the pause before the next try on the same endpoint


class LlmError(Exception):
    """A model call that failed; ``str(error)`` is a message fit for the run's trace."""

    def __init__(
        self,
        kind: LlmErrorKind,
        message: str,
        *,
        endpoint: str | None = None,
        retryable: bool | None = None,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        attempts: list[Attempt] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: LlmErrorKind = kind
        self.message = message
        self.endpoint = endpoint
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s  # from the server's Retry-After header, if any
        self.attempts: list[Attempt] = list(attempts or [])

    def __repr__(self) -> str:
        return f"LlmError({self.kind!r}, {self.message!r}, endpoint={self.endpoint!r})"
