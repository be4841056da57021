from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes.message_trigger import ChatMessage, MessageTrigger, MessageTriggerConfig


def _message(text: str = "你好", **fields: Any) -> ChatMessage:
    return ChatMessage(text=text, chat_id="c1", user_id="u1", **fields)


def _accepts(config: dict[str, Any], message: ChatMessage) -> str | None:
    return MessageTrigger.accepts(MessageTriggerConfig.model_validate(config), message)


def test_private_messages_start_the_workflow_by_default() -> None:
    assert _accepts({}, _message()) is None


def test_group_messages_need_a_mention_by_default() -> None:
    reason = _accepts({}, _message(chat_type="group"))
    assert reason is not None
    assert "@-mentioned" in reason
    assert _accepts({}, _message(chat_type="group", mentioned=True)) is None


def test_groups_can_be_answered_without_a_mention() -> None:
    assert _accepts({"groups_require_mention": False}, _message(chat_type="group")) is None


def test_chat_types_limit_where_the_workflow_answers() -> None:
    config = {"chat_types": ["group"], "groups_require_mention": False}
    reason = _accepts(config, _message(chat_type="private"))
    assert reason == "private chats do not start this workflow"
    assert _accepts(config, _message(chat_type="group")) is None


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("/ask 今天天气", True),
        ("  /ask 今天天气", True),
        ("/ask", True),
        ("/ask@assistant_bot 今天天气", True),
        ("/asking 今天天气", False),
        ("今天天气 /ask", False),
        ("ask 今天天气", False),
    ],
)
def test_a_command_prefix_must_start_the_message(text: str, accepted: bool) -> None:
    assert (_accepts({"command_prefix": "/ask"}, _message(text)) is None) is accepted


def test_the_prefix_is_removed_from_the_text_the_workflow_reads() -> None:
    trigger = _message("/ask@assistant_bot  今天天气如何 ", chat_type="group", mentioned=True)
    result = run_node(
        "message_trigger", {"command_prefix": "/ask"}, trigger=trigger.model_dump(mode="json")
    )
    assert not result.failed
    assert result.outputs["text"] == "今天天气如何"
    assert result.outputs["raw_text"] == "/ask@assistant_bot  今天天气如何 "
    assert result.outputs["chat_type"] == "group"
    assert result.outputs["chat_id"] == "c1"
    assert result.outputs["user_id"] == "u1"


def test_outputs_carry_who_wrote_and_where() -> None:
    trigger = _message(
        "hello", channel="connector:7", user_name="王小明", message_id="m-1", payload={"a": 1}
    )
    result = run_node("message_trigger", {}, trigger=trigger.model_dump(mode="json"))
    assert result.outputs == {
        "text": "hello",
        "raw_text": "hello",
        "chat_type": "private",
        "chat_id": "c1",
        "user_id": "u1",
        "user_name": "王小明",
        "channel": "connector:7",
        "message_id": "m-1",
        "payload": {"a": 1},
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"chat_types": []}, "at least 1"),
        ({"chat_types": ["private", "private"]}, "listed twice"),
        ({"chat_types": ["channel"]}, "private"),
        ({"command_prefix": "/a b"}, "cannot contain spaces"),
        ({"mention": True}, "mention"),
    ],
)
def test_rejects_bad_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MessageTriggerConfig.model_validate(config)


def test_a_message_needs_a_chat_and_a_user() -> None:
    with pytest.raises(ValidationError, match="chat_id"):
        ChatMessage.model_validate({"text": "x", "user_id": "u"})
