"""Graph validation that reports every problem at once, each with where it is.

A problem names the node and/or edge it concerns, the field path inside it (``config.template``,
``branches.yes``) and a readable message, so the editor can put each one on its node.
"""

from __future__ import annotations

import graphlib
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from workflows.engine import templates
from workflows.engine.graph import ERROR_HANDLE, INPUT_HANDLE, EdgeSpec, NodeSpec, WorkflowGraph
from workflows.nodes import registry
from workflows.nodes.base import NodeCategory, NodeConfig


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    node_id: str | None = None
    edge_id: str | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationReport:
    graph: WorkflowGraph | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _shape_problems(data: Any, error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = item["loc"]
        node_id = edge_id = None
        if len(loc) >= 2 and loc[0] in {"nodes", "edges"} and isinstance(loc[1], int):
            try:
                raw_id = data[loc[0]][loc[1]].get("id")
            except (KeyError, IndexError, TypeError, AttributeError):
                raw_id = None
            if isinstance(raw_id, str):
                node_id, edge_id = (raw_id, None) if loc[0] == "nodes" else (None, raw_id)
        problems.append(
            Problem("invalid_graph", item["msg"], node_id, edge_id, _location(loc) or None)
        )
    return problems


def branch_handles(node_type: Any, config: NodeConfig, spec: NodeSpec) -> list[str]:
    """The node's output handles, plus 'error' when its policy routes failures there."""
    handles: list[str] = list(node_type.branches(config))
    if spec.policy.on_error == "error_branch":
        handles.append(ERROR_HANDLE)
    return handles


class _Checker:
    def __init__(
        self, graph: WorkflowGraph, resources: Mapping[str, Collection[str]] | None = None
    ) -> None:
        self.graph = graph
        self.resources = resources or {}
        self.problems: list[Problem] = []
        self.types: dict[str, Any] = {}
        self.configs: dict[str, NodeConfig] = {}
        self.edges: list[EdgeSpec] = []

    def add(self, code: str, message: str, **where: str | None) -> None:
        self.problems.append(Problem(code, message, **where))

    def run(self) -> list[Problem]:
        self.check_ids()
        self.check_node_types()
        triggers = self.check_triggers()
        self.check_edges()
        self.check_cycles()
        self.check_reachability(triggers)
        self.check_branches()
        self.check_resources()
        self.check_templates(triggers)
        return self.problems

    def check_ids(self) -> None:
        for kind, items in (("node", self.graph.nodes), ("edge", self.graph.edges)):
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    where = {"node_id": item.id} if kind == "node" else {"edge_id": item.id}
                    self.add(
                        "duplicate_id", f"{kind} id {item.id!r} is used twice", field="id", **where
                    )
                seen.add(item.id)

    def check_node_types(self) -> None:
        for node in self.graph.nodes:
            node_type = registry.get(node.type, node.type_version)
            if node_type is None:
                known = registry.versions(node.type)
                message = (
                    f"{node.type!r} has no version {node.type_version}; known: "
                    f"{', '.join(map(str, known))}"
                    if known
                    else f"unknown node type {node.type!r}"
                )
                field = "type_version" if known else "type"
                self.add("unknown_node_type", message, node_id=node.id, field=field)
                continue
            self.types[node.id] = node_type
            try:
                self.configs[node.id] = node_type.Config.model_validate(node.config)
            except ValidationError as exc:
                for item in exc.errors():
                    self.add(
                        "invalid_config",
                        item["msg"],
                        node_id=node.id,
                        field=_location(("config", *item["loc"])),
                    )

    def is_trigger(self, node_id: str) -> bool:
        node_type = self.types.get(node_id)
        return node_type is not None and node_type.category is NodeCategory.TRIGGER

    def check_triggers(self) -> list[str]:
        triggers = [node.id for node in self.graph.nodes if self.is_trigger(node.id)]
        if not triggers:
            self.add("no_trigger", "the workflow has no trigger: add one (e.g. a manual run)")
        return triggers

    def check_edges(self) -> None:
        ids = {node.id for node in self.graph.nodes}
        for edge in self.graph.edges:
            bad = False
            for end, node_id in (("source", edge.source), ("target", edge.target)):
                if node_id not in ids:
                    self.add(
                        "dangling_edge",
                        f"edge {end} {node_id!r} is not a node",
                        edge_id=edge.id,
                        field=end,
                    )
                    bad = True
            if bad:
                continue
            if edge.target_handle != INPUT_HANDLE:
                self.add(
                    "dangling_edge",
                    f"target handle must be {INPUT_HANDLE!r}",
                    edge_id=edge.id,
                    node_id=edge.target,
                    field="target_handle",
                )
                continue
            if self.is_trigger(edge.target):
                self.add(
                    "dangling_edge",
                    "a trigger starts the workflow: nothing may lead into it",
                    edge_id=edge.id,
                    node_id=edge.target,
                    field="target",
                )
                continue
            handles = self.handles(edge.source)
            if handles is not None and edge.source_handle not in handles:
                self.add(
                    "dangling_edge",
                    f"node {edge.source!r} has no output {edge.source_handle!r}"
                    f" (it has: {', '.join(handles) or 'none'})",
                    edge_id=edge.id,
                    node_id=edge.source,
                    field="source_handle",
                )
                continue
            self.edges.append(edge)

    def handles(self, node_id: str) -> list[str] | None:
        node_type, config = self.types.get(node_id), self.configs.get(node_id)
        spec = self.graph.node(node_id)
        if node_type is None or config is None or spec is None:
            return None
        return branch_handles(node_type, config, spec)

    def check_cycles(self) -> None:
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for node in self.graph.nodes:
            sorter.add(node.id)
        for edge in self.edges:
            sorter.add(edge.target, edge.source)
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle: list[str] = exc.args[1]
            self.add("cycle", f"the graph loops: {' -> '.join(cycle)}", node_id=cycle[0])

    def check_reachability(self, triggers: list[str]) -> None:
        reached = set(triggers)
        queue = deque(triggers)
        while queue:
            current = queue.popleft()
            for edge in self.edges:
                if edge.source == current and edge.target not in reached:
                    reached.add(edge.target)
                    queue.append(edge.target)
        if not triggers:
            return
        for node in self.graph.nodes:
            if node.id not in reached:
                self.add(
                    "unreachable_node", "no path from a trigger leads to this node", node_id=node.id
                )

    def check_branches(self) -> None:
        for node in self.graph.nodes:
            node_type, config = self.types.get(node.id), self.configs.get(node.id)
            if node_type is None or config is None:
                continue
            connected = {edge.source_handle for edge in self.edges if edge.source == node.id}
            required = list(node_type.required_branches(config))
            if node.policy.on_error == "error_branch":
                required.append(ERROR_HANDLE)
            for handle in required:
                if handle not in connected:
                    self.add(
                        "unconnected_branch",
                        f"branch {handle!r} leads nowhere",
                        node_id=node.id,
                        field=f"branches.{handle}",
                    )

    def check_resources(self) -> None:
        # Only kinds the caller listed are checked: the engine itself cannot know what exists.
        for node in self.graph.nodes:
            node_type, config = self.types.get(node.id), self.configs.get(node.id)
            if node_type is None or config is None:
                continue
            for kind, name in node_type.required_resources(config):
                if kind in self.resources and name not in self.resources[kind]:
                    self.add(
                        "unknown_resource",
                        f"{kind.replace('_', ' ')} {name!r} does not exist or is not "
                        "available to you (disabled, or not shared with you for use)",
                        node_id=node.id,
                        field="config",
                    )

    def outputs_of(self, node_id: str) -> list[str]:
        node_type, spec = self.types.get(node_id), self.graph.node(node_id)
        names = list(node_type.outputs) if node_type is not None else []
        if spec is not None and spec.policy.on_error == "error_branch":
            names.append("error")  # what the error branch carries
        return names

    def ancestors(self, node_id: str) -> set[str]:
        found: set[str] = set()
        queue = deque([node_id])
        while queue:
            current = queue.popleft()
            for edge in self.edges:
                if edge.target == current and edge.source not in found:
                    found.add(edge.source)
                    queue.append(edge.source)
        return found

    def variable_setters(self, name: str) -> list[str]:
        """Nodes that declare they write workflow variable ``name`` (Node.declared_variables)."""
        setters = []
        for node in self.graph.nodes:
            node_type, config = self.types.get(node.id), self.configs.get(node.id)
            if (
                node_type is not None
                and config is not None
                and name in node_type.declared_variables(config)
            ):
                setters.append(node.id)
        return setters

    def check_templates(self, triggers: list[str]) -> None:
        trigger_outputs = {name for t in triggers for name in self.types[t].outputs}
        for node in self.graph.nodes:
            node_type, config = self.types.get(node.id), self.configs.get(node.id)
            if node_type is None or config is None:
                continue
            upstream = self.ancestors(node.id)
            for field, source in node_type.template_sources(config).items():
                self.check_template(node.id, f"config.{field}", source, upstream, trigger_outputs)

    def check_template(
        self, node_id: str, field: str, source: str, upstream: set[str], trigger_outputs: set[str]
    ) -> None:
        try:
            refs = templates.references(source)
        except templates.TemplateError as exc:
            self.add("template_syntax", str(exc), node_id=node_id, field=field)
            return
        for ref in refs:
            self.check_reference(node_id, field, ref, upstream, trigger_outputs)

    def check_reference(
        self,
        node_id: str,
        field: str,
        ref: templates.VariableReference,
        upstream: set[str],
        trigger_outputs: set[str],
    ) -> None:
        path, where = ref.path, {"node_id": node_id, "field": field}
        name = ".".join(path)
        root = path[0]
        if root not in templates.ROOT_NAMES:
            self.add(
                "unknown_variable",
                f"line {ref.line}: {root!r} is not a variable; use "
                f"{', '.join(templates.ROOT_NAMES)}",
                **where,
            )
        elif root == "nodes" and len(path) >= 2:
            source_id = path[1]
            source_type = self.types.get(source_id)
            if self.graph.node(source_id) is None:
                self.add(
                    "unknown_variable",
                    f"line {ref.line}: {name} refers to node {source_id!r}, which does not exist",
                    **where,
                )
            elif source_id not in upstream:
                self.add(
                    "variable_not_upstream",
                    f"line {ref.line}: {name} reads node {source_id!r}, which does not run "
                    "before this one",
                    **where,
                )
            elif (
                source_type is not None
                and len(path) >= 3
                and (path[2] not in self.outputs_of(source_id))
            ):
                self.add(
                    "unknown_output",
                    f"line {ref.line}: node {source_id!r} has no output {path[2]!r} (it has: "
                    f"{', '.join(self.outputs_of(source_id)) or 'none'})",
                    **where,
                )
        elif root == "vars" and len(path) >= 2 and path[1] not in self.graph.variables:
            setters = self.variable_setters(path[1])
            if not setters:
                self.add(
                    "unknown_variable",
                    f"line {ref.line}: workflow variable {path[1]!r} is not defined; declare it "
                    "in the workflow's variables or set it in a node that runs before this one",
                    **where,
                )
            elif not upstream.intersection(setters):
                self.add(
                    "variable_not_upstream",
                    f"line {ref.line}: workflow variable {path[1]!r} is set by "
                    f"{', '.join(map(repr, setters))}, which does not run before this one",
                    **where,
                )
        elif (
            root == "trigger"
            and len(path) >= 2
            and trigger_outputs
            and (path[1] not in trigger_outputs)
        ):
            self.add(
                "unknown_output",
                f"line {ref.line}: the trigger has no output {path[1]!r} (it has: "
                f"{', '.join(sorted(trigger_outputs))})",
                **where,
            )


def validate_graph(
    data: Any, *, resources: Mapping[str, Collection[str]] | None = None
) -> ValidationReport:
    """Parse and check a graph given as JSON-like data; never raises on bad input.

    ``resources`` maps a resource kind to the names that exist and may be used (the caller
    reads them, e.g. the enabled sensitive word lists); nodes naming others get a problem.
    """
    if isinstance(data, BaseModel):
        data = data.model_dump()
    try:
        graph = WorkflowGraph.model_validate(data)
    except ValidationError as exc:
        return ValidationReport(graph=None, problems=_shape_problems(data, exc))
    return ValidationReport(graph=graph, problems=_Checker(graph, resources).run())
