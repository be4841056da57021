"""Replies, streaming and delivery errors against the Bot API double: what was sent is
checked on the double's side, as the user would see it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from connectors.base import (
    ConnectorSettings,
    DeliveryError,
    OutboundMessage,
    ReplyTarget,
    SentMessage,
)
from connectors.telegram.adapter import PLACEHOLDER, TelegramAdapter
from connectors.telegram.api import TelegramApiError
from connectors.telegram.text import split_text, utf16_len, utf16_prefix
from tests.connectors.telegram.conftest import BOT_TOKEN, fixture, make_settings
from tests.doubles.telegram_server import NOT_MODIFIED, TelegramDouble

ALICE = 111111111
GROUP = -1001234567890
LONG = (
    "## Step *1*: install `pip install vllm` (see [docs](https://docs.vllm.ai)).\n"
    "Use _MarkdownV2_ chars: . ! - # + = | { } > ~ and emoji 😀👍🏽👨‍👩‍👧 中文。\n\n"
) * 120  # about 17,000 UTF-16 units


def reply(
    text: str, chat_id: int = ALICE, message_id: str = "42", thread_id: str = ""
) -> OutboundMessage:
    return OutboundMessage(
        text=text,
        target=ReplyTarget(chat_id=str(chat_id), message_id=message_id, thread_id=thread_id),
        idempotency_key="run:1",
    )


def sent_texts(double: TelegramDouble) -> list[str]:
    return [call.params["text"] for call in double.calls_to("sendMessage")]


def test_send_is_plain_text_replying_to_the_message(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    double.enqueue(fixture("private_text"))  # the user's message 42 exists in the chat
    text = "Refunds: *within* 30 days. See https://example.com/refunds_(annual)!"
    sent = asyncio.run(adapter.send(tg, reply(text)))
    [call] = double.calls_to("sendMessage")
    assert call.params == {
        "chat_id": ALICE,
        "text": text,
        "reply_parameters": {"message_id": 42, "allow_sending_without_reply": True},
    }
    assert call.content_type == "application/json"
    assert double.messages(ALICE) == [text]
    assert double.chat(ALICE)[-1].reply_to == 42
    assert sent.message_ids == ["43"]
    assert sent.handle["chat_id"] == str(ALICE)


def test_send_replies_even_when_the_message_is_gone(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    asyncio.run(adapter.send(tg, reply("hello", message_id="999")))
    assert double.messages(ALICE) == ["hello"]


def test_long_reply_is_split_exactly(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    sent = asyncio.run(adapter.send(tg, reply(LONG, chat_id=GROUP, message_id="77")))
    parts = split_text(LONG)
    assert len(parts) == 5
    assert sent_texts(double) == parts
    assert double.messages(GROUP) == parts
    assert "".join(double.messages(GROUP)) == LONG
    assert all(utf16_len(part) <= 4096 for part in parts)
    calls = double.calls_to("sendMessage")
    assert "reply_parameters" in calls[0].params
    assert all("reply_parameters" not in call.params for call in calls[1:])
    assert all("parse_mode" not in call.params for call in calls)
    assert sent.message_ids == [str(message.message_id) for message in double.chat(GROUP)]


def test_reply_in_a_forum_topic_stays_in_the_topic(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    asyncio.run(adapter.send(tg, reply("x" * 5000, chat_id=GROUP, thread_id="7")))
    calls = double.calls_to("sendMessage")
    assert [call.params["message_thread_id"] for call in calls] == [7, 7]
    assert {message.thread_id for message in double.chat(GROUP)} == {7}


def test_empty_reply_is_refused_without_a_call(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(adapter.send(tg, reply(" \n ")))
    assert caught.value.permanent
    assert double.calls_to("sendMessage") == []


def test_streaming_shows_exactly_the_final_answer(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    async def stream() -> SentMessage:
        sent = await adapter.stream_start(tg, reply("Step"))
        sent = await adapter.stream_update(tg, sent, "Step 1")
        sent = await adapter.stream_update(tg, sent, "Step 1")  # unchanged: no call at all
        sent = await adapter.stream_update(tg, sent, LONG[:6000])  # beyond one message
        return await adapter.stream_finish(tg, sent, LONG)

    sent = asyncio.run(stream())
    parts = split_text(LONG)
    assert double.messages(ALICE) == parts
    assert "".join(double.messages(ALICE)) == LONG
    edits = [call.params["text"] for call in double.calls_to("editMessageText")]
    assert edits == ["Step 1", utf16_prefix(LONG, 4096), parts[0]]
    assert utf16_len(edits[1]) == 4096
    assert sent_texts(double) == ["Step", *parts[1:]]
    assert sent.message_ids == [str(message.message_id) for message in double.chat(ALICE)]
    first = double.calls_to("sendMessage")[0].params
    assert first["reply_parameters"] == {"message_id": 42, "allow_sending_without_reply": True}


def test_streaming_edit_to_the_same_text_counts_as_done(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    async def stream() -> SentMessage:
        sent = await adapter.stream_start(tg, reply("Same text"))
        # A caller that kept only the ids: the adapter cannot know the text is unchanged.
        forgetful = SentMessage(
            sent.message_ids, {k: v for k, v in sent.handle.items() if k != "shown"}
        )
        updated = await adapter.stream_update(tg, forgetful, "Same text")
        return await adapter.stream_finish(tg, updated, "Same text")

    sent = asyncio.run(stream())
    assert len(double.calls_to("editMessageText")) == 1  # answered "not modified"
    assert double.messages(ALICE) == ["Same text"]
    assert sent.message_ids == ["1"]


def test_stream_start_without_text_shows_a_placeholder(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    async def stream() -> None:
        sent = await adapter.stream_start(tg, reply(""))
        sent = await adapter.stream_update(tg, sent, "  ")  # still nothing to show
        await adapter.stream_finish(tg, sent, "Done.")

    asyncio.run(stream())
    assert sent_texts(double) == [PLACEHOLDER]
    assert double.messages(ALICE) == ["Done."]


def test_stream_finish_sends_anew_when_the_message_was_deleted(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    async def stream() -> SentMessage:
        sent = await adapter.stream_start(tg, reply("Partial"))
        double.inject(
            "400", method="editMessageText", description="Bad Request: message to edit not found"
        )
        sent = await adapter.stream_update(tg, sent, "Partial answer")
        assert sent.handle["gone"] is True
        return await adapter.stream_finish(tg, sent, "Partial answer, complete.")

    sent = asyncio.run(stream())
    assert double.messages(ALICE) == ["Partial", "Partial answer, complete."]
    assert sent.message_ids == ["2"]


def test_typing_sends_a_chat_action(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    asyncio.run(adapter.typing(tg, ReplyTarget(chat_id=str(GROUP), thread_id="7")))
    [call] = double.calls_to("sendChatAction")
    assert call.params == {"chat_id": GROUP, "action": "typing", "message_thread_id": 7}
    assert double.actions() == [(GROUP, "typing")]


# -- errors --------------------------------------------------------------------------------


def test_rate_limit_surfaces_retry_after(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    double.inject("429", retry_after=7)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(adapter.send(tg, reply("hi")))
    assert caught.value.retry_after_s == 7
    assert not caught.value.permanent
    assert "Too Many Requests" in caught.value.message
    assert len(double.calls_to("sendMessage")) == 1  # not retried inside: no duplicates


def test_blocked_by_the_user_is_permanent(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    double.block_chat(ALICE)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(adapter.send(tg, reply("hi")))
    assert caught.value.permanent
    assert "blocked" in caught.value.message


@pytest.mark.parametrize("fault", ["500", "502", "drop"])
def test_server_errors_are_transient(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter, fault: str
) -> None:
    double.inject(fault)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(adapter.send(tg, reply("hi")))
    assert not caught.value.permanent
    assert caught.value.retry_after_s is None
    assert BOT_TOKEN not in caught.value.message


def test_unknown_token_is_permanent_and_not_echoed(
    double: TelegramDouble, settings: Any, adapter: TelegramAdapter
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    wrong = make_settings(double.url, bot_token="5555555555:AAwrongwrongwrongwrongwrongwrong")
    with pytest.raises(TelegramApiError) as caught:
        asyncio.run(adapter.send(wrong, reply("hi")))
    assert caught.value.permanent
    assert caught.value.error_code == 401
    assert "BotFather" in caught.value.message
    assert "AAwrong" not in caught.value.message


def test_network_failure_is_transient_and_hides_the_token(
    settings: Any, adapter: TelegramAdapter
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = make_settings(f"http://127.0.0.1:{port}")
    with pytest.raises(TelegramApiError) as caught:
        asyncio.run(adapter.send(closed, reply("hi")))
    assert not caught.value.permanent
    assert caught.value.error_code is None
    assert BOT_TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None  # the cause names the URL, token included


def test_ssrf_guard_applies_to_the_api_base_url(adapter: TelegramAdapter, settings: Any) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(adapter.send(make_settings("http://127.0.0.1:9"), reply("hi")))
    assert caught.value.permanent
    assert "OUTBOUND_HTTP_ALLOWED_HOSTS" in caught.value.message


def test_group_migration_resends_to_the_supergroup(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    old, new = -4000000001, -1004000000001
    double.migrate_chat(old, new)
    sent = asyncio.run(adapter.send(tg, reply("x" * 5000, chat_id=old, message_id="5")))
    chats = [call.params["chat_id"] for call in double.calls_to("sendMessage")]
    assert chats == [old, new, new]  # refused once, then the new id for every part
    assert "".join(double.messages(new)) == "x" * 5000
    assert double.messages(old) == []
    assert sent.handle["migrated_to_chat_id"] == str(new)
    assert sent.handle["chat_id"] == str(new)


def test_failed_resend_after_migration_still_names_the_new_chat(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    old, new = -4000000001, -1004000000001
    double.migrate_chat(old, new)
    double.block_chat(new)
    with pytest.raises(TelegramApiError) as caught:
        asyncio.run(adapter.send(tg, reply("hi", chat_id=old)))
    assert caught.value.migrate_to_chat_id == new
    assert caught.value.permanent


def test_migration_on_typing_is_followed(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    double.inject("migrate", migrate_to_chat_id=-1004000000001)
    asyncio.run(adapter.typing(tg, ReplyTarget(chat_id="-4000000001")))
    assert double.actions() == [(-1004000000001, "typing")]


def test_failure_after_some_parts_reports_what_was_sent(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    double.inject("500", method="sendMessage", after=2)
    with pytest.raises(TelegramApiError) as caught:
        asyncio.run(adapter.send(tg, reply(LONG)))
    assert not caught.value.permanent
    partial = caught.value.partial
    assert partial is not None
    assert partial.message_ids == ["1", "2"]
    assert double.messages(ALICE) == split_text(LONG)[:2]


def test_edit_errors_other_than_not_modified_are_raised(
    double: TelegramDouble, tg: ConnectorSettings, adapter: TelegramAdapter
) -> None:
    async def stream() -> None:
        sent = await adapter.stream_start(tg, reply("a"))
        double.inject("429", method="editMessageText", retry_after=3)
        await adapter.stream_update(tg, sent, "ab")

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(stream())
    assert caught.value.retry_after_s == 3


def test_not_modified_text_is_the_bot_api_one() -> None:
    # The adapter recognises the error by this phrase (as python-telegram-bot users do).
    assert NOT_MODIFIED.startswith("Bad Request: message is not modified")
