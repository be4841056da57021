"""Per-request facts (request id, address, user agent, the request) as context variables.

Set by middleware, read by logging and the audit trail; contextvars follow a request across
the thread hops of Django's ASGI handler. Celery tasks and management commands see the
defaults unless they set their own.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestContext:  # frozen, hence safe as a ContextVar default
    request_id: str = ""
    ip: str | None = None
    user_agent: str = ""
    actor_id: int | None = None
    actor_username: str = ""
    source: str = "system"
    # The HTTP request being served. Its user is read when an entry is written, not when the
    # request arrives, because API authentication (DRF) sets the user later than middleware.
    request: Any = None


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "request_context",
    default=RequestContext(),  # noqa: B039  (immutable: frozen dataclass)
)


def current() -> RequestContext:
    return _current.get()


def set_context(context: RequestContext) -> contextvars.Token[RequestContext]:
    return _current.set(context)


def reset_context(token: contextvars.Token[RequestContext]) -> None:
    _current.reset(token)
