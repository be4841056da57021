"""FeishuAdapter.send and the Open API plumbing (tokens, errors), against the Feishu double:
every assertion is on what the double recorded or shows the user."""

from __future__ import annotations

import asyncio
import json

import pytest
from pytest_django.fixtures import Settings

from connectors.base import DeliveryError, OutboundMessage, ReplyTarget, SentMessage
from connectors.feishu.adapter import FeishuAdapter
from tests.conftest import free_port
from tests.connectors.feishu.conftest import (
    ALICE,
    GROUP_CHAT,
    P2P_CHAT,
    connector_settings,
    double_settings,
)
from tests.doubles.feishu_server import FeishuDouble

SPECIAL = (
    'He said "hi" \\ back\\slash \\n not-a-newline\nreal newline\ttab\r\n'
    "中文：你好，世界！ emoji 🚀👍🏽‍ 日本語 한국어\n"
    "**bold** _it_ `code` [link](https://example.com?a=1&b=2) <b>tag</b> </script>\n"
    "```python\nprint('x')\n```\n"
    '{"json": [1, 2]} \' \u2028 \u00a0 &amp; %s {{ curly }} \\u4e2d'
)


def reply(
    text: str, message_id: str, key: str = "run:1:0", chat_id: str = P2P_CHAT
) -> OutboundMessage:
    return OutboundMessage(text=text, target=ReplyTarget(chat_id, message_id), idempotency_key=key)


def send(feishu: FeishuDouble, message: OutboundMessage, **overrides: object) -> SentMessage:
    return asyncio.run(FeishuAdapter().send(double_settings(feishu, **overrides), message))


def failure(feishu: FeishuDouble, message: OutboundMessage) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        send(feishu, message)
    return caught.value


def question(feishu: FeishuDouble, text: str = "question", chat_id: str = P2P_CHAT) -> str:
    """A user's message in ``chat_id`` (the double knows it): its id."""
    payload = feishu.user_message(chat_id, text, sender_open_id=ALICE)
    message_id: str = payload["event"]["message"]["message_id"]
    return message_id


# --- replies -----------------------------------------------------------------------------------


def test_reply_is_a_text_message_answering_the_question(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    sent = send(feishu, reply("the answer", asked))
    [request] = feishu.requests_to("reply")
    assert request.path == f"/open-apis/im/v1/messages/{asked}/reply"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json["msg_type"] == "text"
    assert json.loads(request.json["content"]) == {"text": "the answer"}
    assert request.json["reply_in_thread"] is False
    assert 0 < len(request.json["uuid"]) <= 50
    [shown] = feishu.bot_messages(P2P_CHAT)
    assert shown.text == "the answer"
    assert shown.parent_id == asked
    assert sent.message_ids == [shown.message_id]


def test_reply_in_thread_when_configured(feishu: FeishuDouble) -> None:
    asked = question(feishu, chat_id=GROUP_CHAT)
    send(feishu, reply("threaded", asked, chat_id=GROUP_CHAT), reply_in_thread=True)
    assert feishu.requests_to("reply")[0].json["reply_in_thread"] is True
    [shown] = feishu.bot_messages(GROUP_CHAT)
    assert shown.thread_id.startswith("omt_")


def test_without_a_message_to_answer_it_sends_to_the_chat(feishu: FeishuDouble) -> None:
    feishu.add_chat(GROUP_CHAT)
    message = OutboundMessage("hello group", ReplyTarget(GROUP_CHAT), "notice:1")
    sent = send(feishu, message)
    [request] = feishu.requests_to("create")
    assert request.query == {"receive_id_type": "chat_id"}
    assert request.json["receive_id"] == GROUP_CHAT
    assert json.loads(request.json["content"]) == {"text": "hello group"}
    assert feishu.bot_texts(GROUP_CHAT) == ["hello group"]
    assert sent.message_ids == [feishu.bot_messages(GROUP_CHAT)[0].message_id]


def test_special_characters_arrive_intact(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    send(feishu, reply(SPECIAL, asked))
    assert feishu.bot_texts(P2P_CHAT) == [SPECIAL]


# --- idempotency and splitting ---------------------------------------------------------------


def test_same_idempotency_key_makes_one_message(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    first = send(feishu, reply("once", asked, key="run:7:0"))
    again = send(feishu, reply("once", asked, key="run:7:0"))  # a retried delivery
    assert first.message_ids == again.message_ids
    assert feishu.bot_texts(P2P_CHAT) == ["once"]
    uuids = [r.json["uuid"] for r in feishu.requests_to("reply")]
    assert len(uuids) == 2
    assert uuids[0] == uuids[1]
    send(feishu, reply("twice", asked, key="run:7:1"))
    assert feishu.bot_texts(P2P_CHAT) == ["once", "twice"]


@pytest.mark.parametrize(
    ("unit", "count"),
    [("word ", 40_000), ("长文本", 20_000), ('"\\', 40_000), ("🚀\n", 30_000)],
    ids=["ascii", "cjk", "escapes", "emoji"],
)
def test_long_text_is_split_into_messages_that_fit(
    feishu: FeishuDouble, unit: str, count: int
) -> None:
    asked = question(feishu)
    text = unit * count
    sent = send(feishu, reply(text, asked))
    texts = feishu.bot_texts(P2P_CHAT)
    assert len(texts) >= 2
    assert "".join(texts) == text  # nothing lost, nothing added
    assert sent.message_ids == [m.message_id for m in feishu.bot_messages(P2P_CHAT)]
    requests = feishu.requests_to("reply")
    assert len({r.json["uuid"] for r in requests}) == len(requests) == len(texts)
    for request in requests:  # each within the 150 KB text limit, as the double checks
        assert len(request.json["content"].encode()) <= 150 * 1024
    # Retrying the whole delivery repeats the same uuids: no new message.
    send(feishu, reply(text, asked))
    assert len(feishu.bot_texts(P2P_CHAT)) == len(texts)


def test_split_prefers_line_breaks(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    line = "x" * 999 + "\n"
    text = line * 200  # 200,000 characters
    send(feishu, reply(text, asked))
    texts = feishu.bot_texts(P2P_CHAT)
    assert len(texts) == 2
    assert all(part.endswith("\n") for part in texts)


# --- tenant token ------------------------------------------------------------------------------


def test_token_is_fetched_once_and_cached(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    send(feishu, reply("one", asked, key="a"))
    send(feishu, reply("two", asked, key="b"))
    assert feishu.token_requests == 1
    [token_request] = feishu.requests_to("token")
    assert token_request.json == {"app_id": feishu.app_id, "app_secret": feishu.app_secret}
    tokens = {r.headers["Authorization"] for r in feishu.requests_to("reply")}
    assert len(tokens) == 1
    assert tokens.pop().startswith("Bearer t-")


def test_token_cache_is_per_app(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    send(feishu, reply("one", asked, key="a"))
    with pytest.raises(DeliveryError):  # another app id: its own token, refused by the double
        send(feishu, reply("two", asked, key="b"), app_id="cli_0000000000000002")
    assert feishu.token_requests == 2


def test_expired_token_is_refreshed_once_and_the_call_retried_once(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    send(feishu, reply("warm", asked, key="a"))
    old = feishu.requests_to("reply")[0].headers["Authorization"]
    feishu.inject("token_expired")
    send(feishu, reply("after refresh", asked, key="b"))
    assert feishu.token_requests == 2
    replies = feishu.requests_to("reply")
    assert len(replies) == 3  # warm, refused, retried
    assert replies[1].headers["Authorization"] == old
    assert replies[2].headers["Authorization"] != old
    assert replies[1].json["uuid"] == replies[2].json["uuid"]
    assert feishu.bot_texts(P2P_CHAT) == ["warm", "after refresh"]
    # The new token is cached in turn.
    send(feishu, reply("third", asked, key="c"))
    assert feishu.token_requests == 2


def test_a_new_token_refused_again_is_an_error_not_a_loop(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    feishu.inject("code", code=99991663, msg="Invalid access token", count=5)
    error = failure(feishu, reply("never", asked))
    assert not error.permanent
    assert "99991663" in error.message
    assert feishu.token_requests == 2
    assert len(feishu.requests_to("reply")) == 2
    assert feishu.bot_texts(P2P_CHAT) == []


def test_revoked_tokens_are_replaced(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    send(feishu, reply("one", asked, key="a"))
    feishu.revoke_tokens()
    send(feishu, reply("two", asked, key="b"))
    assert feishu.token_requests == 2
    assert feishu.bot_texts(P2P_CHAT) == ["one", "two"]


def test_wrong_app_secret_is_permanent(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    with pytest.raises(DeliveryError) as caught:
        send(feishu, reply("x", asked), app_secret="wrong")
    assert caught.value.permanent
    assert "10014" in caught.value.message
    assert "App Secret" in caught.value.message
    assert feishu.requests_to("reply") == []


# --- failures ----------------------------------------------------------------------------------


def test_rate_limit_429_gives_the_reset_seconds(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    feishu.inject("429", reset_s=7)
    error = failure(feishu, reply("x", asked))
    assert not error.permanent
    assert error.retry_after_s == 7
    assert "99991400" in error.message
    assert feishu.bot_texts(P2P_CHAT) == []


def test_rate_limit_on_the_token_endpoint(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    feishu.inject("429", reset_s=3, on="token")
    error = failure(feishu, reply("x", asked))
    assert (error.permanent, error.retry_after_s) == (False, 3)


@pytest.mark.parametrize("code", [230020, 99991400])
def test_rate_limit_codes_in_a_400_are_retried(feishu: FeishuDouble, code: int) -> None:
    asked = question(feishu)
    feishu.inject("code", code=code, msg="This operation triggers the frequency limit.")
    error = failure(feishu, reply("x", asked))
    assert not error.permanent


@pytest.mark.parametrize("fault", ["500", "503"])
def test_server_errors_are_transient(feishu: FeishuDouble, fault: str) -> None:
    asked = question(feishu)
    feishu.inject(fault)
    error = failure(feishu, reply("x", asked))
    assert not error.permanent
    assert error.retry_after_s is None
    # The retry (same key) then makes exactly one message.
    send(feishu, reply("x", asked))
    assert feishu.bot_texts(P2P_CHAT) == ["x"]


def test_network_errors_are_transient(feishu: FeishuDouble) -> None:
    settings = connector_settings(api_base_url=f"http://127.0.0.1:{free_port()}")
    message = reply("x", "om_x")
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(FeishuAdapter().send(settings, message))
    assert not caught.value.permanent


def test_outbound_guard_refusal_is_permanent(feishu: FeishuDouble, settings: Settings) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []  # the double is on loopback: refused
    error = failure(feishu, reply("x", "om_x"))
    assert error.permanent
    assert feishu.requests == []


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (230002, "add the bot to the group"),
        (230013, "availability"),
        (99991672, "im:message:send_as_bot"),
        (230011, "recalled"),
        (230006, "Bot"),
        (123456, "code 123456"),
    ],
)
def test_permanent_codes_say_what_to_fix(feishu: FeishuDouble, code: int, advice: str) -> None:
    asked = question(feishu)
    feishu.inject("code", code=code, msg="refused by the double")
    error = failure(feishu, reply("x", asked))
    assert error.permanent
    assert advice in error.message
    assert str(code) in error.message
    assert "log id" in error.message  # from X-Tt-Logid, for Feishu support


def test_code_checked_even_with_http_200(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    feishu.inject("code", code=230002, msg="The bot can not be outside the group.", status=200)
    assert failure(feishu, reply("x", asked)).permanent


def test_recalled_question_is_permanent(feishu: FeishuDouble) -> None:
    asked = question(feishu)
    feishu.recall(asked)
    error = failure(feishu, reply("x", asked))
    assert error.permanent
    assert "230011" in error.message


def test_bot_not_in_the_chat(feishu: FeishuDouble) -> None:
    message = OutboundMessage("hello", ReplyTarget("oc_not_a_member"), "k")
    error = failure(feishu, message)
    assert error.permanent
    assert "add the bot to the group" in error.message


# --- the rest of the adapter ---------------------------------------------------------------


def test_bot_identity(feishu: FeishuDouble) -> None:
    bot = asyncio.run(FeishuAdapter().bot_identity(double_settings(feishu)))
    assert bot["open_id"] == feishu.bot_open_id
    assert bot["app_name"] == feishu.bot_name
    [request] = feishu.requests_to("bot_info")
    assert request.method == "GET"
    assert request.headers["Authorization"].startswith("Bearer t-")


def test_typing_sends_nothing(feishu: FeishuDouble) -> None:
    asyncio.run(FeishuAdapter().typing(double_settings(feishu), ReplyTarget(P2P_CHAT, "om_x")))
    assert feishu.requests == []


def test_callback_hint_names_place_event_and_scopes() -> None:
    hint = FeishuAdapter().callback_hint(connector_settings(), "https://x.example/c/1/events")
    for needle in (
        "https://x.example/c/1/events",
        "Events and callbacks",
        "request URL",
        "im.message.receive_v1",
        "im:message.p2p_msg:readonly",
        "im:message.group_at_msg:readonly",
        "im:message:send_as_bot",
        "open.feishu.cn",
    ):
        assert needle in hint
    lark = connector_settings(api_base_url="https://open.larksuite.com")
    assert "open.larksuite.com" in FeishuAdapter().callback_hint(lark, "https://x")


def test_implements_the_adapter_contract() -> None:
    from connectors.base import Adapter
    from connectors.registry import adapter_for

    adapter: Adapter = FeishuAdapter()  # checked by mypy against the protocol
    assert isinstance(adapter_for("feishu"), FeishuAdapter)
    assert adapter.config_model.model_json_schema()["required"] == ["app_id", "bot_open_id"]
    assert adapter.secrets_model.model_json_schema()["required"] == ["app_secret"]


def test_class_attributes() -> None:
    assert FeishuAdapter.platform == "feishu"
    assert FeishuAdapter.label == "Feishu / Lark"
    assert FeishuAdapter.default_api_base_url == "https://open.feishu.cn"
    assert FeishuAdapter.edit_interval_s == 0.2
    # max_message_chars of the costliest common characters fit one 30 KB card.
    from connectors.feishu.adapter import card_content

    worst = card_content("🚀" * FeishuAdapter.max_message_chars)
    assert len(json.dumps(worst, ensure_ascii=False).encode()) < 30 * 1024


@pytest.mark.parametrize(
    "config",
    [
        {"app_id": "app_123", "bot_open_id": ""},
        {"app_id": "cli_a1", "bot_open_id": "Assistant"},
        {"app_id": "cli_a1", "bot_open_id": "", "max_age_s": 10},
        {"app_id": "cli_a1", "bot_open_id": "", "max_age_s": 90_000},
        {"app_id": "cli_a1", "bot_open_id": "", "unknown": 1},
    ],
)
def test_config_is_validated(config: dict[str, object]) -> None:
    from pydantic import ValidationError

    from connectors.feishu.adapter import FeishuConfig

    with pytest.raises(ValidationError):
        FeishuConfig.model_validate(config)


def test_config_and_secrets_defaults() -> None:
    from connectors.feishu.adapter import FeishuConfig, FeishuSecrets

    config = FeishuConfig.model_validate({"app_id": "cli_a1", "bot_open_id": "ou_b0t"})
    assert (config.max_age_s, config.reply_in_thread) == (300, False)
    secrets = FeishuSecrets.model_validate({"app_secret": "s"})
    assert (secrets.verification_token, secrets.encrypt_key) == ("", "")


def test_at_tags_in_an_answer_notify_nobody() -> None:
    from connectors.feishu.adapter import card_content, defuse_mentions, text_content

    answer = 'Sure <at user_id="all">everyone</at> and <AT id=ou_1></at>; a < b stays'
    defused = defuse_mentions(answer)
    assert "<at" not in defused.lower().replace("<\u200bat", "")
    assert defused.replace("\u200b", "") == answer  # shows as written
    for content in (card_content(answer), text_content(answer)):
        assert '<at user_id=\\"all\\">' not in content
        assert "<AT id" not in content
