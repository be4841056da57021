"""The Bot API double answers in Telegram's wire format, raw over HTTP (no adapter code)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from telegram import Message, Update, WebhookInfo

from tests.connectors.telegram.conftest import fixture
from tests.doubles.telegram_server import NOT_MODIFIED, TelegramDouble

CHAT = 111111111


def post(
    double: TelegramDouble, method: str, token: str | None = None, **params: Any
) -> httpx.Response:
    return httpx.post(f"{double.url}/bot{token or double.token}/{method}", json=params, timeout=10)


def error(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json()


def test_unknown_token_is_unauthorized(double: TelegramDouble) -> None:
    response = post(double, "getMe", token="1:nope")
    assert response.status_code == 401
    assert response.content == b'{"ok":false,"error_code":401,"description":"Unauthorized"}'


def test_unknown_method_is_not_found(double: TelegramDouble) -> None:
    assert error(post(double, "sendTelepathy")) == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found"},
    )


def test_send_message_answers_a_real_message(double: TelegramDouble) -> None:
    body = post(double, "sendMessage", chat_id=CHAT, text="hi", message_thread_id=3).json()
    assert body["ok"] is True
    message = Message.de_json(body["result"], None)
    assert (message.message_id, message.text, message.chat.id) == (1, "hi", CHAT)
    assert message.from_user is not None
    assert message.from_user.is_bot
    assert message.message_thread_id == 3
    assert (
        post(double, "sendMessage", chat_id=CHAT, text="again").json()["result"]["message_id"] == 2
    )
    assert (
        post(double, "sendMessage", chat_id=-5, text="other chat").json()["result"]["message_id"]
        == 1
    )


def test_form_encoded_calls_are_understood(double: TelegramDouble) -> None:
    double.enqueue(fixture("private_text"))
    form = {
        "chat_id": str(CHAT),
        "text": "from a form",
        "reply_parameters": json.dumps({"message_id": 42}),
    }
    response = httpx.post(f"{double.url}/bot{double.token}/sendmessage", data=form, timeout=10)
    assert response.json()["result"]["reply_to_message"]["message_id"] == 42
    [call] = double.calls_to("sendMessage")
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.params["reply_parameters"] == {"message_id": 42}


def test_text_length_counts_utf16_units(double: TelegramDouble) -> None:
    assert post(double, "sendMessage", chat_id=CHAT, text="😀" * 2048).json()["ok"] is True
    assert error(post(double, "sendMessage", chat_id=CHAT, text="😀" * 2048 + "a")) == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
    )
    for empty in ("", "  \n"):
        status, body = error(post(double, "sendMessage", chat_id=CHAT, text=empty))
        assert (status, body["description"]) == (400, "Bad Request: message text is empty")


def test_reply_to_a_missing_message_needs_permission(double: TelegramDouble) -> None:
    status, body = error(
        post(double, "sendMessage", chat_id=CHAT, text="x", reply_parameters={"message_id": 9})
    )
    assert (status, body["description"]) == (400, "Bad Request: message to be replied not found")
    allowed = {"message_id": 9, "allow_sending_without_reply": True}
    assert post(double, "sendMessage", chat_id=CHAT, text="x", reply_parameters=allowed).json()[
        "ok"
    ]


def test_markdown_v2_needs_escaping(double: TelegramDouble) -> None:
    status, body = error(
        post(double, "sendMessage", chat_id=CHAT, text="Done.", parse_mode="MarkdownV2")
    )
    assert status == 400
    assert body["description"].startswith("Bad Request: can't parse entities")
    assert post(double, "sendMessage", chat_id=CHAT, text="Done.").json()["ok"] is True


def test_edits_change_what_the_user_sees(double: TelegramDouble) -> None:
    post(double, "sendMessage", chat_id=CHAT, text="draft")
    edited = post(double, "editMessageText", chat_id=CHAT, message_id=1, text="final").json()
    assert edited["result"]["text"] == "final"
    assert "edit_date" in edited["result"]
    assert double.messages(CHAT) == ["final"]
    assert error(post(double, "editMessageText", chat_id=CHAT, message_id=1, text="final")) == (
        400,
        {"ok": False, "error_code": 400, "description": NOT_MODIFIED},
    )
    status, body = error(post(double, "editMessageText", chat_id=CHAT, message_id=5, text="x"))
    assert (status, body["description"]) == (400, "Bad Request: message to edit not found")


def test_migrated_chat_answers_with_the_new_id(double: TelegramDouble) -> None:
    double.migrate_chat(-4001, -1004001)
    status, body = error(post(double, "sendMessage", chat_id=-4001, text="x"))
    assert status == 400
    assert body["parameters"] == {"migrate_to_chat_id": -1004001}


@pytest.mark.parametrize(
    ("fault", "status"), [("429", 429), ("500", 500), ("403", 403), ("409", 409)]
)
def test_injected_faults_use_the_envelope(double: TelegramDouble, fault: str, status: int) -> None:
    double.inject(fault, method="getMe", retry_after=4)
    response = post(double, "getMe")
    body = response.json()
    assert response.status_code == status
    assert (body["ok"], body["error_code"]) == (False, status)
    if fault == "429":
        assert body["parameters"] == {"retry_after": 4}
        assert body["description"] == "Too Many Requests: retry after 4"
    assert post(double, "getMe").json()["ok"] is True  # used up


def test_bad_gateway_is_an_html_page(double: TelegramDouble) -> None:
    double.inject("502")
    response = post(double, "getMe")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")


def test_webhook_state_and_info(double: TelegramDouble) -> None:
    set_ = post(
        double,
        "setWebhook",
        url="https://a.example/h",
        secret_token="s",
        allowed_updates=["message"],
    ).json()
    assert set_ == {"ok": True, "result": True, "description": "Webhook was set"}
    double.enqueue(fixture("private_text"))
    info = WebhookInfo.de_json(post(double, "getWebhookInfo").json()["result"], None)
    assert (info.url, info.pending_update_count, info.allowed_updates) == (
        "https://a.example/h",
        1,
        ("message",),
    )
    assert post(double, "deleteWebhook", drop_pending_updates=True).json()["description"] == (
        "Webhook was deleted"
    )
    assert double.pending() == []


def test_get_updates_offsets(double: TelegramDouble) -> None:
    ids = [
        double.enqueue(fixture(name)) for name in ("private_text", "group_mention", "channel_post")
    ]
    result = post(double, "getUpdates").json()["result"]
    assert [Update.de_json(update, None).update_id for update in result] == ids
    assert [u["update_id"] for u in post(double, "getUpdates", limit=1).json()["result"]] == ids[:1]
    assert [u["update_id"] for u in post(double, "getUpdates", offset=-1).json()["result"]] == ids[
        2:
    ]
    assert double.pending() == ids[2:]  # a negative offset forgets the earlier ones


def test_post_update_sends_what_telegram_sends(double: TelegramDouble) -> None:
    update = fixture("group_mention_emoji")
    # Any URL that records requests will do: the double's own getMe records this one.
    url = f"{double.url}/bot{double.token}/getMe"
    assert TelegramDouble.post_update(url, update, secret="s3cret").status_code == 200
    [call] = double.calls
    assert call.params == update
    assert call.headers["x-telegram-bot-api-secret-token"] == "s3cret"
    assert call.content_type == "application/json"
