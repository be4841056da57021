"""A worker that dies mid-run leaves the run recoverable, never stuck in "running"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from assistant_site.celery import app
from assistant_site.roles import DESIGNER
from tests.conftest import REPO, require_service
from tests.workflows.engine import fake_nodes  # noqa: F401  (registers test_sleep here)
from tests.workflows.graphs import edge, node
from workflows import services
from workflows.models import Run


def _slow_graph(seconds: float) -> dict[str, Any]:
    slow = node("slow", "test_sleep", seconds=seconds)
    slow["policy"] = {"timeout_s": 120}
    return {
        "format_version": 1,
        "nodes": [node("start", "manual_trigger"), slow, node("done", "end", output="ok")],
        "edges": [edge("start", "slow"), edge("slow", "done")],
    }


def _wait_for(run: Run, status: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"run is {run.status}, not {status}, after {timeout}s")


def _worker_process(redis_url: str) -> subprocess.Popen[bytes]:
    settings = connection.settings_dict
    database_url = (
        f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:"
        f"{settings['PORT'] or 5432}/{settings['NAME']}"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "assistant_site.settings.test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
    }
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "assistant_site",
            "worker",
            "-Q",
            "runs",
            "-P",
            "threads",
            "-c",
            "2",
            "--include",
            "tests.workflows.engine.fake_nodes",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_worker_is_killed_ends_failed_with_a_reason(
    redis_url: str, make_user: Callable[..., Any]
) -> None:
    require_service(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    designer = make_user("designer", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=designer, name="slow")
    services.workflow_draft_save(workflow=workflow, graph=_slow_graph(60), base_revision=0)
    workflow.refresh_from_db()
    app.control.purge()
    worker = _worker_process(redis_url)
    try:
        run = services.run_start(
            workflow=workflow, actor=designer, trigger_input={"text": "x"}, use_draft=True
        )
        _wait_for(run, "running")
        os.killpg(worker.pid, signal.SIGKILL)  # the machine lost the worker mid-run
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    app.control.purge()
    run.refresh_from_db()
    assert run.status == "running"  # nothing else noticed yet

    # The worker is gone, so its heartbeat goes stale; the sweeper gives up after one attempt.
    counts = services.runs_sweep(stale_after_s=0, max_attempts=1)
    run.refresh_from_db()
    assert counts["failed"] == 1
    assert run.status == "failed"
    assert "stopped responding" in run.error
    assert run.finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_stale_run_is_queued_again_and_then_completes(
    make_user: Callable[..., Any], django_capture_on_commit_callbacks: Any
) -> None:
    designer = make_user("designer", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=designer, name="retry")
    services.workflow_draft_save(workflow=workflow, graph=_slow_graph(0), base_revision=0)
    workflow.refresh_from_db()
    long_ago = timezone.now() - timedelta(minutes=5)
    run = Run.objects.create(
        workflow=workflow,
        graph=workflow.draft,
        input={"text": "x"},
        status=Run.Status.RUNNING,
        attempts=1,
        heartbeat_at=long_ago,
        started_at=long_ago,
    )
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            counts = services.runs_sweep(stale_after_s=60, max_attempts=2)
    finally:
        app.conf.task_always_eager = False
    run.refresh_from_db()
    assert counts["requeued"] == 1
    assert run.status == "succeeded"
    assert run.attempts == 2
    assert run.output == "ok"


@pytest.mark.django_db(transaction=True)
def test_a_fresh_heartbeat_is_left_alone(make_user: Callable[..., Any]) -> None:
    designer = make_user("designer", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=designer, name="busy")
    run = Run.objects.create(
        workflow=workflow,
        graph={},
        status=Run.Status.RUNNING,
        attempts=1,
        heartbeat_at=timezone.now(),
    )
    assert services.runs_sweep(stale_after_s=60) == {"requeued": 0, "failed": 0, "reenqueued": 0}
    run.refresh_from_db()
    assert run.status == "running"
