"""Credentials used by HTTP request nodes stay out of traces, run results and the admin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client
from pytest_django.fixtures import Settings

from assistant_site.crypto import MASK, StoredSecret
from assistant_site.roles import DESIGNER
from assistant_site.routing import websocket_urlpatterns
from assistant_site.sharing import owner_permissions_grant
from tests.assistant_site.test_http import LocalServer, serve
from tests.workflows.graphs import edge, node
from workflows import services
from workflows.models import Credential, Run

SECRET = "sk-live-crm-7Hq2xP"


@pytest.fixture
def server(settings: Settings) -> Iterator[LocalServer]:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with serve() as local:
        yield local


def _graph(url: str) -> dict[str, Any]:
    """manual trigger -> HTTP request with a bearer credential to an echo server -> end."""
    return {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node(
                "call",
                "http_request",
                url=url,
                auth={"credential": "crm", "scheme": "bearer"},
                # The echo server answers with the request's headers: the secret comes back.
                response_mapping={"auth": "headers.Authorization"},
            ),
            node("done", "end", output="sent {{ nodes.call.mapped.auth }}"),
        ],
        "edges": [edge("start", "call"), edge("call", "done")],
        "variables": {},
    }


def _queued_run(owner: Any, url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    credential = Credential.objects.create(name="crm", value=SECRET, created_by=owner)
    owner_permissions_grant(user=owner, obj=credential)  # includes "use"
    workflow = services.workflow_create(actor=owner, name="crm lookup")
    services.workflow_draft_save(workflow=workflow, graph=_graph(url), base_revision=0)
    workflow.refresh_from_db()
    services.workflow_publish(workflow=workflow, actor=owner)
    # The test executes the run itself, while it watches: nothing goes to the broker.
    queued: list[Any] = []
    monkeypatch.setattr(services, "_enqueue_run", queued.append)
    run = services.run_start(workflow=workflow, actor=owner, trigger_input={"text": "hi"})
    assert queued == [run.pk]
    return run


@pytest.mark.django_db(transaction=True)
def test_a_credential_is_masked_in_node_runs_the_run_and_streamed_events(
    redis_url: str,
    make_user: Callable[..., Any],
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = make_user("owner", roles=(DESIGNER,))
    run = _queued_run(owner, server.url("/echo"), monkeypatch)

    async def scenario() -> list[dict[str, Any]]:
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/runs/{run.pk}/"
        )
        communicator.scope["user"] = owner
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)  # the snapshot of the queued run
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

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    # The request did carry the secret: the server echoed it, and the trace shows the mask.
    assert run.output == f"sent Bearer {MASK}"
    assert SECRET not in run.output
    assert SECRET not in run.error
    rows = list(run.node_runs.values("node_id", "inputs", "outputs", "error"))
    assert [row["node_id"] for row in rows] == ["start", "call", "done"]
    stored = json.dumps(rows, ensure_ascii=False)
    assert SECRET not in stored
    call = rows[1]
    assert call["outputs"]["mapped"] == {"auth": f"Bearer {MASK}"}
    assert call["outputs"]["json"]["headers"]["Authorization"] == f"Bearer {MASK}"
    assert f"Bearer {MASK}" in call["outputs"]["body"]

    streamed = json.dumps(events, ensure_ascii=False)
    assert SECRET not in streamed
    [finished] = [e for e in events if e["kind"] == "node_finished" and e["node_id"] == "call"]
    assert finished["outputs"]["mapped"] == {"auth": f"Bearer {MASK}"}

    # The credential itself stays encrypted at rest.
    stored = Credential.objects.values_list("value", flat=True).get(name="crm")
    assert isinstance(stored, StoredSecret)
    assert SECRET not in stored.ciphertext


@pytest.mark.django_db
def test_the_admin_change_page_never_shows_a_credential_value(admin_client: Client) -> None:
    credential = Credential.objects.create(name="crm", value=SECRET)
    stored = Credential.objects.values_list("value", flat=True).get(pk=credential.pk)
    assert isinstance(stored, StoredSecret)

    response = admin_client.get(f"/admin/workflows/credential/{credential.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'type="password"' in page
    assert SECRET not in page
    assert stored.ciphertext not in page
    assert "enc:v1" not in page
    assert "Reveal" in page


# --- the masking function ----------------------------------------------------------------


def test_masking_walks_nested_values_and_keys() -> None:
    value = {
        "body": f'{{"token": "{SECRET}"}}',
        "list": [SECRET, 3, None, {f"k-{SECRET}": True}],
        "status": 200,
    }
    assert services._mask_secrets(value, {SECRET}) == {
        "body": f'{{"token": "{MASK}"}}',
        "list": [MASK, 3, None, {f"k-{MASK}": True}],
        "status": 200,
    }
    assert services._mask_secrets(value, ()) is value


def test_a_secret_containing_another_is_masked_whole() -> None:
    assert services._mask_secrets("a=abc123 b=abc", {"abc", "abc123"}) == f"a={MASK} b={MASK}"


def test_a_truncated_trace_value_never_keeps_part_of_a_secret() -> None:
    # The secret straddles the preview's cut: masking first keeps no part of it.
    prefix = '{"body": "'
    filler = "x" * (services._TRACE_VALUE_LIMIT - len(prefix) - 4)
    capped = services._capped({"body": filler + SECRET + "y" * 100}, {SECRET})
    assert capped["truncated"] is True
    assert capped["preview"].startswith(prefix + filler)
    assert capped["preview"].endswith(MASK[:4])
    assert SECRET[:4] not in capped["preview"]
