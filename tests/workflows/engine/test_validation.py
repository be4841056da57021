"""One test per kind of problem the validator reports, plus reporting all at once."""

from __future__ import annotations

from typing import Any

from tests.workflows.graphs import echo_graph, edge, node
from workflows.engine.validation import Problem, validate_graph


def _problems(graph: dict[str, Any]) -> list[Problem]:
    return validate_graph(graph).problems


def _only(graph: dict[str, Any], code: str) -> Problem:
    problems = _problems(graph)
    assert [p.code for p in problems] == [code], problems
    return problems[0]


def test_a_well_formed_graph_has_no_problems() -> None:
    report = validate_graph(echo_graph())
    assert report.ok, report.problems
    assert report.graph is not None
    assert [n.id for n in report.graph.nodes] == ["start", "greet", "done"]


def test_malformed_shape_names_the_field() -> None:
    graph = echo_graph()
    graph["nodes"][1]["id"] = "Bad Id!"
    graph["edges"][0]["colour"] = "red"
    problems = _problems(graph)
    assert {p.field for p in problems} == {"nodes.1.id", "edges.0.colour"}
    assert all(p.code == "invalid_graph" for p in problems)
    assert next(p for p in problems if p.field == "edges.0.colour").edge_id == "start-out-greet"


def test_unknown_format_version_is_refused() -> None:
    graph = {**echo_graph(), "format_version": 7}
    assert _only(graph, "invalid_graph").field == "format_version"


def test_unknown_node_type() -> None:
    graph = echo_graph()
    graph["nodes"][1]["type"] = "teleport"
    problem = _problems(graph)[0]
    assert (problem.code, problem.node_id, problem.field) == ("unknown_node_type", "greet", "type")
    assert "teleport" in problem.message


def test_unknown_node_type_version_lists_the_known_ones() -> None:
    graph = echo_graph()
    graph["nodes"][1]["type_version"] = 9
    problem = next(p for p in _problems(graph) if p.code == "unknown_node_type")
    assert problem.field == "type_version"
    assert "known: 1" in problem.message


def test_config_schema_errors_name_the_config_field() -> None:
    graph = echo_graph()
    graph["nodes"][1]["config"] = {"template": "", "colour": "red"}
    problems = [p for p in _problems(graph) if p.code == "invalid_config"]
    assert {(p.node_id, p.field) for p in problems} == {
        ("greet", "config.template"),
        ("greet", "config.colour"),
    }


def test_no_trigger() -> None:
    graph = echo_graph()
    graph["nodes"] = graph["nodes"][1:]
    graph["edges"] = [edge("greet", "done")]
    graph["nodes"][1]["config"]["output"] = "fixed"
    graph["nodes"][0]["config"]["template"] = "hi"
    problem = _only(graph, "no_trigger")
    assert "no trigger" in problem.message


def test_unreachable_node() -> None:
    graph = echo_graph()
    graph["nodes"].append(node("orphan", "template", template="alone"))
    problem = _only(graph, "unreachable_node")
    assert problem.node_id == "orphan"


def test_dangling_edge_to_a_missing_node() -> None:
    graph = echo_graph()
    graph["edges"].append(edge("greet", "ghost", edge_id="e-ghost"))
    problem = _only(graph, "dangling_edge")
    assert (problem.edge_id, problem.field) == ("e-ghost", "target")


def test_dangling_edge_from_a_handle_the_node_does_not_have() -> None:
    graph = echo_graph()
    graph["edges"][1]["source_handle"] = "sideways"
    problem = next(p for p in _problems(graph) if p.code == "dangling_edge")
    assert (problem.node_id, problem.field) == ("greet", "source_handle")
    assert "it has: out" in problem.message


def test_unconnected_required_branch() -> None:
    graph = echo_graph()
    graph["nodes"].insert(
        1,
        node(
            "check",
            "condition",
            cases=[
                {
                    "id": "hello",
                    "left": "{{ trigger.text }}",
                    "operator": "contains",
                    "right": "hi",
                },
                {"id": "bye", "left": "{{ trigger.text }}", "operator": "contains", "right": "bye"},
            ],
        ),
    )
    graph["edges"] = [
        edge("start", "check"),
        edge("check", "greet", "hello"),
        edge("greet", "done"),
    ]
    problem = _only(graph, "unconnected_branch")
    assert (problem.node_id, problem.field) == ("check", "branches.bye")


def test_cycle() -> None:
    graph = echo_graph()
    graph["nodes"].insert(2, node("again", "template", template="{{ nodes.greet.text }}"))
    graph["edges"] = [
        edge("start", "greet"),
        edge("greet", "again"),
        edge("again", "greet"),
        edge("again", "done"),
    ]
    graph["nodes"][3]["config"]["output"] = "x"
    problem = _only(graph, "cycle")
    assert "greet" in problem.message
    assert "again" in problem.message


def test_template_variable_from_a_node_that_is_not_upstream() -> None:
    graph = echo_graph()
    graph["nodes"][1]["config"]["template"] = "{{ nodes.done.output }}"
    problem = _only(graph, "variable_not_upstream")
    assert (problem.node_id, problem.field) == ("greet", "config.template")
    assert "'done'" in problem.message


def test_template_variable_from_a_node_that_does_not_exist() -> None:
    graph = echo_graph()
    graph["nodes"][2]["config"]["output"] = "{{ nodes.nobody.text }}"
    problem = _only(graph, "unknown_variable")
    assert "nobody" in problem.message


def test_template_reads_an_output_the_node_does_not_have() -> None:
    graph = echo_graph()
    graph["nodes"][2]["config"]["output"] = "line one\n{{ nodes.greet.answer }}"
    problem = _only(graph, "unknown_output")
    assert problem.message.startswith("line 2:")
    assert "it has: text" in problem.message


def test_template_reads_an_undefined_workflow_variable_or_unknown_root() -> None:
    graph = echo_graph()
    graph["nodes"][2]["config"]["output"] = "{{ vars.tone }} {{ secrets.key }}"
    problems = _problems(graph)
    assert [p.code for p in problems] == ["unknown_variable", "unknown_variable"]
    graph["variables"] = {"tone": "friendly"}
    assert [p.message for p in _problems(graph)] == [
        "line 1: 'secrets' is not a variable; use trigger, conversation, nodes, vars"
    ]


def test_template_syntax_error_gives_the_line() -> None:
    graph = echo_graph()
    graph["nodes"][1]["config"]["template"] = "ok\nstill ok\n{{ trigger.text }"
    problem = _only(graph, "template_syntax")
    assert problem.field == "config.template"
    assert problem.message.startswith("line 3:")


def test_duplicate_ids() -> None:
    graph = echo_graph()
    graph["edges"].append(edge("start", "greet"))
    problem = _only(graph, "duplicate_id")
    assert problem.edge_id == "start-out-greet"


def test_every_problem_is_reported_at_once() -> None:
    graph = echo_graph()
    graph["nodes"][1]["config"]["template"] = "{{ nodes.done.output }"
    graph["nodes"].append(node("orphan", "teleport"))
    graph["edges"].append(edge("done", "ghost"))
    codes = {p.code for p in _problems(graph)}
    assert codes == {"template_syntax", "unknown_node_type", "unreachable_node", "dangling_edge"}
