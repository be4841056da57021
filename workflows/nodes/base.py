"""The node contract. Every node type subclasses :class:`Node` (see nodes/README.md).

A node type declares a pydantic ``Config`` (extra fields forbidden; its JSON Schema feeds the
editor), its category, its outputs and its output branches, and implements ``run``. Nodes
never persist anything: the engine records inputs, outputs and timings in the trace.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from workflows.engine import templates
from workflows.engine.graph import DEFAULT_OUTPUT_HANDLE


class NodeCategory(enum.StrEnum):
    TRIGGER = "trigger"
    PROCESSING = "processing"
    OUTPUT = "output"


# Something a node needs from outside the engine, by (kind, name), e.g. ("sensitive_word_list",
# "politics"): the runner loads it before the run (see Node.required_resources).
ResourceKey = tuple[str, str]

# The kind of a credential resource (workflows.models.Credential, by name): its value is the
# decrypted secret as a str. The runner masks these values in traces.
CREDENTIAL_RESOURCE = "credential"
# A credential's plaintext, by the credential's name (an API token, a webhook signing key).
CREDENTIAL_RESOURCE = "credential"


class NodeConfig(BaseModel):
    """Base of every node type's Config: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class NodeContext:
    """What a running node may read: the template variables of its run, and the resources
    the runner loaded for it (a key is absent when its resource is missing or disabled)."""

    variables: dict[str, Any]
    resources: Mapping[ResourceKey, Any] = field(default_factory=dict)
    # Streams a piece of the output as it is produced (an LLM's tokens) to the live trace.
    emit_delta: Callable[[str], None] | None = None

    def render(self, source: str) -> str:
        return templates.render(source, self.variables)


@dataclass
class NodeResult:
    """A node's outcome. ``branch`` names the output handle the run follows next."""

    outputs: dict[str, Any] = field(default_factory=dict)
    branch: str = DEFAULT_OUTPUT_HANDLE
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0

    @property
    def failed(self) -> bool:
        return self.error is not None

    @classmethod
    def failure(cls, message: str) -> NodeResult:
        return cls(error=message)


ConfigT = TypeVar("ConfigT", bound=NodeConfig)


class Node(ABC, Generic[ConfigT]):
    type_id: ClassVar[str]
    version: ClassVar[int] = 1
    category: ClassVar[NodeCategory]
    title: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[NodeConfig]]
    # Output name -> JSON type ("string", "object", "array", "boolean", "number").
    outputs: ClassVar[dict[str, str]] = {}
    # Config fields whose values are templates (checked at validation, rendered at run; the
    # editor offers variables in them). A path with `*` names a field of every list item
    # (`cases.*.left`); a type with such paths overrides template_sources.
    template_fields: ClassVar[tuple[str, ...]] = ()
    # A terminal node ends its path: it has no output handle.
    terminal: ClassVar[bool] = False

    def __init__(self, node_id: str, config: ConfigT) -> None:
        self.node_id = node_id
        self.config = config

    @classmethod
    def branches(cls, config: NodeConfig) -> list[str]:
        """Output handles; a node that decides between paths names one per path."""
        return [] if cls.terminal else [DEFAULT_OUTPUT_HANDLE]

    @classmethod
    def required_branches(cls, config: NodeConfig) -> list[str]:
        """Handles that must be connected for the graph to be valid."""
        return []

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        """What the runner must load and pass in ``NodeContext.resources``: nodes never query
        the database themselves."""
        return []

    @classmethod
    def template_sources(cls, config: NodeConfig) -> dict[str, str]:
        """Field path -> template source, for validation."""
        return {name: getattr(config, name) for name in cls.template_fields}

    @classmethod
    def declared_variables(cls, config: NodeConfig) -> list[str]:
        """Workflow variables this node writes, readable downstream as ``vars.<name>``.

        The validator counts them as defined for the nodes after this one; a node that
        declares a name must write it into ``context.variables["vars"]`` when it succeeds.
        """
        return []

    @abstractmethod
    async def run(self, context: NodeContext) -> NodeResult:
        """Do the node's work. Expected failures return ``NodeResult.failure(...)``."""
