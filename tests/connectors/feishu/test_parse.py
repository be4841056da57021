"""FeishuAdapter.parse: what each event asks for (protocols.md A.5, A.6)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.base import InboundItem, ReplyTarget
from connectors.feishu.adapter import FeishuAdapter
from connectors.feishu.payloads import EVENT_HANDLERS, IGNORED_EVENTS
from tests.connectors.feishu.conftest import (
    ALICE,
    BOB,
    BOT_OPEN_ID,
    CONNECTOR_ID,
    GROUP_CHAT,
    P2P_CHAT,
    connector_settings,
    fixture,
)
from tests.doubles.feishu_server import mention, message_event


def parse_one(adapter: FeishuAdapter, payload: dict[str, Any], **config: Any) -> InboundItem:
    items = adapter.parse(connector_settings(**config), payload)
    assert len(items) == 1
    return items[0]


def group_text(text: str, mentions: list[dict[str, Any]], **event: Any) -> dict[str, Any]:
    return message_event(
        chat_id=GROUP_CHAT,
        chat_type="group",
        text=text,
        mentions=mentions,
        sender_open_id=ALICE,
        **event,
    )


# --- text messages -----------------------------------------------------------------------------


def test_private_text_message(adapter: FeishuAdapter) -> None:
    item = parse_one(adapter, fixture("im.message.receive_v1.p2p_text"))
    assert item.kind == "message"
    assert item.dedupe_key == "message:om_5ce6d572455d361153b7cb51da133945"
    assert item.event_id == "5e3702a84e847582be8db7fb73283c02"
    assert item.event_type == "im.message.receive_v1"
    assert item.target == ReplyTarget(P2P_CHAT, "om_5ce6d572455d361153b7cb51da133945", "")
    message = item.message
    assert message is not None
    assert message.text == '你好，帮我写一封请假邮件 "quoted" \\ path'
    assert message.chat_type == "private"
    assert message.mentioned is False
    assert message.channel == f"connector:{CONNECTOR_ID}"
    assert message.chat_id == P2P_CHAT
    assert message.user_id == ALICE
    assert message.message_id == "om_5ce6d572455d361153b7cb51da133945"
    assert message.payload == {
        "event_id": "5e3702a84e847582be8db7fb73283c02",
        "chat_id": P2P_CHAT,
        "message_type": "text",
    }


def test_group_message_mentioning_the_bot(adapter: FeishuAdapter) -> None:
    item = parse_one(adapter, fixture("im.message.receive_v1.group_mention_bot"))
    assert item.message is not None
    assert item.message.chat_type == "group"
    assert item.message.mentioned is True
    # The bot's placeholder is gone, the other user's is their name.
    assert item.message.text == "今天的会议纪要在哪里？ @Bob 也看看"
    # Conversation memory in groups is per chat and sender.
    assert (item.message.chat_id, item.message.user_id) == (GROUP_CHAT, ALICE)


def test_someone_named_like_the_bot_is_not_the_bot(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.group_mention_namesake")
    assert payload["event"]["message"]["mentions"][0]["name"] == "Assistant"
    item = parse_one(adapter, payload)
    assert item.message is not None
    assert item.message.mentioned is False
    assert item.message.text == "@Assistant can you check the report?"


def test_mention_detection_needs_the_bot_open_id(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.group_mention_bot")
    item = parse_one(adapter, payload, bot_open_id="")
    assert item.message is not None
    assert item.message.mentioned is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@_user_1 hello", "hello"),
        ("hello @_user_1", "hello"),
        ("hi @_user_1 there", "hi there"),
        ("hi  @_user_1\t@_user_1   there", "hi there"),
        ("@_user_1\nline two\n  indented @_user_1\n@_user_1 three", "line two\n  indented\nthree"),
        ("ask @_user_2 and @_user_1 now", "ask @Bob and now"),
        ("@_user_1@_user_2 hi", "@Bob hi"),
        ("@_user_3 is unknown", "@_user_3 is unknown"),
    ],
)
def test_placeholders_are_stripped_or_named(
    adapter: FeishuAdapter, text: str, expected: str
) -> None:
    mentions = [mention("@_user_1", BOT_OPEN_ID, "Assistant"), mention("@_user_2", BOB, "Bob")]
    item = parse_one(adapter, group_text(text, mentions))
    assert item.message is not None
    assert item.message.text == expected
    assert item.message.mentioned is True


def test_at_all_is_not_the_bot(adapter: FeishuAdapter) -> None:
    all_mention = {"key": "@_all", "id": {"user_id": "all"}, "name": "所有人"}
    item = parse_one(adapter, group_text("@_all 大家好", [all_mention]))
    assert item.message is not None
    assert item.message.mentioned is False
    assert item.message.text == "@all 大家好"
    item = parse_one(adapter, group_text("@_all 大家好", []))  # often without mentions
    assert item.message is not None
    assert (item.message.mentioned, item.message.text) == (False, "@all 大家好")


def test_long_text_is_cut_to_what_a_chat_message_holds(adapter: FeishuAdapter) -> None:
    payload = message_event(chat_id=P2P_CHAT, text="长" * 25_000)
    item = parse_one(adapter, payload)
    assert item.message is not None
    assert item.message.text == "长" * 20_000


def test_thread_ids_reach_target_and_payload(adapter: FeishuAdapter) -> None:
    payload = message_event(
        chat_id=GROUP_CHAT,
        chat_type="group",
        text="@_user_1 follow-up",
        mentions=[mention("@_user_1", BOT_OPEN_ID, "Assistant")],
        message_id="om_child",
        root_id="om_root",
        parent_id="om_parent",
        thread_id="omt_1a2b3c",
    )
    item = parse_one(adapter, payload)
    assert item.target == ReplyTarget(GROUP_CHAT, "om_child", "omt_1a2b3c")
    assert item.message is not None
    assert item.message.payload["root_id"] == "om_root"
    assert item.message.payload["parent_id"] == "om_parent"
    assert item.message.payload["thread_id"] == "omt_1a2b3c"


# --- commands ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["reset", "help", "start"])
def test_commands_in_private_chats(adapter: FeishuAdapter, command: str) -> None:
    item = parse_one(adapter, message_event(chat_id=P2P_CHAT, text=f" /{command} "))
    assert (item.kind, item.command) == ("command", command)
    assert item.message is not None
    assert item.target is not None


def test_command_in_a_group_after_mention_stripping(adapter: FeishuAdapter) -> None:
    mentions = [mention("@_user_1", BOT_OPEN_ID, "Assistant")]
    item = parse_one(adapter, group_text("@_user_1 /reset", mentions))
    assert (item.kind, item.command) == ("command", "reset")


def test_group_command_not_addressing_the_bot_is_a_plain_message(adapter: FeishuAdapter) -> None:
    item = parse_one(adapter, group_text("/reset", []))
    assert (item.kind, item.command) == ("message", "")


@pytest.mark.parametrize("text", ["/reset now", "/resets", "please /help", "/Help"])
def test_only_exact_commands(adapter: FeishuAdapter, text: str) -> None:
    assert parse_one(adapter, message_event(chat_id=P2P_CHAT, text=text)).kind == "message"


# --- rich text, images, files ----------------------------------------------------------------


def test_post_rich_text(adapter: FeishuAdapter) -> None:
    item = parse_one(adapter, fixture("im.message.receive_v1.post"))
    assert item.kind == "message"
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "周报 Weekly\n帮我总结一下 开放平台\n第二段 second paragraph"
    message_id = "om_3c4d5e6f708192a3b4c5d6e7f8091a2b"
    assert item.attachments == [
        {
            "message_type": "image",
            "message_id": message_id,
            "image_key": "img_v2_041b28e3-5680-48c2-9af2-497ace79333g",
        },
        {
            "message_type": "media",
            "message_id": message_id,
            "file_key": "file_v2_0dcdd7d9-fib0-4432-a519-41d25aca542j",
            "image_key": "img_v2_7ea74629-9191-4176-998c-2e603c9c5e8g",
        },
    ]
    assert item.message.payload["attachments"] == item.attachments
    assert item.message.payload["thread_id"] == "omt_d4be107c616"


POST_BODY = {
    "title": "标题",
    "content": [
        [
            {"tag": "text", "text": "see "},
            {"tag": "a", "href": "https://example.com/x", "text": "the doc"},
            {"tag": "at", "user_id": "@_user_2", "user_name": "Bob"},
        ],
        [],
        [{"tag": "a", "href": "https://example.com/bare", "text": ""}],
        [{"tag": "code_block", "language": "PYTHON", "text": "print('hi')"}],
    ],
}
POST_TEXT = "标题\nsee the doc@Bob\n\nhttps://example.com/bare\nprint('hi')"


@pytest.mark.parametrize(
    "content",
    [
        POST_BODY,
        {"zh_cn": POST_BODY},
        {"en_us": POST_BODY},
        {"post": {"zh_cn": POST_BODY}},
    ],
    ids=["bare", "zh_cn", "en_us", "post-wrapper"],
)
def test_post_shapes(adapter: FeishuAdapter, content: dict[str, Any]) -> None:
    payload = message_event(
        chat_id=P2P_CHAT,
        message_type="post",
        content=content,
        mentions=[mention("@_user_2", BOB, "Bob")],
    )
    item = parse_one(adapter, payload)
    assert item.message is not None
    assert item.message.text == POST_TEXT


def test_post_without_title(adapter: FeishuAdapter) -> None:
    content = {"title": "", "content": [[{"tag": "text", "text": "only body"}]]}
    payload = message_event(chat_id=P2P_CHAT, message_type="post", content=content)
    item = parse_one(adapter, payload)
    assert item.message is not None
    assert item.message.text == "only body"


def test_image_message_is_an_attachment(adapter: FeishuAdapter) -> None:
    item = parse_one(adapter, fixture("im.message.receive_v1.image"))
    assert item.kind == "message"
    assert item.message is not None
    assert item.message.text == ""
    assert item.attachments == [
        {
            "message_type": "image",
            "message_id": "om_4d5e6f708192a3b4c5d6e7f8091a2b3c",
            "image_key": "img_v2_041b28e3-5680-48c2-9af2-497ace79333g",
        }
    ]
    assert item.message.payload["message_type"] == "image"


def test_file_message_is_an_attachment_named_in_the_text(adapter: FeishuAdapter) -> None:
    item = parse_one(adapter, fixture("im.message.receive_v1.file"))
    assert item.message is not None
    assert item.message.text == "季度报告 Q3.pdf"
    assert item.attachments == [
        {
            "message_type": "file",
            "message_id": "om_5e6f708192a3b4c5d6e7f8091a2b3c4d",
            "file_key": "file_v3_00ab_1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5g",
            "file_name": "季度报告 Q3.pdf",
        }
    ]


def test_audio_and_media_are_attachments(adapter: FeishuAdapter) -> None:
    audio = message_event(
        chat_id=P2P_CHAT,
        message_type="audio",
        content={"file_key": "file_v2_audio", "duration": 2000},
        message_id="om_audio",
    )
    item = parse_one(adapter, audio)
    assert item.message is not None
    assert item.message.text == ""
    assert item.attachments == [
        {
            "message_type": "audio",
            "message_id": "om_audio",
            "file_key": "file_v2_audio",
            "duration": 2000,
        }
    ]
    media = message_event(
        chat_id=P2P_CHAT,
        message_type="media",
        content={
            "file_key": "file_v2_video",
            "image_key": "img_v2_cover",
            "file_name": "测试视频.mp4",
            "duration": 2000,
        },
        message_id="om_media",
    )
    item = parse_one(adapter, media)
    assert item.message is not None
    assert item.message.text == "测试视频.mp4"
    assert item.attachments[0]["file_key"] == "file_v2_video"
    assert item.attachments[0]["image_key"] == "img_v2_cover"


# --- ignored -------------------------------------------------------------------------------


def test_message_read_is_ignored(adapter: FeishuAdapter) -> None:
    assert "im.message.message_read_v1" in IGNORED_EVENTS
    item = parse_one(adapter, fixture("im.message.message_read_v1"))
    assert item.kind == "ignored"
    assert item.dedupe_key == "event:4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"
    assert item.event_type == "im.message.message_read_v1"
    assert item.reason == "read receipts need no answer"
    assert item.message is None


def test_unknown_event_type_is_ignored_with_a_reason(adapter: FeishuAdapter) -> None:
    payload = fixture("unknown_event")
    assert payload["header"]["event_type"] not in {*IGNORED_EVENTS, *EVENT_HANDLERS}
    item = parse_one(adapter, payload)
    assert item.kind == "ignored"
    assert item.dedupe_key == "event:5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d"
    assert "contact.user.created_v3" in item.reason


def test_bot_added_to_a_group_is_ignored(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.message_read_v1")
    payload["header"]["event_type"] = "im.chat.member.bot.added_v1"
    payload["event"] = {"chat_id": GROUP_CHAT, "operator_id": {"open_id": ALICE}, "name": "群"}
    item = parse_one(adapter, payload)
    assert item.kind == "ignored"
    assert "added" in item.reason


@pytest.mark.parametrize(
    ("message_type", "content"),
    [
        ("sticker", {"file_key": "file_v2_sticker"}),
        ("interactive", {"title": "card", "elements": []}),
        ("share_chat", {"chat_id": "oc_x"}),
        ("merge_forward", {"content": "Merged and Forwarded Message"}),
    ],
)
def test_other_message_types_are_ignored(
    adapter: FeishuAdapter, message_type: str, content: dict[str, Any]
) -> None:
    payload = message_event(
        chat_id=P2P_CHAT, message_type=message_type, content=content, message_id="om_other"
    )
    item = parse_one(adapter, payload)
    assert (item.kind, item.dedupe_key) == ("ignored", "message:om_other")
    assert message_type in item.reason


def test_messages_from_apps_are_ignored(adapter: FeishuAdapter) -> None:
    payload = message_event(chat_id=P2P_CHAT, text="hi", sender_type="app")
    item = parse_one(adapter, payload)
    assert item.kind == "ignored"
    assert "app" in item.reason


@pytest.mark.parametrize(
    ("message_type", "content", "reason"),
    [
        ("text", "not json", "not JSON"),
        ("text", "[1, 2]", "not a JSON object"),
        ("text", '{"txt": "typo"}', "without text"),
        ("image", "{}", "without image_key"),
        ("file", '{"file_name": "x.pdf"}', "without file_key"),
        ("post", "{}", "post message without"),
    ],
)
def test_unusable_content_is_ignored_not_raised(
    adapter: FeishuAdapter, message_type: str, content: str, reason: str
) -> None:
    payload = message_event(chat_id=P2P_CHAT, message_type=message_type, message_id="om_bad")
    payload["event"]["message"]["content"] = content
    item = parse_one(adapter, payload)
    assert (item.kind, item.dedupe_key) == ("ignored", "message:om_bad")
    assert reason in item.reason


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p["event"].pop("message"),
        lambda p: p["event"]["message"].pop("chat_id"),
        lambda p: p["event"]["message"].update(mentions="nope"),
        lambda p: p.update(event=None),
    ],
)
def test_malformed_message_event_is_ignored(adapter: FeishuAdapter, mangle: Any) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    mangle(payload)
    item = parse_one(adapter, payload)
    assert item.kind == "ignored"
    assert item.dedupe_key == "event:5e3702a84e847582be8db7fb73283c02"
    assert "malformed" in item.reason


def test_malformed_envelope_and_v1_events_are_ignored(adapter: FeishuAdapter) -> None:
    no_header = {"schema": "2.0", "event": {}}
    item = parse_one(adapter, no_header)
    assert item.kind == "ignored"
    assert item.dedupe_key.startswith("payload:")
    assert parse_one(adapter, no_header).dedupe_key == item.dedupe_key  # stable
    v1: dict[str, Any] = {"uuid": "41d6", "token": "t", "ts": "1.0", "type": "event_callback"}
    v1["event"] = {"type": "message", "text": "hi"}
    item = parse_one(adapter, v1)
    assert (item.kind, item.dedupe_key) == ("ignored", "event:41d6")
    assert "2.0" in item.reason


# --- deduplication -----------------------------------------------------------------------------


def test_two_deliveries_of_one_message_share_the_dedupe_key(adapter: FeishuAdapter) -> None:
    first = fixture("im.message.receive_v1.p2p_text")
    again = json.loads(json.dumps(first))
    again["header"]["event_id"] = "0f0e0d0c0b0a09080706050403020100"  # Feishu's redelivery
    one, two = parse_one(adapter, first), parse_one(adapter, again)
    assert one.event_id != two.event_id
    assert one.dedupe_key == two.dedupe_key == "message:om_5ce6d572455d361153b7cb51da133945"
    other = message_event(chat_id=P2P_CHAT, text="another", event_id=one.event_id)
    assert parse_one(adapter, other).dedupe_key != one.dedupe_key
