"""The one place node types are registered, by (type_id, version)."""

from __future__ import annotations

from typing import Any, TypeVar

from workflows.nodes.base import Node

NodeT = TypeVar("NodeT", bound=type[Node[Any]])

_types: dict[tuple[str, int], type[Node[Any]]] = {}


def register(node_type: NodeT) -> NodeT:
    key = (node_type.type_id, node_type.version)
    if key in _types and _types[key] is not node_type:
        raise ValueError(f"node type {key} is registered twice")
    _types[key] = node_type
    return node_type


def get(type_id: str, version: int) -> type[Node[Any]] | None:
    return _types.get((type_id, version))


def versions(type_id: str) -> list[int]:
    return sorted(version for (tid, version) in _types if tid == type_id)


def all_types() -> list[type[Node[Any]]]:
    return [_types[key] for key in sorted(_types)]


def describe(node_type: type[Node[Any]]) -> dict[str, Any]:
    """What the editor needs to draw and configure a node type."""
    return {
        "type": node_type.type_id,
        "version": node_type.version,
        "category": node_type.category.value,
        "title": node_type.title,
        "description": node_type.description,
        "config_schema": node_type.Config.model_json_schema(),
        "outputs": node_type.outputs,
        "template_fields": list(node_type.template_fields),
    }
