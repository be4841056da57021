"""The listener process (manage.py connectors_poll) for Feishu's long-connection mode: events
arrive over the WebSocket, are stored like webhook pushes, acknowledged only then, and the
connection's health is published for the connector API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from connectors.management.commands.connectors_poll import Command
from connectors.models import Connector, InboundEvent
from tests.connectors.conftest import echo_chat_graph
from tests.doubles.feishu_server import message_event
from tests.doubles.feishu_ws_server import FeishuWsDouble

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def listener(redis_url: str) -> Iterator[None]:
    """The listener's loop in a thread, re-reading connectors every 0.2 s."""
    loop = asyncio.new_event_loop()
    stopping: list[asyncio.Event] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        stopping.append(stop)
        loop.run_until_complete(Command().listen(stop, reload_every_s=0.2))
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield
    _wait(lambda: bool(stopping))
    loop.call_soon_threadsafe(stopping[0].set)
    thread.join(timeout=30)


def test_feishu_events_over_the_long_connection_are_stored_once_and_acknowledged(
    publish: Callable[..., Any],
    make_connector: Callable[..., Connector],
    admin_user: Any,
    settings: Any,
    listener: None,
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with FeishuWsDouble() as feishu:
        connector = make_connector(
            publish(echo_chat_graph()),
            "feishu",
            api_base_url=feishu.base_url,
            config={"app_id": feishu.app_id, "bot_open_id": "", "mode": "long_connection"},
            secrets={"app_secret": feishu.app_secret},
        )
        event = message_event(chat_id="oc_chat", text="长连接你好", app_id=feishu.app_id)
        message_id = feishu.push(event, parts=2)
        _wait(lambda: InboundEvent.objects.filter(connector=connector).exists())
        _wait(lambda: feishu.acks_for(message_id) == [200])
        feishu.push(event)  # delivered again: acknowledged, not stored twice
        _wait(lambda: len(feishu.acks) >= 2)
        stored = InboundEvent.objects.get(connector=connector)
        assert stored.text == "长连接你好"
        assert feishu.protocol_errors == []
        client = Client()
        client.force_login(admin_user)
        _wait(
            lambda: bool(
                (client.get(f"/api/connectors/{connector.pk}/").json()["listener"] or {}).get(
                    "connected"
                )
            )
        )
