"""The fixture updates are real Bot API shapes: python-telegram-bot's own classes parse each
one with every field known to them (nothing left over in ``api_kwargs``) and serialise it
back to the same JSON."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import TelegramObject, Update

from tests.connectors.telegram.conftest import fixture, fixture_names

EXPECTED = {
    "channel_post",
    "edited_message",
    "forum_topic_mention",
    "group_command",
    "group_document_caption",
    "group_mention",
    "group_mention_emoji",
    "group_not_addressed",
    "group_reply_to_bot",
    "my_chat_member",
    "photo_caption",
    "private_start",
    "private_text",
}


def leftovers(value: Any, path: str = "update") -> list[str]:
    """Paths of fields that python-telegram-bot did not recognise."""
    found: list[str] = []
    if isinstance(value, TelegramObject):
        found.extend(f"{path}.{key}" for key in value.api_kwargs)
        for name, attribute in value._get_attrs(recursive=False).items():
            found.extend(leftovers(attribute, f"{path}.{name}"))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(leftovers(item, f"{path}[{index}]"))
    return found


def without_defaults(value: Any) -> Any:
    """``to_dict`` adds False for a few flags the Bot API leaves out."""
    if isinstance(value, dict):
        return {key: without_defaults(item) for key, item in value.items() if item is not False}
    if isinstance(value, list):
        return [without_defaults(item) for item in value]
    return value


def test_every_event_has_a_fixture() -> None:
    assert set(fixture_names()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_is_a_valid_update(name: str) -> None:
    data = fixture(name)
    update = Update.de_json(data, None)
    assert update.update_id == data["update_id"]
    assert leftovers(update) == []
    assert without_defaults(update.to_dict(recursive=True)) == without_defaults(data)
