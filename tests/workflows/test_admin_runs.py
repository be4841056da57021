from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from assistant_site.roles import CURATOR, DESIGNER, OPERATOR
from tests.workflows.graphs import echo_graph
from workflows import services
from workflows.models import Run, Workflow


@pytest.fixture
def finished_run(make_user: Callable[..., Any]) -> Run:
    designer = make_user("designer", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=designer, name="巡检")
    services.workflow_draft_save(workflow=workflow, graph=echo_graph(), base_revision=0)
    workflow.refresh_from_db()
    services.workflow_publish(workflow=workflow, actor=designer, changelog="v1")
    run = Run.objects.create(workflow=workflow, graph=echo_graph(), input={"text": "诊断"})
    return services.run_execute(run_id=str(run.pk))


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_operator_reads_runs_with_their_trace_but_cannot_change_them(
    finished_run: Run, make_user: Callable[..., Any]
) -> None:
    operator = _client(make_user("op", roles=(OPERATOR,)))
    listing = operator.get("/admin/workflows/run/")
    assert listing.status_code == 200
    assert "巡检" in listing.content.decode()
    detail = operator.get(f"/admin/workflows/run/{finished_run.pk}/change/").content.decode()
    assert "你好，诊断" in detail
    assert "greet" in detail
    assert 'name="_save"' not in detail
    deleted = operator.post(f"/admin/workflows/run/{finished_run.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 403
    assert Run.objects.filter(pk=finished_run.pk).exists()
    versions = operator.get("/admin/workflows/workflowversion/")
    assert "v1" in versions.content.decode()


def test_staff_who_may_not_see_the_workflow_do_not_see_its_runs(
    finished_run: Run, make_user: Callable[..., Any]
) -> None:
    curator = _client(make_user("cur", roles=(CURATOR,)))
    assert curator.get("/admin/workflows/run/").status_code == 403
    assert curator.get(f"/admin/workflows/run/{finished_run.pk}/change/").status_code in {302, 403}
    assert Workflow.objects.count() == 1
