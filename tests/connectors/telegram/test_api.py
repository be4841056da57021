"""Webhook management and getUpdates against the Bot API double."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from assistant_site import http
from connectors.base import ConnectorSettings, InboundRequest
from connectors.telegram import api
from connectors.telegram.adapter import TelegramAdapter
from tests.connectors.telegram.conftest import (
    BOT_ID,
    BOT_USERNAME,
    WEBHOOK_SECRET,
    fixture,
    make_settings,
)
from tests.doubles.telegram_server import TelegramDouble

HOOK = "https://assistant.example.com/connectors/7/telegram/"


def test_get_me_names_the_bot(double: TelegramDouble, tg: ConnectorSettings) -> None:
    me = asyncio.run(api.get_me(tg))
    assert (me.id, me.username, me.is_bot) == (BOT_ID, BOT_USERNAME, True)
    assert me.can_read_all_group_messages is False
    assert [call.method for call in double.calls] == ["getMe"]


def test_set_webhook_sends_the_secret_and_allowed_updates(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    assert asyncio.run(api.set_webhook(tg, HOOK)) is True
    [call] = double.calls_to("setWebhook")
    assert call.params == {
        "url": HOOK,
        "secret_token": WEBHOOK_SECRET,
        "allowed_updates": ["message"],
        "drop_pending_updates": False,
    }
    assert double.webhook() == {
        "url": HOOK,
        "secret_token": WEBHOOK_SECRET,
        "allowed_updates": ["message"],
    }
    info = asyncio.run(api.get_webhook_info(tg))
    assert info.url == HOOK
    assert info.allowed_updates == ["message"]
    assert info.pending_update_count == 0


def test_set_webhook_needs_a_secret(double: TelegramDouble, settings: Any) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with pytest.raises(api.TelegramApiError) as caught:
        asyncio.run(api.set_webhook(make_settings(double.url, webhook_secret=""), HOOK))
    assert caught.value.permanent
    assert "webhook secret" in caught.value.message
    assert double.calls == []


def test_set_webhook_refused_by_telegram_is_permanent(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    with pytest.raises(api.TelegramApiError) as caught:
        asyncio.run(api.set_webhook(tg, "http://assistant.example.com/hook"))
    assert caught.value.permanent
    assert "HTTPS URL must be provided" in caught.value.message
    assert double.webhook()["url"] == ""


def test_delete_webhook_clears_it(double: TelegramDouble, tg: ConnectorSettings) -> None:
    asyncio.run(api.set_webhook(tg, HOOK))
    assert asyncio.run(api.delete_webhook(tg)) is True
    assert double.webhook()["url"] == ""
    assert asyncio.run(api.get_webhook_info(tg)).url == ""
    assert double.calls_to("deleteWebhook")[0].params == {"drop_pending_updates": False}


def test_webhook_set_by_the_api_delivers_to_verify(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    """The secret set with setWebhook is the one verify() accepts."""
    asyncio.run(api.set_webhook(tg, HOOK))
    body, headers = TelegramDouble.webhook_request(
        fixture("group_mention"), double.webhook()["secret_token"]
    )
    verified = TelegramAdapter().verify(tg, InboundRequest(body=body, headers=headers))
    assert verified.payload["update_id"] == 725000003


def test_get_updates_confirms_by_offset(double: TelegramDouble, tg: ConnectorSettings) -> None:
    ids = [double.enqueue(fixture(name)) for name in ("private_text", "group_mention")]
    first = asyncio.run(api.get_updates(tg, None, 0))
    assert [update["update_id"] for update in first] == ids
    assert double.pending() == ids  # fetched is not confirmed
    again = asyncio.run(api.get_updates(tg, ids[0] + 1, 0))
    assert [update["update_id"] for update in again] == ids[1:]
    assert asyncio.run(api.get_updates(tg, ids[1] + 1, 0)) == []
    assert double.pending() == []
    assert double.calls_to("getUpdates")[0].params == {
        "timeout": 0,
        "limit": 100,
        "allowed_updates": ["message"],
    }


def test_long_poll_returns_when_an_update_arrives(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    timer = threading.Timer(0.3, double.enqueue, args=(fixture("private_text"),))
    timer.start()
    started = time.monotonic()
    updates = asyncio.run(api.get_updates(tg, None, 5))
    elapsed = time.monotonic() - started
    timer.join()
    assert [update["update_id"] for update in updates] == [725000001]
    assert 0.2 < elapsed < 3


def test_quiet_long_poll_ends_empty_within_its_timeout(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    started = time.monotonic()
    assert asyncio.run(api.get_updates(tg, None, 1)) == []
    assert 0.9 < time.monotonic() - started < 3


def test_http_deadline_exceeds_the_long_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, float]] = []

    async def spy(method: str, url: str, **options: Any) -> http.HttpResponse:
        seen.append((url, options["timeout_s"]))
        return http.HttpResponse(200, {}, b'{"ok":true,"result":[]}', url)

    monkeypatch.setattr(http, "request", spy)
    assert asyncio.run(api.get_updates(make_settings(), None, 50)) == []
    [(url, timeout_s)] = seen
    assert url.endswith("/getUpdates")
    assert timeout_s > 50


def test_get_updates_while_a_webhook_is_set_is_a_conflict(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    asyncio.run(api.set_webhook(tg, HOOK))
    with pytest.raises(api.PollingConflict) as caught:
        asyncio.run(api.get_updates(tg, None, 0))
    assert caught.value.reason == "webhook_active"
    assert "deleteWebhook" in caught.value.message
    assert not caught.value.permanent


def test_second_poller_ends_the_first_with_a_conflict(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    async def both() -> list[Any]:
        first = asyncio.create_task(api.get_updates(tg, None, 5))
        await asyncio.sleep(0.3)
        second = asyncio.create_task(api.get_updates(tg, None, 1))
        return list(await asyncio.gather(first, second, return_exceptions=True))

    first, second = asyncio.run(both())
    assert isinstance(first, api.PollingConflict)
    assert first.reason == "other_poller"
    assert "only one poller" in first.message
    assert second == []


def test_unknown_method_is_permanent(double: TelegramDouble, tg: ConnectorSettings) -> None:
    with pytest.raises(api.TelegramApiError) as caught:
        asyncio.run(api.call(tg, "sendTelepathy", {}))
    assert caught.value.error_code == 404
    assert caught.value.permanent
    assert "API base URL" in caught.value.message
