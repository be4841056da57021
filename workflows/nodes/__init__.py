"""Node types. Importing this package registers every built-in type."""

from __future__ import annotations

from workflows.nodes import condition, end, manual_trigger, template

__all__ = ["condition", "end", "manual_trigger", "template"]
