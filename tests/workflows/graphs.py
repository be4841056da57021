"""Small graph builders for engine and node tests."""

from __future__ import annotations

from typing import Any


def node(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "type_version": 1, "config": config}


def edge(
    source: str, target: str, handle: str = "out", edge_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": edge_id or f"{source}-{handle}-{target}",
        "source": source,
        "source_handle": handle,
        "target": target,
        "target_handle": "in",
    }


def echo_graph() -> dict[str, Any]:
    """manual trigger -> template -> end: the smallest useful workflow."""
    return {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node("greet", "template", template="你好，{{ trigger.text }}"),
            node("done", "end", output="{{ nodes.greet.text }}"),
        ],
        "edges": [edge("start", "greet"), edge("greet", "done")],
        "variables": {},
    }
