"""Cancelling runs, and the per-workflow run time limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from assistant_site.roles import DESIGNER, VIEWER
from audit.models import AuditEntry
from tests.workflows.engine import fake_nodes  # noqa: F401  (registers test_sleep)
from tests.workflows.graphs import edge, node
from workflows import services
from workflows.models import Run, Workflow


def _slow_graph(seconds: float, run_timeout_s: float = 600) -> dict[str, Any]:
    slow = node("slow", "test_sleep", seconds=seconds)
    slow["policy"] = {"timeout_s": 120}
    return {
        "format_version": 1,
        "settings": {"run_timeout_s": run_timeout_s},
        "nodes": [node("start", "manual_trigger"), slow, node("done", "end", output="ok")],
        "edges": [edge("start", "slow"), edge("slow", "done")],
    }


def _workflow(owner: Any, graph: dict[str, Any]) -> Workflow:
    workflow = services.workflow_create(actor=owner, name="slow")
    services.workflow_draft_save(workflow=workflow, graph=graph, base_revision=0)
    workflow.refresh_from_db()
    return workflow


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_queued_run_is_cancelled_at_once_and_audited(make_user: Callable[..., Any]) -> None:
    owner = make_user("owner", roles=(DESIGNER,))
    workflow = _workflow(owner, _slow_graph(1))
    run = Run.objects.create(workflow=workflow, graph=workflow.draft, input={})
    response = _client(owner).post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    services.run_execute(run_id=str(run.pk))  # the task arrives later: nothing runs
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert not run.node_runs.exists()
    assert AuditEntry.objects.filter(action="run.cancel").count() == 1


def test_cancelling_needs_the_run_permission_and_an_unfinished_run(
    make_user: Callable[..., Any],
) -> None:
    owner = make_user("owner", roles=(DESIGNER,))
    viewer = make_user("viewer", roles=(VIEWER,))
    stranger = make_user("stranger", roles=(DESIGNER,))
    workflow = _workflow(owner, _slow_graph(0))
    run = Run.objects.create(workflow=workflow, graph=workflow.draft, input={})
    assert _client(viewer).post(f"/api/runs/{run.pk}/cancel/").status_code == 403
    assert _client(stranger).post(f"/api/runs/{run.pk}/cancel/").status_code == 404
    services.run_execute(run_id=str(run.pk))
    finished = _client(owner).post(f"/api/runs/{run.pk}/cancel/")
    assert finished.status_code == 400
    assert "already finished" in finished.json()["status"][0]


@pytest.mark.django_db(transaction=True)
def test_a_running_run_stops_within_seconds_of_being_cancelled(
    make_user: Callable[..., Any],
) -> None:
    owner = make_user("owner", roles=(DESIGNER,))
    workflow = _workflow(owner, _slow_graph(60))
    run = Run.objects.create(workflow=workflow, graph=workflow.draft, input={})

    def execute() -> None:
        try:
            services.run_execute(run_id=str(run.pk))
        finally:
            connection.close()

    worker = threading.Thread(target=execute)
    worker.start()
    deadline = time.monotonic() + 10
    while Run.objects.get(pk=run.pk).status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    requested = time.monotonic()
    assert _client(owner).post(f"/api/runs/{run.pk}/cancel/").status_code == 202
    worker.join(timeout=20)
    assert not worker.is_alive()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert time.monotonic() - requested < 10
    assert run.node_runs.get(node_id="slow").status == "cancelled"


def test_the_workflow_run_time_limit_applies(make_user: Callable[..., Any]) -> None:
    owner = make_user("owner", roles=(DESIGNER,))
    workflow = _workflow(owner, _slow_graph(30, run_timeout_s=1))
    run = Run.objects.create(workflow=workflow, graph=workflow.draft, input={})
    started = time.monotonic()
    services.run_execute(run_id=str(run.pk))
    run.refresh_from_db()
    assert run.status == "timed_out"
    assert "longer than 1" in run.error
    assert time.monotonic() - started < 10
