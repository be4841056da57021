"""The intent, set_variable and reply node types inside whole graphs: validation and runs."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.workflows.graphs import edge, node
from workflows.engine.executor import CompiledWorkflow, NodeStatus, RunResult, RunStatus, TraceEvent
from workflows.engine.validation import Problem, validate_graph
from workflows.nodes import intent, reply, set_variable  # noqa: F401  (registers the types)

CALENDAR = r"创建(?:一个)?(?P<title>.*?)的日程(?:在(?P<date>\d{4}-\d{2}-\d{2}))?"


def _graph(
    *nodes: dict[str, Any],
    edges: list[dict[str, Any]],
    output: str = "",
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format_version": 1,
        "nodes": [node("start", "manual_trigger"), *nodes, node("done", "end", output=output)],
        "edges": edges,
        "variables": variables or {},
    }


def _run(graph: dict[str, Any], text: str) -> tuple[RunResult, list[TraceEvent]]:
    events: list[TraceEvent] = []
    result = asyncio.run(
        CompiledWorkflow(graph).execute(trigger={"text": text}, sink=events.append)
    )
    return result, events


def _problems(graph: dict[str, Any]) -> list[Problem]:
    return validate_graph(graph).problems


def _assistant_graph() -> dict[str, Any]:
    """intent -> calendar / refund / fallback paths, each ending in a reply."""
    return _graph(
        node(
            "route",
            "intent",
            rules=[
                {"intent": "calendar_create", "pattern": CALENDAR},
                {"intent": "refund", "pattern": "退款|退货"},
            ],
        ),
        node(
            "calendar",
            "template",
            template="已创建：{{ nodes.route.parameters.title }}"
            "{% if nodes.route.parameters.date is defined %}"
            "（{{ nodes.route.parameters.date }}）{% endif %}",
        ),
        node("refund", "template", template="退款流程"),
        node("sorry", "reply", text="抱歉，没听懂：{{ trigger.text }}"),
        edges=[
            edge("start", "route"),
            edge("route", "calendar", "calendar_create"),
            edge("route", "refund", "refund"),
            edge("route", "sorry", "fallback"),
            edge("calendar", "done"),
            edge("refund", "done"),
            edge("sorry", "done"),
        ],
        output="{{ nodes.route.intent }}",
    )


def test_intent_routes_to_its_branch_and_parameters_are_readable_downstream() -> None:
    result, events = _run(_assistant_graph(), "帮我创建一个周会的日程在2026-05-01")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "calendar_create"
    assert result.nodes["route"].branch == "calendar_create"
    assert result.nodes["route"].outputs["parameters"] == {"title": "周会", "date": "2026-05-01"}
    assert result.nodes["calendar"].outputs == {"text": "已创建：周会（2026-05-01）"}
    assert result.nodes["refund"].status is NodeStatus.SKIPPED
    assert result.nodes["sorry"].status is NodeStatus.SKIPPED
    route = next(e for e in events if e.kind == "node_finished" and e.node_id == "route")
    assert route.branch == "calendar_create"


def test_intent_without_a_match_follows_fallback_to_a_reply_and_on_to_end() -> None:
    result, events = _run(_assistant_graph(), "今天天气怎么样")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "fallback"
    assert result.nodes["calendar"].status is NodeStatus.SKIPPED
    assert result.nodes["done"].status is NodeStatus.SUCCEEDED
    # Until connectors deliver replies, the reply lives in the trace as the node's outputs.
    recorded = next(e for e in events if e.kind == "node_finished" and e.node_id == "sorry")
    assert recorded.outputs == {
        "format": "text",
        "text": "抱歉，没听懂：今天天气怎么样",
        "card": None,
    }


def test_set_variable_values_are_read_by_later_nodes_as_vars() -> None:
    graph = _graph(
        node(
            "route",
            "intent",
            rules=[{"intent": "calendar_create", "pattern": CALENDAR}],
        ),
        node(
            "remember",
            "set_variable",
            assignments=[
                {"name": "x", "value": "{{ nodes.route.parameters.title }}"},
                {"name": "tone", "value": "正式"},
            ],
        ),
        node("greet", "template", template="{{ vars.x }}/{{ vars.tone }}"),
        node(
            "answer",
            "reply",
            format="card",
            card={"header": {"title": "{{ vars.x }}"}, "body": ["{{ nodes.greet.text }}"]},
        ),
        edges=[
            edge("start", "route"),
            edge("route", "remember", "calendar_create"),
            edge("remember", "greet"),
            edge("greet", "answer"),
            edge("answer", "done"),
        ],
        output="{{ nodes.greet.text }}",
        variables={"tone": "随意"},
    )
    assert _problems(graph) == []
    workflow = CompiledWorkflow(graph)
    result = asyncio.run(workflow.execute(trigger={"text": "创建复盘会的日程"}))
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "复盘会/正式"
    assert result.nodes["remember"].outputs == {"values": {"x": "复盘会", "tone": "正式"}}
    assert result.nodes["answer"].outputs["card"] == {
        "header": {"title": "复盘会"},
        "body": ["复盘会/正式"],
    }
    # Each run starts from the graph's declared variables; a run's assignments stay in it.
    assert workflow.graph.variables == {"tone": "随意"}


def test_a_failing_set_variable_fails_the_run_with_its_reason() -> None:
    graph = _graph(
        node("remember", "set_variable", assignments=[{"name": "x", "value": "{{ 1 / 0 }}"}]),
        edges=[edge("start", "remember"), edge("remember", "done")],
        output="{{ vars.x }}",
    )
    result, _ = _run(graph, "hi")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "assignments.0 (x)" in result.error


def test_vars_set_by_an_upstream_node_count_as_defined() -> None:
    graph = _graph(
        node("remember", "set_variable", assignments=[{"name": "x", "value": "1"}]),
        node("use", "template", template="{{ vars.x }}"),
        edges=[edge("start", "remember"), edge("remember", "use"), edge("use", "done")],
    )
    assert _problems(graph) == []


def test_vars_set_by_a_node_that_does_not_run_before_are_refused() -> None:
    graph = _graph(
        node("use", "template", template="{{ vars.x }}"),
        node("remember", "set_variable", assignments=[{"name": "x", "value": "1"}]),
        edges=[edge("start", "use"), edge("use", "remember"), edge("remember", "done")],
    )
    [problem] = _problems(graph)
    assert (problem.code, problem.node_id, problem.field) == (
        "variable_not_upstream",
        "use",
        "config.template",
    )
    assert "set by 'remember'" in problem.message


def test_vars_nobody_declares_or_sets_are_still_refused() -> None:
    graph = _graph(
        node("remember", "set_variable", assignments=[{"name": "x", "value": "1"}]),
        edges=[edge("start", "remember"), edge("remember", "done")],
        output="{{ vars.y }}",
    )
    [problem] = _problems(graph)
    assert (problem.code, problem.node_id) == ("unknown_variable", "done")
    assert "'y' is not defined" in problem.message


def test_set_variable_templates_are_validated_by_path() -> None:
    graph = _graph(
        node(
            "remember",
            "set_variable",
            assignments=[{"name": "a", "value": "ok"}, {"name": "b", "value": "{{ nodes.x.y }}"}],
        ),
        edges=[edge("start", "remember"), edge("remember", "done")],
    )
    [problem] = _problems(graph)
    assert (problem.code, problem.field) == ("unknown_variable", "config.assignments.1.value")


def test_every_intent_branch_must_be_connected_but_fallback_may_stay_open() -> None:
    graph = _assistant_graph()
    removed = {"refund", "sorry"}
    graph["nodes"] = [n for n in graph["nodes"] if n["id"] not in removed]
    graph["edges"] = [e for e in graph["edges"] if not removed & {e["source"], e["target"]}]
    [problem] = _problems(graph)
    assert (problem.code, problem.node_id, problem.field) == (
        "unconnected_branch",
        "route",
        "branches.refund",
    )


def test_a_bad_intent_regex_in_a_graph_names_the_rule_and_field() -> None:
    graph = _graph(
        node("route", "intent", rules=[{"intent": "calendar_create", "pattern": "创建(?P<t>"}]),
        edges=[edge("start", "route"), edge("route", "done", "calendar_create")],
    )
    problems = [p for p in _problems(graph) if p.code == "invalid_config"]
    assert [(p.node_id, p.field) for p in problems] == [("route", "config.rules.0.pattern")]
    assert "rule 'calendar_create': bad regular expression" in problems[0].message


def test_reply_card_templates_are_validated_by_path() -> None:
    graph = _graph(
        node("answer", "reply", format="card", card={"rows": [{"text": "{{ nodes.ghost.x }}"}]}),
        edges=[edge("start", "answer"), edge("answer", "done")],
    )
    [problem] = _problems(graph)
    assert (problem.code, problem.field) == ("unknown_variable", "config.card.rows.0.text")
