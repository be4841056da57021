from __future__ import annotations

import asyncio
from typing import Any

from workflows.nodes import registry
from workflows.nodes.base import NodeContext, NodeResult


def run_node(type_id: str, config: dict[str, Any], **variables: Any) -> NodeResult:
    """Validate a literal config and run the node against a fake context."""
    node_type = registry.get(type_id, 1)
    assert node_type is not None
    node = node_type("n1", node_type.Config.model_validate(config))
    context = {"trigger": {}, "conversation": {}, "nodes": {}, "vars": {}, **variables}
    return asyncio.run(node.run(NodeContext(variables=context)))
