from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from assistant_site.celery import app
from assistant_site.roles import DESIGNER
from tests.conftest import close_sessions_since, database_now, require_service
from tests.workflows.graphs import echo_graph
from workflows import services
from workflows.models import Run


def _wait_finished(run: Run, timeout: float = 30.0) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in Run.FINISHED:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run still {run.status} after {timeout}s")


@pytest.mark.django_db(transaction=True)
def test_published_runs_execute_on_a_real_worker_through_redis_and_postgresql(
    redis_url: str, make_user: Callable[..., Any]
) -> None:
    require_service(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    designer = make_user("designer", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=designer, name="echo")
    services.workflow_draft_save(workflow=workflow, graph=echo_graph(), base_revision=0)
    workflow.refresh_from_db()
    version = services.workflow_publish(workflow=workflow, actor=designer)

    app.control.purge()  # messages left in the test queue by an interrupted earlier run
    since = database_now()
    worker = start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=["runs"],
        shutdown_timeout=20,
    )
    with worker:
        runs = [
            services.run_start(workflow=workflow, actor=designer, trigger_input={"text": f"#{i}"})
            for i in range(5)
        ]
        finished = [_wait_finished(run) for run in runs]
    close_sessions_since(since)

    assert [run.status for run in finished] == ["succeeded"] * 5
    assert [run.output for run in finished] == [f"你好，#{i}" for i in range(5)]
    for run in finished:
        assert run.version_id == version.pk
        assert run.started_at is not None
        assert run.finished_at is not None
        assert list(run.node_runs.values_list("node_id", "status")) == [
            ("start", "succeeded"),
            ("greet", "succeeded"),
            ("done", "succeeded"),
        ]


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_task_does_not_run_a_run_twice(make_user: Callable[..., Any]) -> None:
    designer = make_user("designer2", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=designer, name="once")
    services.workflow_draft_save(workflow=workflow, graph=echo_graph(), base_revision=0)
    workflow.refresh_from_db()
    services.workflow_publish(workflow=workflow, actor=designer)
    run = Run.objects.create(workflow=workflow, graph=echo_graph(), input={"text": "x"})
    services.run_execute(run_id=str(run.pk))
    services.run_execute(run_id=str(run.pk))  # the broker delivered the task again
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.node_runs.count() == 3


@pytest.mark.django_db(transaction=True)
def test_an_edited_model_endpoint_is_used_by_a_running_worker_without_a_restart(
    redis_url: str, make_user: Callable[..., Any]
) -> None:
    from tests.doubles.vllm_server import VllmDouble
    from tests.workflows.graphs import edge, node

    require_service(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    designer = make_user("designer3", roles=(DESIGNER,))
    graph = {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node("answer", "llm", endpoints=["chat"], stream=False),
            node("done", "end", output="{{ nodes.answer.model }}: {{ nodes.answer.text }}"),
        ],
        "edges": [edge("start", "answer"), edge("answer", "done")],
        "variables": {},
    }
    with VllmDouble(model="model-a") as first, VllmDouble(model="model-b") as second:
        endpoint = services.model_endpoint_create(
            actor=designer,
            data={"name": "chat", "base_url": first.base_url, "model": "model-a"},
        )
        workflow = services.workflow_create(actor=designer, name="switch")
        services.workflow_draft_save(workflow=workflow, graph=graph, base_revision=0)
        workflow.refresh_from_db()
        services.workflow_publish(workflow=workflow, actor=designer)

        app.control.purge()
        since = database_now()
        with start_worker(
            app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            queues=["runs"],
            shutdown_timeout=20,
        ):
            before = _wait_finished(
                services.run_start(workflow=workflow, actor=designer, trigger_input={"text": "1"})
            )
            services.model_endpoint_update(
                endpoint=endpoint, data={"base_url": second.base_url, "model": "model-b"}
            )
            after = _wait_finished(
                services.run_start(workflow=workflow, actor=designer, trigger_input={"text": "2"})
            )
        close_sessions_since(since)

    assert before.output == "model-a: Echo: 1", before.error
    assert after.output == "model-b: Echo: 2", after.error
    assert [request["model"] for request in first.requests] == ["model-a"]
    assert [request["model"] for request in second.requests] == ["model-b"]
