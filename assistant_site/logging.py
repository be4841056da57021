"""Log formatting: JSON lines with the request id, redacted before they are written."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

from assistant_site import request_context
from assistant_site.redaction import redact


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_context.current().request_id or "-"
        return True


class RedactingJsonFormatter(JsonFormatter):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def format(self, record: logging.LogRecord) -> str:
        # Redact the finished line so that messages, arguments, extras and tracebacks
        # are all covered.
        return redact(super().format(record))


class RedactingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
