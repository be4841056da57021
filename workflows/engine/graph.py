"""The workflow graph DSL: nodes and edges as JSON, validated by pydantic.

The format is documented in docs/workflow-dsl.md. ``format_version`` lets a later format be
told apart from this one; an unknown version is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION: Literal[1] = 1
NODE_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
INPUT_HANDLE = "in"
DEFAULT_OUTPUT_HANDLE = "out"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Position(_Strict):
    x: float = 0.0
    y: float = 0.0


ERROR_HANDLE = "error"


class NodePolicy(_Strict):
    """How the engine treats one node: time limit, retries, and what a failure does."""

    timeout_s: float = Field(default=60.0, gt=0, le=3600, title="Timeout (seconds)")
    retries: int = Field(default=0, ge=0, le=10, title="Retries after a failure")
    retry_backoff_s: float = Field(
        default=1.0, ge=0, le=300, title="First retry delay (seconds), doubled each time"
    )
    on_error: Literal["fail", "continue", "error_branch"] = Field(
        default="fail",
        title="On failure",
        description="fail the run; continue with the default output; or follow the 'error' branch",
    )
    default_output: dict[str, Any] = Field(
        default_factory=dict, title="Outputs used when continuing after a failure"
    )


class NodeSpec(_Strict):
    id: str = Field(pattern=NODE_ID_PATTERN, description="Stable id, used in templates")
    type: str = Field(min_length=1, max_length=64)
    type_version: int = Field(default=1, ge=1)
    name: str = Field(default="", max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)
    position: Position = Field(default_factory=Position)
    policy: NodePolicy = Field(default_factory=NodePolicy)


class EdgeSpec(_Strict):
    id: str = Field(min_length=1, max_length=100)
    source: str
    source_handle: str = DEFAULT_OUTPUT_HANDLE
    target: str
    target_handle: str = INPUT_HANDLE


class RateLimit(_Strict):
    """A token bucket per end user: ``burst`` messages at once, then ``per_minute``."""

    enabled: bool = Field(default=False, title="Limit how often one person may write")
    burst: int = Field(default=5, ge=1, le=1000, title="Messages allowed at once")
    per_minute: float = Field(
        default=10.0, gt=0, le=6000, title="Messages per minute after that, on average"
    )
    message: str = Field(
        default="You are sending messages faster than I can answer. "
        "Please wait a moment and try again. / 您发送消息太快了，请稍等片刻再试。",
        min_length=1,
        max_length=2000,
        title="Reply when over the limit",
        description="Sent instead of running the workflow; no run is created.",
    )


class WorkflowSettings(_Strict):
    memory_turns: int = Field(
        default=20,
        ge=0,
        le=200,
        title="Conversation memory (turns)",
        description="How many earlier exchanges (a message and its reply) runs can read as "
        "conversation.history.",
    )
    rate_limit: RateLimit = Field(default_factory=RateLimit, title="Rate limit per end user")
    run_timeout_s: float = Field(
        default=600.0,
        ge=1,
        le=86_400,
        title="Run time limit (seconds)",
        description="A run still going after this long is stopped and marked timed out.",
    )


class WorkflowGraph(_Strict):
    format_version: Literal[1] = FORMAT_VERSION
    settings: WorkflowSettings = Field(default_factory=WorkflowSettings)
    nodes: list[NodeSpec] = Field(default_factory=list)
    edges: list[EdgeSpec] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)

    def node(self, node_id: str) -> NodeSpec | None:
        return next((node for node in self.nodes if node.id == node_id), None)

    def outgoing(self, node_id: str) -> list[EdgeSpec]:
        return [edge for edge in self.edges if edge.source == node_id]

    def incoming(self, node_id: str) -> list[EdgeSpec]:
        return [edge for edge in self.edges if edge.target == node_id]
