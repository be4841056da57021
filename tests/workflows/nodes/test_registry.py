from __future__ import annotations

from pathlib import Path

from workflows.nodes import registry

HERE = Path(__file__).parent


def test_every_node_type_has_its_own_test_module() -> None:
    shipped = [t for t in registry.all_types() if not t.__module__.startswith("tests.")]
    missing = [t.type_id for t in shipped if not (HERE / f"test_{t.type_id}.py").exists()]
    assert missing == []


def test_every_node_type_describes_itself_for_the_editor() -> None:
    for node_type in registry.all_types():
        described = registry.describe(node_type)
        schema = described["config_schema"]
        assert schema["type"] == "object", node_type.type_id
        assert schema.get("additionalProperties") is False, node_type.type_id
        assert described["category"] in {"trigger", "processing", "output"}
        assert described["title"]
        assert described["description"]


def test_types_are_registered_by_id_and_version() -> None:
    assert {t.type_id for t in registry.all_types()} >= {
        "manual_trigger",
        "template",
        "condition",
        "end",
    }
    assert registry.get("template", 1) is not None
    assert registry.get("template", 2) is None
    assert registry.versions("template") == [1]


FRONTEND_NODES = HERE.parents[2] / "frontend" / "src" / "nodes"


def test_every_node_type_has_its_editor_module_and_it_mirrors_the_handles() -> None:
    """frontend/src/nodes/<type_id>/index.ts draws the type; it must know the handles the
    Python type gives (its own branches, or none for a terminal node)."""
    from workflows.nodes.base import Node

    index = (FRONTEND_NODES / "index.ts").read_text(encoding="utf-8")
    for node_type in registry.all_types():
        if node_type.__module__.startswith("tests."):
            continue
        module = FRONTEND_NODES / node_type.type_id / "index.ts"
        assert module.exists(), f"{module} is missing"
        assert f'from "./{node_type.type_id}"' in index, f"{node_type.type_id} not in index.ts"
        source = module.read_text(encoding="utf-8")
        has_own_branches = node_type.branches.__func__ is not Node.branches.__func__  # type: ignore[attr-defined]
        assert ("branches:" in source) == has_own_branches, node_type.type_id
        assert ("terminal: true" in source) == node_type.terminal, node_type.type_id
