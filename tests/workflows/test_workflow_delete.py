from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from assistant_site.roles import DESIGNER
from audit.models import AuditEntry
from tests.workflows.graphs import echo_graph
from workflows import services
from workflows.models import Run, Workflow, WorkflowVersion


def test_deleting_a_workflow_removes_its_versions_and_runs_and_is_audited(
    make_user: Callable[..., Any],
) -> None:
    designer = make_user("designer", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=designer, name="旧流程")
    services.workflow_draft_save(workflow=workflow, graph=echo_graph(), base_revision=0)
    workflow.refresh_from_db()
    version = services.workflow_publish(workflow=workflow, actor=designer)
    run = Run.objects.create(workflow=workflow, version=version, graph=version.graph, input={})
    services.run_execute(run_id=str(run.pk))

    client = Client()
    client.force_login(designer)
    response = client.delete(f"/api/workflows/{workflow.pk}/delete/")
    assert response.status_code == 204
    assert not Workflow.objects.exists()
    assert not WorkflowVersion.objects.exists()
    assert not Run.objects.exists()
    entry = AuditEntry.objects.filter(action="object.delete", target_repr="旧流程").get()
    assert entry.actor_username == "designer"


def test_a_published_version_cannot_be_edited(make_user: Callable[..., Any]) -> None:
    designer = make_user("designer", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=designer, name="frozen")
    services.workflow_draft_save(workflow=workflow, graph=echo_graph(), base_revision=0)
    workflow.refresh_from_db()
    version = services.workflow_publish(workflow=workflow, actor=designer)
    version.changelog = "rewritten history"
    with pytest.raises(ValueError, match="cannot be changed"):
        version.save()
    assert WorkflowVersion.objects.get().changelog == ""
