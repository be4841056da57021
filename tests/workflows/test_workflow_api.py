from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from assistant_site.celery import app
from assistant_site.roles import DESIGNER, VIEWER
from audit.models import AuditEntry
from tests.workflows.graphs import echo_graph
from workflows.models import Run, Workflow


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
    response = api.post("/api/workflows/create/", {"name": "客服"}, content_type="application/json")
    return Workflow.objects.get(pk=response.json()["id"])


@pytest.fixture
def eager_runs() -> Iterator[None]:
    # Runs execute in the request instead of on a worker (the worker path has its own test).
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


def _save(api: Client, workflow: Workflow, graph: dict[str, Any], base: int) -> Any:
    return api.post(
        f"/api/workflows/{workflow.pk}/draft/save/",
        {"graph": graph, "base_revision": base},
        content_type="application/json",
    )


def test_node_types_are_listed_with_their_schemas(api: Client) -> None:
    types = {t["type"]: t for t in api.get("/api/node-types/").json()}
    assert {"manual_trigger", "template", "condition", "end"} <= set(types)
    assert not any(name.startswith("test_") for name in types)
    assert types["template"]["config_schema"]["required"] == ["template"]
    assert types["condition"]["category"] == "processing"


def test_draft_save_returns_the_problems_and_a_new_revision(
    api: Client, workflow: Workflow
) -> None:
    broken = echo_graph()
    broken["nodes"][1]["config"]["template"] = "{{ nodes.done.output }}"
    response = _save(api, workflow, broken, 0)
    assert response.status_code == 200
    body = response.json()
    assert body["revision"] == 1
    assert [p["code"] for p in body["problems"]] == ["variable_not_upstream"]
    draft = api.get(f"/api/workflows/{workflow.pk}/draft/").json()
    assert draft["revision"] == 1
    assert draft["graph"]["nodes"][1]["config"]["template"] == "{{ nodes.done.output }}"


def test_a_conflicting_save_is_refused_and_keeps_the_other_save(
    api: Client, workflow: Workflow
) -> None:
    assert _save(api, workflow, echo_graph(), 0).status_code == 200
    other = echo_graph()
    other["nodes"][1]["config"]["template"] = "stale"
    conflict = _save(api, workflow, other, 0)
    assert conflict.status_code == 409
    assert conflict.json()["current_revision"] == 1
    workflow.refresh_from_db()
    assert workflow.draft["nodes"][1]["config"]["template"] == "你好，{{ trigger.text }}"


def test_a_malformed_graph_is_refused_with_field_paths(api: Client, workflow: Workflow) -> None:
    response = _save(api, workflow, {"format_version": 1, "nodes": [{"id": "X!"}]}, 0)
    assert response.status_code == 400
    fields = {p["field"] for p in response.json()["problems"]}
    assert {"nodes.0.id", "nodes.0.type"} <= fields
    workflow.refresh_from_db()
    assert workflow.draft_revision == 0


def test_publish_refuses_an_invalid_draft_and_audits_a_valid_one(
    api: Client, workflow: Workflow
) -> None:
    refused = api.post(
        f"/api/workflows/{workflow.pk}/publish/", {}, content_type="application/json"
    )
    assert refused.status_code == 400
    assert refused.json()["problems"][0]["code"] == "no_trigger"
    _save(api, workflow, echo_graph(), 0)
    published = api.post(
        f"/api/workflows/{workflow.pk}/publish/",
        {"changelog": "首个版本"},
        content_type="application/json",
    )
    assert published.status_code == 201
    assert published.json()["number"] == 1
    entry = AuditEntry.objects.get(action="workflow.publish")
    assert entry.extra == {"version": 1, "changelog": "首个版本"}
    assert entry.actor_username == "designer"
    versions = api.get(f"/api/workflows/{workflow.pk}/versions/").json()
    assert [v["number"] for v in versions] == [1]


def test_a_test_run_of_the_draft_returns_output_and_trace(
    api: Client,
    workflow: Workflow,
    eager_runs: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _save(api, workflow, echo_graph(), 0)
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post(
            f"/api/workflows/{workflow.pk}/runs/create/",
            {"text": "世界", "version": "draft"},
            content_type="application/json",
        )
    assert started.status_code == 202
    run = api.get(f"/api/runs/{started.json()['id']}/").json()
    assert run["status"] == "succeeded"
    assert run["output"] == "你好，世界"
    assert [(n["node_id"], n["status"]) for n in run["nodes"]] == [
        ("start", "succeeded"),
        ("greet", "succeeded"),
        ("done", "succeeded"),
    ]
    assert run["nodes"][1]["outputs"] == {"text": "你好，世界"}
    assert run["version"] is None
    listed = api.get(f"/api/workflows/{workflow.pk}/runs/").json()
    assert listed["count"] == 1
    assert listed["results"][0]["id"] == started.json()["id"]
    assert listed["results"][0]["status"] == "succeeded"
    assert listed["results"][0]["output"] == "你好，世界"


def test_the_detail_names_the_callers_actions(
    api: Client, workflow: Workflow, make_user: Callable[..., Any]
) -> None:
    assert set(api.get(f"/api/workflows/{workflow.pk}/").json()["permissions"]) == {
        "view",
        "change",
        "delete",
        "publish",
        "run",
    }
    viewer = make_user("viewer", roles=(VIEWER,))
    client = Client()
    client.force_login(viewer)
    assert client.get(f"/api/workflows/{workflow.pk}/").json()["permissions"] == ["view"]


def test_running_needs_a_published_version_or_the_draft(api: Client, workflow: Workflow) -> None:
    response = api.post(
        f"/api/workflows/{workflow.pk}/runs/create/", {"text": "x"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "publish" in response.json()["version"][0]
    assert not Run.objects.exists()


def test_a_viewer_may_read_but_not_save_publish_or_run(
    api: Client, workflow: Workflow, make_user: Callable[..., Any]
) -> None:
    viewer = make_user("viewer", roles=(VIEWER,))
    client = Client()
    client.force_login(viewer)
    assert client.get(f"/api/workflows/{workflow.pk}/draft/").status_code == 200
    assert _save(client, workflow, echo_graph(), 0).status_code == 403
    publish = client.post(
        f"/api/workflows/{workflow.pk}/publish/", {}, content_type="application/json"
    )
    assert publish.status_code == 403
    run = client.post(
        f"/api/workflows/{workflow.pk}/runs/create/",
        {"text": "x", "version": "draft"},
        content_type="application/json",
    )
    assert run.status_code == 403


def test_someone_without_access_gets_404_everywhere(
    workflow: Workflow, make_user: Callable[..., Any]
) -> None:
    stranger = make_user("stranger", roles=(DESIGNER,))
    client = Client()
    client.force_login(stranger)
    for url in ("", "draft/", "versions/", "runs/"):
        assert client.get(f"/api/workflows/{workflow.pk}/{url}").status_code == 404
    assert client.post(f"/api/workflows/{workflow.pk}/validate/").status_code == 404


def test_runs_are_counted_in_the_metrics(
    api: Client, workflow: Workflow, eager_runs: None, django_capture_on_commit_callbacks: Any
) -> None:
    def finished(body: str) -> float:
        for line in body.splitlines():
            if line.startswith('assistant_runs_finished_total{status="succeeded"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    metrics = Client()
    before = finished(metrics.get("/metrics").content.decode())
    _save(api, workflow, echo_graph(), 0)
    with django_capture_on_commit_callbacks(execute=True):
        api.post(
            f"/api/workflows/{workflow.pk}/runs/create/",
            {"text": "x", "version": "draft"},
            content_type="application/json",
        )
    body = metrics.get("/metrics").content.decode()
    assert finished(body) == before + 1
    assert 'assistant_node_duration_seconds_count{node_type="template",status="succeeded"}' in body
    assert "assistant_run_queue_wait_seconds_count" in body
