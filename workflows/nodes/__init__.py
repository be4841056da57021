"""Node types. Importing this package registers every built-in type."""

from __future__ import annotations

from workflows.nodes import (
    condition,
    end,
    http_request,
    intent,
    knowledge_retrieval,
    llm,
    manual_trigger,
    message_trigger,
    parameter_extractor,
    reply,
    schedule_trigger,
    sensitive_word_filter,
    set_variable,
    template,
    webhook_trigger,
)

__all__ = [
    "condition",
    "end",
    "http_request",
    "intent",
    "knowledge_retrieval",
    "llm",
    "manual_trigger",
    "message_trigger",
    "parameter_extractor",
    "reply",
    "schedule_trigger",
    "sensitive_word_filter",
    "set_variable",
    "template",
    "webhook_trigger",
]
