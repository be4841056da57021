"""The web chat connector end to end: visitor tokens, the widget's socket, a real worker
running the workflow, replies and streamed tokens pushed through Redis, reconnects that lose
and duplicate nothing, and the refusals."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client

from assistant_site.asgi import application
from connectors.models import Connector, Delivery, InboundEvent
from connectors.webchat import consumers
from tests.connectors.conftest import echo_chat_graph, llm_chat_graph
from tests.doubles.vllm_server import VllmDouble
from workflows import services
from workflows.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def _token(connector: Connector, previous: str = "", origin: str = "") -> Any:
    body = {"token": previous} if previous else {}
    return Client().post(
        f"/connectors/{connector.pk}/webchat/session",
        body,
        content_type="application/json",
        headers={"Origin": origin} if origin else {},
    )


def _socket(connector: Connector, token: str, origin: str = "") -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())] if origin else []
    return WebsocketCommunicator(
        application, f"/ws/webchat/{connector.pk}/?token={token}", headers=headers
    )


async def _next(socket: WebsocketCommunicator, kind: str, timeout: float = 30) -> dict[str, Any]:
    """The next event of ``kind``, skipping typing signals and pings."""
    deadline = time.monotonic() + timeout
    while True:
        event: dict[str, Any] = await socket.receive_json_from(
            timeout=max(0.1, deadline - time.monotonic())
        )
        if event["type"] == kind:
            return event
        assert event["type"] in {"typing", "ping", "stream"}, event


def _wait(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def webchat(publish: Callable[..., Any], make_connector: Callable[..., Connector]) -> Connector:
    return make_connector(publish(echo_chat_graph()), "webchat")


def test_a_visitor_gets_the_workflow_s_answer_once_even_when_resending(
    webchat: Connector, worker: None
) -> None:
    token = _token(webchat).json()["token"]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        socket = _socket(webchat, token)
        connected, _code = await socket.connect()
        assert connected
        ready = await socket.receive_json_from()
        await socket.send_json_to({"type": "message", "id": "m-1", "text": "你好"})
        ack = await _next(socket, "ack")
        reply = await _next(socket, "message")
        await socket.send_json_to({"type": "message", "id": "m-1", "text": "你好"})
        again = await _next(socket, "ack")
        await socket.disconnect()
        return ready, ack | {"again": again}, reply

    ready, ack, reply = asyncio.run(scenario())
    assert ready["type"] == "ready"
    assert ready["visitor"].startswith("v-")
    assert ack["duplicate"] is False
    assert ack["again"]["duplicate"] is True
    assert reply["text"] == "re: 你好"
    assert reply["reply_to"] == "m-1"
    assert InboundEvent.objects.count() == 1
    assert Run.objects.count() == 1
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.REPLIED
    assert event.run is not None
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.run_id, delivery.event_id) == ("sent", event.run.pk, event.pk)


def test_replies_sent_while_disconnected_arrive_on_resume_and_only_once(
    webchat: Connector, worker: None
) -> None:
    token = _token(webchat).json()["token"]

    async def send_and_leave() -> None:
        socket = _socket(webchat, token)
        await socket.connect()
        await socket.receive_json_from()
        await socket.send_json_to({"type": "message", "id": "m-1", "text": "first"})
        await _next(socket, "ack")
        await socket.disconnect()

    asyncio.run(send_and_leave())
    _wait(lambda: Delivery.objects.filter(status="sent").count() == 1)

    renewed = _token(webchat, previous=token).json()["token"]

    async def come_back() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        socket = _socket(webchat, renewed)
        await socket.connect()
        await socket.receive_json_from()
        await socket.send_json_to({"type": "resume", "after": ""})
        missed = [await _next(socket, "message")]
        await socket.send_json_to({"type": "resume", "after": missed[0]["id"]})
        assert await socket.receive_nothing(timeout=0.5)
        await socket.send_json_to({"type": "message", "id": "m-2", "text": "second"})
        await _next(socket, "ack")
        live = [await _next(socket, "message")]
        await socket.disconnect()
        return missed, live

    missed, live = asyncio.run(come_back())
    assert [m["text"] for m in missed] == ["re: first"]
    assert [m["text"] for m in live] == ["re: second"]
    # The returning visitor kept their conversation: one conversation, four messages.
    run = Run.objects.order_by("-created_at").first()
    assert run is not None
    assert run.conversation is not None
    assert run.conversation.messages.count() == 4


def test_tokens_stream_into_the_widget_and_the_final_message_replaces_them(
    publish: Callable[..., Any],
    make_connector: Callable[..., Connector],
    admin_user: Any,
    worker: None,
) -> None:
    with VllmDouble(token_delay_s=0.15) as double:
        double.reply = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"
        services.model_endpoint_create(
            actor=admin_user,
            data={"name": "qwen", "base_url": double.base_url, "model": double.model},
        )
        connector = make_connector(publish(llm_chat_graph()), "webchat")
        token = _token(connector).json()["token"]

        async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            socket = _socket(connector, token)
            await socket.connect()
            await socket.receive_json_from()
            await socket.send_json_to({"type": "message", "id": "q", "text": "背一首诗"})
            streamed: list[dict[str, Any]] = []
            while True:
                event = await socket.receive_json_from(timeout=30)
                if event["type"] == "stream":
                    streamed.append(event)
                elif event["type"] == "message":
                    await socket.disconnect()
                    return streamed, event

        streamed, final = asyncio.run(scenario())
    assert len(streamed) >= 2
    texts = [event["text"] for event in streamed]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert final["text"] == "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"
    assert {event["id"] for event in streamed} == {final["id"]}
    assert Delivery.objects.get().message_ids == [final["id"]]


def test_bad_messages_get_errors_naming_the_field(webchat: Connector) -> None:
    token = _token(webchat).json()["token"]

    async def scenario() -> list[dict[str, Any]]:
        socket = _socket(webchat, token)
        await socket.connect()
        await socket.receive_json_from()
        answers = []
        for bad in (
            {"type": "message", "text": "no id"},
            {"type": "message", "id": "x", "text": "   "},
            {"type": "message", "id": "x", "text": "长" * 20_001},
            {"type": "resume", "after": 5},
            {"type": "dance"},
            [1, 2],
        ):
            await socket.send_json_to(bad)
            answers.append(await socket.receive_json_from())
        await socket.disconnect()
        return answers

    answers = asyncio.run(scenario())
    assert [a["type"] for a in answers] == ["error"] * 6
    assert [a["field"] for a in answers] == ["id", "text", "text", "after", "type", "type"]
    assert InboundEvent.objects.count() == 0


def test_sockets_without_a_valid_token_or_from_foreign_sites_are_closed(
    webchat: Connector,
) -> None:
    token = _token(webchat).json()["token"]

    async def close_code(socket: WebsocketCommunicator) -> int:
        connected, code = await socket.connect()
        assert not connected
        return int(code)

    assert asyncio.run(close_code(_socket(webchat, "forged"))) == consumers.CLOSE_UNAUTHORIZED
    assert (
        asyncio.run(close_code(_socket(webchat, token, origin="https://evil.example")))
        == consumers.CLOSE_FORBIDDEN
    )
    webchat.enabled = False
    webchat.save()
    assert asyncio.run(close_code(_socket(webchat, token))) == consumers.CLOSE_NOT_FOUND


def test_the_session_endpoint_answers_cors_only_for_allowed_sites(webchat: Connector) -> None:
    refused = _token(webchat, origin="https://evil.example")
    assert refused.status_code == 403
    assert refused.json()["field"] == "Origin"
    webchat.config = {"allowed_origins": ["https://shop.example"]}
    webchat.save()
    allowed = _token(webchat, origin="https://shop.example")
    assert allowed.status_code == 200
    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example"
    # A token from the same visitor keeps them; a forged one starts a new visitor.
    first = allowed.json()
    assert _token(webchat, previous=first["token"]).json()["visitor"] == first["visitor"]
    assert _token(webchat, previous="forged").json()["visitor"] != first["visitor"]
    bad = Client().post(
        f"/connectors/{webchat.pk}/webchat/session", b"[1]", content_type="application/json"
    )
    assert (bad.status_code, bad.json()["field"]) == (400, "token")


def test_heartbeats_keep_an_active_socket_and_idle_ones_are_closed(
    webchat: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "HEARTBEAT_S", 0.2)
    webchat.config = {"idle_timeout_s": 5}
    webchat.save()
    token = _token(webchat).json()["token"]

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], float]:
        socket = _socket(webchat, token)
        await socket.connect()
        await socket.receive_json_from()
        pings = [await socket.receive_json_from(timeout=5) for _ in range(3)]
        await socket.send_json_to({"type": "pong"})
        answered = time.monotonic()
        output = await socket.receive_output(timeout=15)
        while output["type"] != "websocket.close":
            output = await socket.receive_output(timeout=15)
        return pings, output, time.monotonic() - answered

    pings, closed, quiet_s = asyncio.run(scenario())
    assert pings == [{"type": "ping"}] * 3
    assert closed["code"] == consumers.CLOSE_IDLE
    # Closed for idleness counted from the client's last message, not from the connect.
    assert quiet_s >= 4.5


def test_this_site_on_any_port_may_open_its_own_chat(settings: Any) -> None:
    from connectors.webchat.adapter import WebchatConfig

    settings.ALLOWED_HOSTS = ["studio.example.com", "127.0.0.1"]
    config = WebchatConfig(allowed_origins=["https://shop.example.com"])
    assert consumers.origin_allowed("http://127.0.0.1:8000", config)
    assert consumers.origin_allowed("https://studio.example.com", config)
    assert consumers.origin_allowed("https://shop.example.com", config)
    assert not consumers.origin_allowed("https://evil.example.com:8000", config)
    assert not consumers.origin_allowed("https://shop.example.com:8443", config)
