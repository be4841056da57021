"""Domain errors of the workflows app; the API turns each into a clear 4xx answer."""

from __future__ import annotations

from typing import Any


class WorkflowInvalidError(Exception):
    """The graph has validation problems (each a dict with code, message, node_id, field)."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the workflow graph")
        self.problems = problems


class DraftConflictError(Exception):
    """Someone saved the draft after the revision this save was based on."""

    def __init__(self, current_revision: int) -> None:
        super().__init__(
            f"the draft was saved by someone else since you loaded it (now revision "
            f"{current_revision}); reload it and apply your change again"
        )
        self.current_revision = current_revision


class NoPublishedVersionError(Exception):
    pass


class WebhookRefusedError(Exception):
    """A webhook request the workflow does not take; ``status`` is the HTTP answer and
    ``field`` names what is wrong (a header, the body, the URL)."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
