"""What changed between two graphs, node by node and edge by edge."""

from __future__ import annotations

from typing import Any


def _by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(item.get("id")): item for item in items}


def graph_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Nodes and edges added, removed or changed (with the changed fields, old and new)."""
    result: dict[str, Any] = {}
    for kind in ("nodes", "edges"):
        before, after = _by_id(old.get(kind, [])), _by_id(new.get(kind, []))
        changed = []
        for item_id in sorted(before.keys() & after.keys()):
            fields = {
                key: [before[item_id].get(key), after[item_id].get(key)]
                for key in sorted(before[item_id].keys() | after[item_id].keys())
                if before[item_id].get(key) != after[item_id].get(key) and key != "position"
            }
            if fields:
                changed.append({"id": item_id, "fields": fields})
        result[kind] = {
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
            "changed": changed,
        }
    old_vars, new_vars = old.get("variables", {}), new.get("variables", {})
    result["variables"] = {
        name: [old_vars.get(name), new_vars.get(name)]
        for name in sorted(old_vars.keys() | new_vars.keys())
        if old_vars.get(name) != new_vars.get(name)
    }
    return result
