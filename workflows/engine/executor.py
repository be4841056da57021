"""Running a validated graph: plain Python and asyncio, no database.

A compiled workflow instantiates its nodes once; each ``execute`` call is one run. Nodes run
as soon as every edge into them is resolved: an edge is *taken* when its source finished and
chose that branch, *dead* when its source was skipped or chose another branch. A node with at
least one taken edge runs; one whose edges are all dead is skipped. Independent nodes run
concurrently. Every step is reported to ``sink`` as a :class:`TraceEvent`; the runner persists
and streams them.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows.engine.graph import DEFAULT_OUTPUT_HANDLE, ERROR_HANDLE, NodeSpec, WorkflowGraph
from workflows.engine.validation import branch_handles, validate_graph
from workflows.nodes import registry
from workflows.nodes.base import Node, NodeCategory, NodeContext, NodeResult, ResourceKey


class RunStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class NodeStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the run stopped here, or an error branch / default output was used
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class TraceEvent:
    # run_started, node_started, node_delta (a piece of streamed output, e.g. LLM tokens),
    # node_retry, node_finished, node_skipped, run_finished
    kind: str
    node_id: str | None = None
    node_type: str | None = None
    status: str | None = None
    attempt: int = 0
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    branch: str | None = None
    error: str | None = None
    started_at: float = 0.0  # seconds since the epoch
    duration_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass
class NodeOutcome:
    status: NodeStatus
    outputs: dict[str, Any] = field(default_factory=dict)
    branch: str | None = None
    error: str | None = None
    attempts: int = 0
    duration_ms: float = 0.0


@dataclass
class RunResult:
    status: RunStatus
    output: str | None
    error: str | None
    nodes: dict[str, NodeOutcome]
    duration_ms: float


class GraphInvalidError(Exception):
    def __init__(self, problems: list[Any]) -> None:
        super().__init__(
            "; ".join(f"{p.node_id or p.edge_id or '-'}: {p.message}" for p in problems)
        )
        self.problems = problems


Sink = Callable[[TraceEvent], None]


def _discard(event: TraceEvent) -> None:
    return None


class CompiledWorkflow:
    """A graph checked once and ready to run any number of times."""

    def __init__(self, graph: WorkflowGraph | dict[str, Any]) -> None:
        report = validate_graph(graph)
        if report.problems or report.graph is None:
            raise GraphInvalidError(report.problems)
        self._build(report.graph)

    @classmethod
    def _of_checked(cls, graph: WorkflowGraph) -> CompiledWorkflow:
        compiled = cls.__new__(cls)
        compiled._build(graph)
        return compiled

    def _build(self, graph: WorkflowGraph) -> None:
        self.graph = graph
        self.specs: dict[str, NodeSpec] = {spec.id: spec for spec in self.graph.nodes}
        self.nodes: dict[str, Node[Any]] = {}
        self.handles: dict[str, list[str]] = {}
        # What the runner must load and pass to execute(resources=...) for these nodes.
        self.required_resources: set[ResourceKey] = set()
        for spec in self.graph.nodes:
            node_type = registry.get(spec.type, spec.type_version)
            assert node_type is not None  # noqa: S101  (validation guarantees it)
            config = node_type.Config.model_validate(spec.config)
            self.nodes[spec.id] = node_type(spec.id, config)
            self.handles[spec.id] = branch_handles(node_type, config, spec)
            self.required_resources.update(node_type.required_resources(config))
        self.incoming: dict[str, list[tuple[str, str]]] = {spec.id: [] for spec in self.graph.nodes}
        self.outgoing: dict[str, list[tuple[str, str]]] = {spec.id: [] for spec in self.graph.nodes}
        for edge in self.graph.edges:
            self.incoming[edge.target].append((edge.source, edge.source_handle))
            self.outgoing[edge.source].append((edge.source_handle, edge.target))
        self.triggers = [
            node_id for node_id, node in self.nodes.items() if node.category is NodeCategory.TRIGGER
        ]

    async def execute(
        self,
        *,
        trigger: dict[str, Any],
        trigger_node: str | None = None,
        conversation: dict[str, Any] | None = None,
        sink: Sink = _discard,
        run_timeout_s: float | None = None,
        cancel: asyncio.Event | None = None,
        resources: Mapping[ResourceKey, Any] | None = None,
    ) -> RunResult:
        run = _Run(self, trigger, conversation or {}, sink, cancel, resources=resources or {})
        limit = run_timeout_s if run_timeout_s is not None else self.graph.settings.run_timeout_s
        return await run.go(trigger_node or self.triggers[0], limit)


# What stops one node from running on its own; the rest (variables not upstream, missing
# edges) concerns the graph around it, which a single-node test replaces with given inputs.
_NODE_OWN_PROBLEMS = {"unknown_node_type", "invalid_config", "template_syntax", "unknown_resource"}


async def execute_node(
    graph: WorkflowGraph | dict[str, Any],
    node_id: str,
    *,
    variables: Mapping[str, Any],
    resources: Mapping[ResourceKey, Any] | None = None,
    known_resources: Mapping[str, Any] | None = None,
    sink: Sink = _discard,
) -> NodeOutcome:
    """Run one node of a possibly unfinished graph with inputs given by hand, as the editor's
    "test this node" does: ``variables`` stands in for ``trigger``, ``conversation``,
    ``nodes.<id>`` and ``vars``. The node's policy (timeout, retries, on error) applies."""
    report = validate_graph(graph, resources=known_resources)
    if report.graph is None:
        raise GraphInvalidError(report.problems)
    spec = report.graph.node(node_id)
    if spec is None:
        raise KeyError(node_id)
    own = [p for p in report.problems if p.node_id == node_id and p.code in _NODE_OWN_PROBLEMS]
    if own:
        raise GraphInvalidError(own)
    alone = report.graph.model_copy(update={"nodes": [spec], "edges": []})
    compiled = CompiledWorkflow._of_checked(alone)
    run = _Run(
        compiled,
        dict(variables.get("trigger") or {}),
        dict(variables.get("conversation") or {}),
        sink,
        None,
        resources=resources or {},
    )
    run.variables["nodes"].update(variables.get("nodes") or {})
    run.variables["vars"].update(variables.get("vars") or {})
    return await run.run_node(node_id)


class _Run:
    def __init__(
        self,
        workflow: CompiledWorkflow,
        trigger: dict[str, Any],
        conversation: dict[str, Any],
        sink: Sink,
        cancel: asyncio.Event | None,
        *,
        resources: Mapping[ResourceKey, Any],
    ) -> None:
        self.wf = workflow
        self.resources = resources
        self.sink = sink
        self.cancel = cancel
        self.variables: dict[str, Any] = {
            "trigger": trigger,
            "conversation": conversation,
            "nodes": {},
            "vars": dict(workflow.graph.variables),
        }
        self.outcomes: dict[str, NodeOutcome] = {}
        self.unresolved = {node_id: len(edges) for node_id, edges in workflow.incoming.items()}
        self.taken = dict.fromkeys(workflow.incoming, 0)
        self.tasks: dict[asyncio.Task[NodeOutcome], str] = {}
        self.failure: str | None = None
        self.last_output: str | None = None

    async def go(self, entry: str, run_timeout_s: float) -> RunResult:
        if entry not in self.wf.triggers:
            raise ValueError(f"{entry!r} is not a trigger of this workflow")
        started = time.monotonic()
        self.sink(TraceEvent("run_started", started_at=time.time()))
        status = RunStatus.SUCCEEDED
        for other in self.wf.triggers:
            if other != entry:
                self.skip(other)
        self.start(entry)
        try:
            async with asyncio.timeout(run_timeout_s):
                status = await self.loop()
        except TimeoutError:
            status, self.failure = (
                RunStatus.TIMED_OUT,
                f"the run took longer than {run_timeout_s} s",
            )
            await self.stop_all()
        duration = (time.monotonic() - started) * 1000
        self.sink(
            TraceEvent(
                "run_finished",
                status=status.value,
                error=self.failure,
                outputs={"output": self.last_output},
                duration_ms=duration,
            )
        )
        return RunResult(status, self.last_output, self.failure, self.outcomes, duration)

    async def loop(self) -> RunStatus:
        cancel_wait = asyncio.ensure_future(self.cancel.wait()) if self.cancel else None
        try:
            while self.tasks:
                waiting: set[asyncio.Future[Any]] = set(self.tasks)
                if cancel_wait is not None:
                    waiting.add(cancel_wait)
                done, _pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if cancel_wait is not None and cancel_wait in done:
                    self.failure = "the run was cancelled"
                    await self.stop_all()
                    return RunStatus.CANCELLED
                for finished in done:
                    if finished is cancel_wait:
                        continue
                    task: asyncio.Task[NodeOutcome] = finished  # type: ignore[assignment]
                    node_id = self.tasks.pop(task)
                    self.finish(node_id, task.result())
                if self.failure is not None:
                    await self.stop_all()
                    return RunStatus.FAILED
            return RunStatus.SUCCEEDED
        finally:
            if cancel_wait is not None:
                cancel_wait.cancel()

    async def stop_all(self) -> None:
        for task, node_id in list(self.tasks.items()):
            task.cancel()
            self.outcomes[node_id] = NodeOutcome(NodeStatus.CANCELLED)
            self.sink(TraceEvent("node_finished", node_id=node_id, status="cancelled"))
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    def start(self, node_id: str) -> None:
        task = asyncio.ensure_future(self.run_node(node_id))
        self.tasks[task] = node_id

    def skip(self, node_id: str) -> None:
        self.outcomes[node_id] = NodeOutcome(NodeStatus.SKIPPED)
        self.sink(
            TraceEvent(
                "node_skipped",
                node_id=node_id,
                node_type=self.wf.specs[node_id].type,
                status="skipped",
            )
        )
        for _handle, target in self.wf.outgoing[node_id]:
            self.resolve(target, taken=False)

    def resolve(self, target: str, *, taken: bool) -> None:
        self.unresolved[target] -= 1
        if taken:
            self.taken[target] += 1
        if self.unresolved[target] == 0:
            if self.taken[target]:
                self.start(target)
            else:
                self.skip(target)

    def finish(self, node_id: str, outcome: NodeOutcome) -> None:
        self.outcomes[node_id] = outcome
        spec = self.wf.specs[node_id]
        if outcome.status is NodeStatus.FAILED and outcome.branch is None:
            self.failure = f"node {node_id!r} failed: {outcome.error}"
            return
        self.variables["nodes"][node_id] = outcome.outputs
        if spec.type == "end":
            self.last_output = str(outcome.outputs.get("output", ""))
        for handle, target in self.wf.outgoing[node_id]:
            self.resolve(target, taken=handle == outcome.branch)

    async def run_node(self, node_id: str) -> NodeOutcome:
        node, spec = self.wf.nodes[node_id], self.wf.specs[node_id]
        policy = spec.policy
        started_wall, started = time.time(), time.monotonic()
        error = "not run"
        attempt = 0
        for attempt in range(1, policy.retries + 2):
            self.sink(
                TraceEvent(
                    "node_started",
                    node_id=node_id,
                    node_type=spec.type,
                    attempt=attempt,
                    inputs=spec.config,
                    started_at=time.time(),
                )
            )
            result = await self.attempt(node, policy.timeout_s)
            if not result.failed:
                duration = (time.monotonic() - started) * 1000
                chosen = result.branch if result.branch in self.wf.handles[node_id] else None
                if chosen is None and self.wf.handles[node_id]:
                    result = NodeResult.failure(f"node chose unknown branch {result.branch!r}")
                else:
                    self.sink(
                        TraceEvent(
                            "node_finished",
                            node_id=node_id,
                            node_type=spec.type,
                            status="succeeded",
                            attempt=attempt,
                            outputs=result.outputs,
                            branch=chosen,
                            started_at=started_wall,
                            duration_ms=duration,
                            tokens_in=result.tokens_in,
                            tokens_out=result.tokens_out,
                        )
                    )
                    return NodeOutcome(
                        NodeStatus.SUCCEEDED, result.outputs, chosen, None, attempt, duration
                    )
            error = result.error or "failed"
            if attempt <= policy.retries:
                delay = policy.retry_backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)  # noqa: S311
                self.sink(
                    TraceEvent(
                        "node_retry",
                        node_id=node_id,
                        node_type=spec.type,
                        attempt=attempt,
                        error=error,
                        duration_ms=delay * 1000,
                    )
                )
                await asyncio.sleep(delay)
        duration = (time.monotonic() - started) * 1000
        outputs: dict[str, Any] = {}
        branch: str | None = None
        if policy.on_error == "continue":
            outputs = dict(policy.default_output)
            branch = (
                DEFAULT_OUTPUT_HANDLE
                if DEFAULT_OUTPUT_HANDLE in self.wf.handles[node_id]
                else (self.wf.handles[node_id][0] if self.wf.handles[node_id] else "")
            )
        elif policy.on_error == "error_branch":
            outputs, branch = {"error": error}, ERROR_HANDLE
        self.sink(
            TraceEvent(
                "node_finished",
                node_id=node_id,
                node_type=spec.type,
                status="failed",
                attempt=attempt,
                outputs=outputs,
                branch=branch,
                error=error,
                started_at=started_wall,
                duration_ms=duration,
            )
        )
        return NodeOutcome(NodeStatus.FAILED, outputs, branch, error, attempt, duration)

    async def attempt(self, node: Node[Any], timeout_s: float) -> NodeResult:
        spec = self.wf.specs[node.node_id]

        def emit_delta(delta: str) -> None:
            self.sink(
                TraceEvent(
                    "node_delta",
                    node_id=node.node_id,
                    node_type=spec.type,
                    outputs={"delta": delta},
                )
            )

        context = NodeContext(
            variables=self.variables, resources=self.resources, emit_delta=emit_delta
        )
        try:
            async with asyncio.timeout(timeout_s):
                return await node.run(context)
        except TimeoutError:
            return NodeResult.failure(f"timed out after {timeout_s:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return NodeResult.failure(f"{type(exc).__name__}: {exc}")
