"""Fixtures for the connector tests: a published chat workflow, connectors bound to it, and a
real Celery worker (threads, the `runs` queue) on Redis and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from assistant_site.celery import app
from assistant_site.roles import ADMINISTRATOR, DESIGNER
from connectors import services as connector_services
from connectors.models import Connector
from tests.conftest import close_sessions_since, database_now, require_service
from tests.workflows.graphs import edge, node
from workflows import services
from workflows.models import Workflow


def echo_chat_graph() -> dict[str, Any]:
    """message -> reply "re: <text>" -> end."""
    return {
        "format_version": 1,
        "nodes": [
            node("start", "message_trigger", command_prefix=""),
            node("answer", "reply", text="re: {{ nodes.start.text }}"),
            node("done", "end", output="{{ nodes.answer.text }}"),
        ],
        "edges": [edge("start", "answer"), edge("answer", "done")],
        "variables": {},
    }


def llm_chat_graph(endpoint: str = "qwen") -> dict[str, Any]:
    """message -> streaming LLM -> reply with the model's text -> end."""
    return {
        "format_version": 1,
        "nodes": [
            node("start", "message_trigger", command_prefix=""),
            node("think", "llm", endpoints=[endpoint], stream=True, history_turns=0),
            node("answer", "reply", text="{{ nodes.think.text }}"),
            node("done", "end", output="{{ nodes.answer.text }}"),
        ],
        "edges": [edge("start", "think"), edge("think", "answer"), edge("answer", "done")],
        "variables": {},
    }


@pytest.fixture
def admin_user(make_user: Callable[..., Any]) -> Any:
    return make_user("connector-admin", roles=(ADMINISTRATOR, DESIGNER))


@pytest.fixture
def publish(admin_user: Any) -> Callable[[dict[str, Any]], Workflow]:
    def make(graph: dict[str, Any]) -> Workflow:
        workflow = services.workflow_create(actor=admin_user, name="助手")
        services.workflow_draft_save(workflow=workflow, graph=graph, base_revision=0)
        workflow.refresh_from_db()
        services.workflow_publish(workflow=workflow, actor=admin_user)
        return workflow

    return make


@pytest.fixture
def make_connector(admin_user: Any) -> Callable[..., Connector]:
    def make(workflow: Workflow, platform: str, **fields: Any) -> Connector:
        data = {"name": f"{platform}-{Connector.objects.count() + 1}", "platform": platform}
        return connector_services.connector_create(
            actor=admin_user, data={**data, "workflow": workflow, **fields}
        )

    return make


@pytest.fixture
def worker(redis_url: str) -> Iterator[None]:
    """A real worker on the `runs` queue (runs, event processing and deliveries)."""
    require_service(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    app.control.purge()  # messages an interrupted earlier test left in the queue
    since = database_now()
    with start_worker(
        app,
        pool="threads",
        concurrency=8,
        perform_ping_check=False,
        queues=["runs"],
        shutdown_timeout=30,
    ):
        yield
    close_sessions_since(since)
