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
