"""Updates into items: who is addressed, what text the workflow sees, commands, attachments,
and what is ignored (with a reason, never an exception)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from connectors.base import InboundItem, ReplyTarget
from connectors.telegram.adapter import TelegramAdapter
from tests.connectors.telegram.conftest import BOT_ID, fixture, make_settings

BOT_USER = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": "Studio Helper",
    "username": "studio_helper_bot",
}


def parse(update: dict[str, Any], **settings: Any) -> InboundItem:
    items = TelegramAdapter().parse(make_settings(**settings), update)
    assert len(items) == 1
    item = items[0]
    assert item.dedupe_key == f"update:{update['update_id']}"
    assert item.event_id == str(update["update_id"])
    return item


def text_update(text: str, entities: list[dict[str, Any]], **message: Any) -> dict[str, Any]:
    update = fixture("group_not_addressed")
    update["message"].update(text=text, entities=entities, **message)
    return update


def u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def mention(text: str, name: str = "@studio_helper_bot") -> dict[str, Any]:
    start = text.index(name)
    return {"type": "mention", "offset": u16(text[:start]), "length": u16(name)}


def test_private_text_is_a_message_for_the_workflow() -> None:
    item = parse(fixture("private_text"))
    assert item.kind == "message"
    assert item.event_type == "message"
    message = item.message
    assert message is not None
    assert message.text == "What is our refund policy for annual plans?"
    assert message.chat_type == "private"
    assert message.mentioned is False
    assert message.channel == "connector:7"
    assert message.chat_id == "111111111"
    assert message.user_id == "111111111"
    assert message.user_name == "Alice Liddell"
    assert message.message_id == "42"
    assert message.payload == {"update_id": 725000001, "chat_type": "private"}
    assert item.target == ReplyTarget(chat_id="111111111", message_id="42", thread_id="")
    assert item.attachments == []


def test_start_with_a_payload_is_a_connector_command() -> None:
    item = parse(fixture("private_start"))
    assert item.kind == "command"
    assert item.command == "start"
    assert item.message is not None
    assert item.message.text == "/start ref_42"
    assert item.message.payload["command_args"] == "ref_42"
    assert item.target is not None
    assert item.target.message_id == "43"


@pytest.mark.parametrize("command", ["help", "reset", "start"])
def test_connector_commands_addressed_to_the_bot(command: str) -> None:
    text = f"/{command}@Studio_Helper_Bot"
    item = parse(text_update(text, [{"type": "bot_command", "offset": 0, "length": len(text)}]))
    assert (item.kind, item.command) == ("command", command)
    assert item.message is not None
    assert item.message.text == f"/{command}"
    assert item.message.mentioned is True


def test_group_mention_is_stripped_and_flagged() -> None:
    item = parse(fixture("group_mention"))
    assert item.kind == "message"
    message = item.message
    assert message is not None
    assert message.chat_type == "group"
    assert message.mentioned is True
    assert message.text == "what is vLLM?"
    assert message.chat_id == "-1001234567890"
    assert message.user_name == "Bob"
    assert message.payload == {"update_id": 725000003, "chat_type": "supergroup"}


def test_group_command_for_the_workflow_keeps_the_command_without_the_bot_name() -> None:
    item = parse(fixture("group_command"))
    assert item.kind == "message"  # /ask is not the connector's: the trigger's prefix takes it
    assert item.command == ""
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "/ask how do I rotate my API key?"


def test_mention_after_emoji_uses_utf16_offsets() -> None:
    update = fixture("group_mention_emoji")
    text = update["message"]["text"]
    # The entity offset counts UTF-16 units: Python indices are two smaller here.
    assert update["message"]["entities"][0]["offset"] == text.index("@") + 2
    item = parse(update)
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "👋🏽 hi summarise 📄 the #q3 report"


def test_mention_after_emoji_with_wrong_python_offsets_would_not_match() -> None:
    update = fixture("group_mention_emoji")
    update["message"]["entities"][0]["offset"] -= 2  # what code-point counting would give
    item = parse(update)
    assert item.message is not None
    assert item.message.mentioned is False


def test_reply_to_the_bot_addresses_it() -> None:
    item = parse(fixture("group_reply_to_bot"))
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "and for monthly plans?"


def test_reply_to_the_bot_is_recognised_by_username_alone() -> None:
    update = fixture("group_reply_to_bot")
    update["message"]["reply_to_message"]["from"]["id"] = 1  # only the username matches
    item = parse(update, bot_id=None)
    assert item.message is not None
    assert item.message.mentioned is True


def test_reply_to_someone_else_does_not_address_the_bot() -> None:
    update = fixture("group_reply_to_bot")
    update["message"]["reply_to_message"]["from"] = {"id": 3, "is_bot": False, "first_name": "C"}
    item = parse(update)
    assert item.message is not None
    assert item.message.mentioned is False


def test_group_message_not_addressing_the_bot_goes_to_the_trigger_unmentioned() -> None:
    item = parse(fixture("group_not_addressed"))
    assert item.kind == "message"
    assert item.message is not None
    assert item.message.mentioned is False
    assert item.message.text == "lunch at noon, anyone?"


def test_mention_of_another_user_is_kept() -> None:
    text = "@alice can you ask @studio_helper_bot?"
    update = text_update(text, [mention(text, "@alice"), mention(text)])
    item = parse(update)
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "@alice can you ask?"


def test_mention_is_case_insensitive_and_keeps_line_breaks() -> None:
    text = "@Studio_Helper_BOT:   fix this\n\n    def f():\n        return 1"
    item = parse(text_update(text, [mention(text, "@Studio_Helper_BOT")]))
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "fix this\n\n    def f():\n        return 1"


def test_text_mention_of_the_bot_id() -> None:
    text = "Studio Helper, what changed?"
    entity = {"type": "text_mention", "offset": 0, "length": 13, "user": BOT_USER}
    item = parse(text_update(text, [entity]))
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "what changed?"


def test_bot_id_defaults_to_the_one_in_the_token() -> None:
    text = "Studio Helper, what changed?"
    entity = {"type": "text_mention", "offset": 0, "length": 13, "user": BOT_USER}
    item = parse(text_update(text, [entity]), bot_id=None)
    assert item.message is not None
    assert item.message.mentioned is True
    other = parse(
        text_update(text, [entity]), bot_id=None, bot_token="42:AAHdqTcvCH1vGWJxfSeofSAs0K5P"
    )
    assert other.message is not None
    assert other.message.mentioned is False


def test_bare_command_in_a_group_counts_as_addressed() -> None:
    text = "/ask why?"
    item = parse(text_update(text, [{"type": "bot_command", "offset": 0, "length": 4}]))
    assert item.kind == "message"
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "/ask why?"


def test_command_for_another_bot_is_ignored() -> None:
    text = "/start@other_bot"
    item = parse(text_update(text, [{"type": "bot_command", "offset": 0, "length": len(text)}]))
    assert item.kind == "ignored"
    assert "@other_bot" in item.reason


def test_command_later_in_the_text_is_not_a_command() -> None:
    text = "@studio_helper_bot what is /help for?"
    entities = [mention(text), {"type": "bot_command", "offset": 27, "length": 5}]
    item = parse(text_update(text, entities))
    assert item.kind == "message"
    assert item.message is not None
    assert item.message.text == "what is /help for?"


def test_photo_with_caption_is_an_attachment_and_the_caption_the_text() -> None:
    item = parse(fixture("photo_caption"))
    assert item.kind == "message"
    assert item.message is not None
    assert item.message.text == "What does this error mean?"
    assert item.attachments == [
        {
            "kind": "photo",
            "file_id": "AgACAgIAAxkBAAIBLmVnZ3Rlc3RfcGhvdG9fbGFyZ2U",
            "file_unique_id": "AQADlarge",
            "file_name": "",
            "mime_type": "image/jpeg",
            "file_size": 84211,
        }
    ]


def test_document_caption_mention_is_stripped() -> None:
    item = parse(fixture("group_document_caption"))
    assert item.message is not None
    assert item.message.mentioned is True
    assert item.message.text == "summarise this"
    assert item.attachments == [
        {
            "kind": "document",
            "file_id": "BQACAgIAAxkBAAIBMmVnZ3Rlc3RfZG9jdW1lbnQ",
            "file_unique_id": "AgADdoc",
            "file_name": "q3-report.pdf",
            "mime_type": "application/pdf",
            "file_size": 482113,
        }
    ]


@pytest.mark.parametrize(
    ("field", "value", "kind", "mime"),
    [
        ("voice", {"duration": 3, "mime_type": "audio/ogg"}, "voice", "audio/ogg"),
        (
            "video",
            {"width": 640, "height": 360, "duration": 5, "mime_type": "video/mp4"},
            "video",
            "video/mp4",
        ),
        (
            "sticker",
            {
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            },
            "sticker",
            "image/webp",
        ),
    ],
)
def test_media_without_caption_is_a_message_with_an_attachment(
    field: str, value: dict[str, Any], kind: str, mime: str
) -> None:
    update = fixture("private_text")
    del update["message"]["text"]
    update["message"][field] = {"file_id": f"{kind}-id", "file_unique_id": f"{kind}-u", **value}
    item = parse(update)
    assert item.kind == "message"
    assert item.message is not None
    assert item.message.text == ""
    assert [(a["kind"], a["file_id"], a["mime_type"]) for a in item.attachments] == [
        (kind, f"{kind}-id", mime)
    ]


def test_forum_topic_message_answers_in_its_topic() -> None:
    item = parse(fixture("forum_topic_mention"))
    assert item.message is not None
    assert item.message.text == "is the deploy done?"
    assert item.message.payload["message_thread_id"] == 7
    assert item.target == ReplyTarget(chat_id="-1009876543210", message_id="90", thread_id="7")


def test_topic_opened_by_the_bot_is_not_a_reply_to_the_bot() -> None:
    update = fixture("forum_topic_mention")
    message = update["message"]
    message["text"] = "is the deploy done?"
    del message["entities"]
    item = parse(update)
    assert item.message is not None
    assert item.message.mentioned is False


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("edited_message", "edited message does not start a second run"),
        ("channel_post", "channel posts are not answered"),
        ("my_chat_member", "changed from left to member"),
    ],
)
def test_ignored_updates_say_why(name: str, reason: str) -> None:
    item = parse(fixture(name))
    assert item.kind == "ignored"
    assert reason in item.reason
    assert item.event_type == name
    assert item.message is None


def test_messages_from_bots_are_ignored() -> None:
    update = fixture("group_mention")
    update["message"]["from"] = dict(BOT_USER, id=999, username="other_bot")
    item = parse(update)
    assert item.kind == "ignored"
    assert "bot" in item.reason


def test_messages_without_text_or_attachment_are_ignored() -> None:
    update = fixture("group_not_addressed")
    del update["message"]["text"]
    update["message"]["new_chat_members"] = [{"id": 5, "is_bot": False, "first_name": "New"}]
    item = parse(update)
    assert item.kind == "ignored"
    assert "no text" in item.reason


def test_channel_chat_inside_a_message_update_is_ignored() -> None:
    update = fixture("group_not_addressed")
    update["message"]["chat"] = {"id": -1001111111111, "type": "channel", "title": "News"}
    assert parse(update).kind == "ignored"


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 1, "message_reaction": {"chat": {}, "message_id": 1}},
        {"update_id": 2, "some_future_update": {"x": 1}},
        {"update_id": 3},
        {"update_id": 4, "message": {"message_id": 1}},  # no date, no chat
        {"update_id": 5, "message": "not an object"},
    ],
)
def test_unexpected_or_malformed_updates_are_ignored_not_raised(update: dict[str, Any]) -> None:
    item = parse(copy.deepcopy(update))
    assert item.kind == "ignored"
    assert item.reason


def test_parse_does_not_change_the_payload() -> None:
    update = fixture("group_mention_emoji")
    before = copy.deepcopy(update)
    parse(update)
    assert update == before
