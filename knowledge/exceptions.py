"""Domain errors of the knowledge app; the API turns each into a clear 4xx answer."""

from __future__ import annotations


class KnowledgeError(Exception):
    """Something a curator can act on: the message says what and why."""
