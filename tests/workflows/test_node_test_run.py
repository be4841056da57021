"""Testing one node of the draft with inputs given by hand (nothing stored)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from assistant_site.roles import DESIGNER, VIEWER
from tests.workflows.graphs import edge, node
from workflows.models import NodeRun, Run, Workflow


def unfinished_graph() -> dict[str, Any]:
    """A draft that cannot be published (no end, a template reading a node not yet drawn)."""
    return {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node("greet", "template", template="{{ nodes.lookup.name }}，你好：{{ trigger.text }}"),
            node("route", "condition", branches=[]),
            node("broken", "template", template="{{ unclosed"),
        ],
        "edges": [edge("start", "greet")],
        "variables": {"greeting": "hi"},
    }


@pytest.fixture
def designer(make_user: Callable[..., Any]) -> Any:
    return make_user("designer", roles=(DESIGNER,))


@pytest.fixture
def api(designer: Any) -> Client:
    client = Client()
    client.force_login(designer)
    return client


@pytest.fixture
def workflow(api: Client) -> Workflow:
    created = api.post("/api/workflows/create/", {"name": "w"}, content_type="application/json")
    workflow = Workflow.objects.get(pk=created.json()["id"])
    api.post(
        f"/api/workflows/{workflow.pk}/draft/save/",
        {"graph": unfinished_graph(), "base_revision": 0},
        content_type="application/json",
    )
    return workflow


def _test(api: Client, workflow: Workflow, node_id: str, body: Any) -> Any:
    return api.post(
        f"/api/workflows/{workflow.pk}/nodes/{node_id}/test/", body, content_type="application/json"
    )


def test_a_node_runs_with_the_inputs_given_by_hand(api: Client, workflow: Workflow) -> None:
    variables = {"trigger": {"text": "查订单"}, "nodes": {"lookup": {"name": "王小明"}}}
    response = _test(api, workflow, "greet", {"variables": variables})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["outputs"] == {"text": "王小明，你好：查订单"}
    assert body["branch"] == "out"
    assert body["duration_ms"] >= 0
    assert [event["kind"] for event in body["events"]] == ["node_started", "node_finished"]
    # Nothing is stored: a node test is not a run.
    assert not Run.objects.exists()
    assert not NodeRun.objects.exists()


def test_a_failing_node_reports_its_error(api: Client, workflow: Workflow) -> None:
    response = _test(api, workflow, "greet", {"variables": {"nodes": {"lookup": {}}}})
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert "name" in response.json()["error"]


def test_workflow_variables_can_be_overridden(api: Client, workflow: Workflow) -> None:
    draft = unfinished_graph()
    draft["nodes"][1]["config"]["template"] = "{{ vars.greeting }} {{ trigger.text }}"
    api.post(
        f"/api/workflows/{workflow.pk}/draft/save/",
        {"graph": draft, "base_revision": 1},
        content_type="application/json",
    )
    default = _test(api, workflow, "greet", {"variables": {"trigger": {"text": "a"}}})
    assert default.json()["outputs"]["text"] == "hi a"
    variables = {"vars": {"greeting": "嗨"}, "trigger": {"text": "b"}}
    given = _test(api, workflow, "greet", {"variables": variables})
    assert given.json()["outputs"]["text"] == "嗨 b"


def test_an_invalid_node_answers_its_problems(api: Client, workflow: Workflow) -> None:
    response = _test(api, workflow, "broken", {})
    assert response.status_code == 400
    problems = response.json()["problems"]
    assert [(p["code"], p["node_id"]) for p in problems] == [("template_syntax", "broken")]


def test_an_unknown_node_answers_404(api: Client, workflow: Workflow) -> None:
    response = _test(api, workflow, "nothere", {})
    assert response.status_code == 404
    assert response.json()["field"] == "node_id"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"variables": {"trigger": "text"}}, "variables"),
        ({"variables": {"nodes": {"lookup": 3}}}, "variables"),
        ({"variables": {"globals": {}}}, "variables"),
        ([1, 2], "variables"),
    ],
)
def test_malformed_inputs_are_refused_naming_the_field(
    api: Client, workflow: Workflow, body: Any, field: str
) -> None:
    response = _test(api, workflow, "greet", body)
    assert response.status_code == 400
    assert field in response.json()


def test_viewers_may_not_test_nodes_and_strangers_do_not_see_them(
    workflow: Workflow, make_user: Callable[..., Any]
) -> None:
    viewer, stranger = Client(), Client()
    viewer.force_login(make_user("viewer", roles=(VIEWER,)))
    stranger.force_login(make_user("stranger"))
    assert _test(viewer, workflow, "greet", {}).status_code == 403
    assert _test(stranger, workflow, "greet", {}).status_code == 404
