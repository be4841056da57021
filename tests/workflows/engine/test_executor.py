from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tests.workflows.engine import fake_nodes
from tests.workflows.graphs import echo_graph, edge, node
from workflows.engine.executor import (
    CompiledWorkflow,
    GraphInvalidError,
    NodeStatus,
    RunResult,
    RunStatus,
    TraceEvent,
)


def _run(
    graph: dict[str, Any], text: str = "hi", **kwargs: Any
) -> tuple[RunResult, list[TraceEvent]]:
    events: list[TraceEvent] = []
    workflow = CompiledWorkflow(graph)
    result = asyncio.run(workflow.execute(trigger={"text": text}, sink=events.append, **kwargs))
    return result, events


def _graph(*nodes: dict[str, Any], edges: list[dict[str, Any]], output: str = "") -> dict[str, Any]:
    return {
        "format_version": 1,
        "nodes": [node("start", "manual_trigger"), *nodes, node("done", "end", output=output)],
        "edges": edges,
    }


def _key() -> str:
    return uuid.uuid4().hex


def test_a_linear_run_produces_the_output_and_a_trace_per_node() -> None:
    result, events = _run(echo_graph(), text="世界")
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "你好，世界"
    assert [(e.kind, e.node_id) for e in events] == [
        ("run_started", None),
        ("node_started", "start"),
        ("node_finished", "start"),
        ("node_started", "greet"),
        ("node_finished", "greet"),
        ("node_started", "done"),
        ("node_finished", "done"),
        ("run_finished", None),
    ]
    greet = next(e for e in events if e.kind == "node_finished" and e.node_id == "greet")
    assert greet.outputs == {"text": "你好，世界"}
    assert greet.duration_ms >= 0


def test_a_condition_runs_one_branch_and_skips_the_other() -> None:
    graph = _graph(
        node(
            "route",
            "condition",
            cases=[
                {
                    "id": "refund",
                    "left": "{{ trigger.text }}",
                    "operator": "contains",
                    "right": "退款",
                }
            ],
        ),
        node("yes", "template", template="退款流程"),
        node("no", "template", template="其他问题"),
        edges=[
            edge("start", "route"),
            edge("route", "yes", "refund"),
            edge("route", "no", "else"),
            edge("yes", "done"),
            edge("no", "done"),
        ],
        output="{{ nodes.route.matched }}",
    )
    result, events = _run(graph, text="我要退款")
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "refund"
    assert result.nodes["yes"].status is NodeStatus.SUCCEEDED
    assert result.nodes["no"].status is NodeStatus.SKIPPED
    assert ("node_skipped", "no") in [(e.kind, e.node_id) for e in events]
    other, _ = _run(graph, text="你好")
    assert (other.nodes["yes"].status, other.nodes["no"].status) == (
        NodeStatus.SKIPPED,
        NodeStatus.SUCCEEDED,
    )


def test_independent_branches_run_concurrently() -> None:
    graph = _graph(
        node("a", "test_sleep", seconds=0.4),
        node("b", "test_sleep", seconds=0.4),
        edges=[edge("start", "a"), edge("start", "b"), edge("a", "done"), edge("b", "done")],
    )
    started = time.monotonic()
    result, _ = _run(graph)
    elapsed = time.monotonic() - started
    assert result.status is RunStatus.SUCCEEDED
    a, b = result.nodes["a"], result.nodes["b"]
    assert a.outputs["started"] < b.outputs["ended"]
    assert b.outputs["started"] < a.outputs["ended"]  # the two waits overlapped
    assert elapsed < 0.75


def test_a_failing_node_is_retried_with_backoff_until_it_succeeds() -> None:
    key = _key()
    flaky = node("call", "test_flaky", key=key, fail_times=2)
    flaky["policy"] = {"retries": 2, "retry_backoff_s": 0.01}
    graph = _graph(flaky, edges=[edge("start", "call"), edge("call", "done")])
    result, events = _run(graph)
    assert result.status is RunStatus.SUCCEEDED
    assert result.nodes["call"].attempts == 3
    retries = [e for e in events if e.kind == "node_retry"]
    assert [e.error for e in retries] == ["upstream said no (1)", "upstream said no (2)"]


def test_retries_are_bounded() -> None:
    flaky = node("call", "test_flaky", key=_key(), fail_times=5)
    flaky["policy"] = {"retries": 1, "retry_backoff_s": 0}
    result, _ = _run(_graph(flaky, edges=[edge("start", "call"), edge("call", "done")]))
    assert result.status is RunStatus.FAILED
    assert result.nodes["call"].attempts == 2
    assert result.error == "node 'call' failed: upstream said no (2)"
    assert "done" not in result.nodes


def test_a_node_over_its_time_limit_fails() -> None:
    slow = node("slow", "test_sleep", seconds=5)
    slow["policy"] = {"timeout_s": 0.1}
    started = time.monotonic()
    result, _ = _run(_graph(slow, edges=[edge("start", "slow"), edge("slow", "done")]))
    assert time.monotonic() - started < 2
    assert result.status is RunStatus.FAILED
    assert result.nodes["slow"].error == "timed out after 0.1 s"


def test_an_exception_inside_a_node_fails_the_run_with_its_message() -> None:
    crash = node("crash", "test_flaky", key=_key(), fail_times=9, crash=True)
    result, _ = _run(_graph(crash, edges=[edge("start", "crash"), edge("crash", "done")]))
    assert result.status is RunStatus.FAILED
    assert result.error == "node 'crash' failed: RuntimeError: boom 1"


def test_a_failure_can_follow_the_error_branch() -> None:
    crash = node("crash", "test_flaky", key=_key(), fail_times=9, crash=True)
    crash["policy"] = {"on_error": "error_branch"}
    graph = _graph(
        crash,
        node("apology", "template", template="抱歉：{{ nodes.crash.error }}"),
        edges=[
            edge("start", "crash"),
            edge("crash", "done"),
            edge("crash", "apology", "error"),
            edge("apology", "done"),
        ],
        output="{{ nodes.apology.text }}",
    )
    result, _ = _run(graph)
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "抱歉：RuntimeError: boom 1"
    assert result.nodes["crash"].status is NodeStatus.FAILED


def test_a_failure_can_continue_with_a_default_output() -> None:
    flaky = node("call", "test_flaky", key=_key(), fail_times=9)
    flaky["policy"] = {"on_error": "continue", "default_output": {"attempt": -1}}
    graph = _graph(
        flaky,
        edges=[edge("start", "call"), edge("call", "done")],
        output="attempt={{ nodes.call.attempt }}",
    )
    result, _ = _run(graph)
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "attempt=-1"


def test_a_run_can_be_cancelled_while_a_node_waits() -> None:
    graph = _graph(
        node("slow", "test_sleep", seconds=10), edges=[edge("start", "slow"), edge("slow", "done")]
    )

    async def scenario() -> RunResult:
        cancel = asyncio.Event()
        workflow = CompiledWorkflow(graph)
        asyncio.get_running_loop().call_later(0.1, cancel.set)
        return await workflow.execute(trigger={"text": "x"}, cancel=cancel)

    started = time.monotonic()
    result = asyncio.run(scenario())
    assert time.monotonic() - started < 2
    assert result.status is RunStatus.CANCELLED
    assert result.nodes["slow"].status is NodeStatus.CANCELLED


def test_a_run_over_its_time_limit_stops() -> None:
    graph = _graph(
        node("slow", "test_sleep", seconds=10), edges=[edge("start", "slow"), edge("slow", "done")]
    )
    started = time.monotonic()
    result, events = _run(graph, run_timeout_s=0.2)
    assert time.monotonic() - started < 2
    assert result.status is RunStatus.TIMED_OUT
    assert events[-1].kind == "run_finished"
    assert events[-1].status == "timed_out"


def test_an_invalid_graph_is_refused_before_running() -> None:
    graph = echo_graph()
    graph["nodes"][1]["type"] = "teleport"
    with pytest.raises(GraphInvalidError, match="teleport"):
        CompiledWorkflow(graph)


def test_the_fake_nodes_are_registered() -> None:
    assert fake_nodes.Sleep.type_id == "test_sleep"
