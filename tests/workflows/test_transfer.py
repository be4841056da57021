"""Export / import round trip, version diff and rollback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.test import Client

from assistant_site.roles import DESIGNER
from audit.models import AuditEntry
from tests.workflows.graphs import echo_graph
from workflows import services
from workflows.models import Workflow


@pytest.fixture
def designer(make_user: Callable[..., Any]) -> Any:
    return make_user("designer", roles=(DESIGNER,))


@pytest.fixture
def api(designer: Any) -> Client:
    client = Client()
    client.force_login(designer)
    return client


@pytest.fixture
def published(designer: Any) -> Workflow:
    workflow = services.workflow_create(actor=designer, name="问候", description="says hello")
    services.workflow_draft_save(workflow=workflow, graph=echo_graph(), base_revision=0)
    workflow.refresh_from_db()
    services.workflow_publish(workflow=workflow, actor=designer, changelog="v1")
    changed = echo_graph()
    changed["nodes"][1]["config"]["template"] = "您好，{{ trigger.text }}"
    changed["variables"] = {"tone": "formal"}
    services.workflow_draft_save(workflow=workflow, graph=changed, base_revision=1)
    workflow.refresh_from_db()
    services.workflow_publish(workflow=workflow, actor=designer, changelog="v2")
    workflow.refresh_from_db()
    return workflow


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_then_import_gives_the_same_graph(
    api: Client, published: Workflow, fmt: str
) -> None:
    exported = api.get(f"/api/workflows/{published.pk}/export/?format={fmt}&version=1")
    assert exported.status_code == 200
    assert exported["Content-Disposition"].endswith(f'-v1.{fmt}"')
    text = exported.content.decode()
    assert "你好" in text  # Chinese stays readable in the file
    imported = api.post(
        "/api/workflows/import/", {"document": text}, content_type="application/json"
    )
    assert imported.status_code == 201
    copy = Workflow.objects.get(pk=imported.json()["id"])
    assert copy.name == "问候"
    assert copy.draft == published.versions.get(number=1).graph
    assert copy.pk != published.pk


def test_import_refuses_a_foreign_or_broken_document(api: Client) -> None:
    for document in (
        "just: text",
        "{not yaml: [",
        yaml.safe_dump({"assistant_studio_workflow": 1, "graph": {"nodes": [{"id": "Bad!"}]}}),
    ):
        response = api.post(
            "/api/workflows/import/", {"document": document}, content_type="application/json"
        )
        assert response.status_code == 400, document
        assert response.json()["problems"]
    assert not Workflow.objects.exists()


def test_management_commands_round_trip(published: Workflow, tmp_path: Path, designer: Any) -> None:
    target = tmp_path / "wf.yaml"
    call_command("export_workflow", str(published.pk), "--workflow-version", "2", "-o", str(target))
    call_command("import_workflow", str(target), "--owner", "designer", "--name", "副本")
    copy = Workflow.objects.get(name="副本")
    assert copy.draft == published.versions.get(number=2).graph
    assert designer.has_perm("workflows.change_workflow", copy)
    with pytest.raises(CommandError, match="no workflow"):
        call_command("export_workflow", "not-a-uuid")
    with pytest.raises(CommandError, match="no user"):
        call_command("import_workflow", str(target), "--owner", "nobody")


def test_diff_names_changed_nodes_and_variables(api: Client, published: Workflow) -> None:
    diff = api.get(f"/api/workflows/{published.pk}/diff/?from=1&to=2").json()
    assert diff["nodes"]["added"] == []
    assert diff["nodes"]["changed"] == [
        {
            "id": "greet",
            "fields": {
                "config": [
                    {"template": "你好，{{ trigger.text }}"},
                    {"template": "您好，{{ trigger.text }}"},
                ]
            },
        }
    ]
    assert diff["variables"] == {"tone": [None, "formal"]}
    bad = api.get(f"/api/workflows/{published.pk}/diff/?from=9")
    assert bad.status_code == 400
    assert "from" in bad.json()


def test_rollback_publishes_the_old_graph_again_and_is_audited(
    api: Client, published: Workflow
) -> None:
    response = api.post(f"/api/workflows/{published.pk}/versions/1/rollback/")
    assert response.status_code == 201
    assert response.json()["number"] == 3
    published.refresh_from_db()
    assert published.versions.get(number=3).graph == published.versions.get(number=1).graph
    assert published.draft == published.versions.get(number=1).graph
    entry = AuditEntry.objects.get(action="workflow.rollback")
    assert entry.extra == {"to_version": 1, "new_version": 3}
    missing = api.post(f"/api/workflows/{published.pk}/versions/42/rollback/")
    assert missing.status_code == 400
