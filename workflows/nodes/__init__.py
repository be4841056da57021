"""Node types. Importing this package registers every built-in type."""

from __future__ import annotations

from workflows.nodes import (
    condition,
    end,
    http_request,
    intent,
    manual_trigger,
    reply,
    sensitive_word_filter,
    set_variable,
    template,
)

__all__ = [
    "condition",
    "end",
    "http_request",
    "intent",
    "manual_trigger",
    "reply",
    "sensitive_word_filter",
    "set_variable",
    "template",
]
