"""Live run traces over the WebSocket, through the real channel layer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator

from assistant_site.roles import DESIGNER
from assistant_site.routing import websocket_urlpatterns
from tests.workflows.graphs import echo_graph
from workflows import services
from workflows.models import Run


def _communicator(user: Any, run_id: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/runs/{run_id}/")
    communicator.scope["user"] = user
    return communicator


def _queued_run(owner: Any) -> Run:
    workflow = services.workflow_create(actor=owner, name="trace")
    services.workflow_draft_save(workflow=workflow, graph=echo_graph(), base_revision=0)
    workflow.refresh_from_db()
    services.workflow_publish(workflow=workflow, actor=owner)
    return Run.objects.create(
        workflow=workflow,
        version=workflow.versions.get(),
        graph=echo_graph(),
        input={"text": "直播"},
    )


@pytest.mark.django_db(transaction=True)
def test_a_watcher_sees_each_node_event_as_the_run_executes(
    redis_url: str, make_user: Callable[..., Any]
) -> None:
    owner = make_user("owner", roles=(DESIGNER,))
    run = _queued_run(owner)

    async def scenario() -> list[dict[str, Any]]:
        communicator = _communicator(owner, run.pk)
        connected, _ = await communicator.connect()
        assert connected
        snapshot = await communicator.receive_json_from(timeout=5)
        assert snapshot["type"] == "snapshot"
        assert snapshot["run"]["status"] == "queued"
        await database_sync_to_async(services.run_execute)(run_id=str(run.pk))
        events = []
        while True:
            message = await communicator.receive_json_from(timeout=5)
            events.append(message["event"])
            if message["event"]["kind"] == "run_finished":
                break
        await communicator.disconnect()
        return events

    events = asyncio.run(scenario())
    assert [(e["kind"], e.get("node_id")) for e in events] == [
        ("run_started", None),
        ("node_started", "start"),
        ("node_finished", "start"),
        ("node_started", "greet"),
        ("node_finished", "greet"),
        ("node_started", "done"),
        ("node_finished", "done"),
        ("run_finished", None),
    ]
    assert events[4]["outputs"] == {"text": "你好，直播"}
    assert events[-1]["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_finished_run_replays_from_the_snapshot(
    redis_url: str, make_user: Callable[..., Any]
) -> None:
    owner = make_user("owner", roles=(DESIGNER,))
    run = _queued_run(owner)
    services.run_execute(run_id=str(run.pk))

    async def scenario() -> dict[str, Any]:
        communicator = _communicator(owner, run.pk)
        await communicator.connect()
        snapshot: dict[str, Any] = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return snapshot

    snapshot = asyncio.run(scenario())
    assert snapshot["run"]["status"] == "succeeded"
    assert [n["node_id"] for n in snapshot["nodes"]] == ["start", "greet", "done"]


@pytest.mark.django_db(transaction=True)
def test_someone_who_may_not_view_the_workflow_is_refused(
    redis_url: str, make_user: Callable[..., Any]
) -> None:
    owner = make_user("owner", roles=(DESIGNER,))
    stranger = make_user("stranger", roles=(DESIGNER,))
    run = _queued_run(owner)

    async def scenario() -> tuple[bool, Any]:
        communicator = _communicator(stranger, run.pk)
        connected, code = await communicator.connect()
        return connected, code

    connected, code = asyncio.run(scenario())
    assert not connected
    assert code == 4404
