from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes import reply  # noqa: F401  (registers the type)
from workflows.nodes.reply import MAX_CARD_DEPTH, Reply, ReplyConfig


def test_a_text_reply_renders_its_text_and_keeps_the_default_branch() -> None:
    result = run_node(
        "reply", {"text": "您好，{{ trigger.text }}已收到"}, trigger={"text": "退款申请"}
    )
    assert result.outputs == {"format": "text", "text": "您好，退款申请已收到", "card": None}
    assert result.branch == "out"
    assert Reply.branches(ReplyConfig.model_validate({"text": "x"})) == ["out"]


def test_a_markdown_reply_keeps_its_markup() -> None:
    result = run_node(
        "reply", {"format": "markdown", "text": "**{{ vars.title }}**"}, vars={"title": "周会"}
    )
    assert result.outputs == {"format": "markdown", "text": "**周会**", "card": None}


def test_a_card_renders_every_string_inside_it() -> None:
    card = {
        "header": {"title": "{{ nodes.intent.parameters.title }}"},
        "elements": [
            {"tag": "text", "content": "日期：{{ nodes.intent.parameters.date }}"},
            {"tag": "divider", "visible": True, "width": 2, "note": None},
        ],
    }
    result = run_node(
        "reply",
        {"format": "card", "card": card, "text": "日程：{{ nodes.intent.parameters.title }}"},
        nodes={"intent": {"parameters": {"title": "周会", "date": "2026-05-01"}}},
    )
    assert result.outputs == {
        "format": "card",
        "text": "日程：周会",
        "card": {
            "header": {"title": "周会"},
            "elements": [
                {"tag": "text", "content": "日期：2026-05-01"},
                {"tag": "divider", "visible": True, "width": 2, "note": None},
            ],
        },
    }


def test_card_strings_are_template_sources_by_path() -> None:
    config = ReplyConfig.model_validate(
        {"format": "card", "card": {"header": {"title": "{{ a }}"}, "rows": ["{{ b }}", 1]}}
    )
    assert Reply.template_sources(config) == {
        "text": "",
        "card.header.title": "{{ a }}",
        "card.rows.0": "{{ b }}",
    }


def test_a_template_error_fails_the_node_naming_the_field() -> None:
    text_result = run_node("reply", {"text": "{{ nodes.missing.text }}"})
    assert text_result.error is not None
    assert text_result.error.startswith("text line 1:")
    card_result = run_node("reply", {"format": "card", "card": {"rows": ["ok", "{{ 1 / 0 }}"]}})
    assert card_result.error is not None
    assert card_result.error.startswith("card.rows.1 ")
    assert "ZeroDivisionError" in card_result.error


def _nested(depth: int) -> dict[str, Any]:
    card: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth - 1):
        card = {"inner": card}
    return card


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "a text reply needs text"),
        ({"format": "markdown", "text": "  "}, "a markdown reply needs text"),
        ({"format": "card"}, "a card reply needs a card"),
        ({"format": "card", "card": {}}, "a card reply needs a card"),
        ({"format": "card", "card": _nested(MAX_CARD_DEPTH + 1)}, "nested more than"),
        ({"format": "card", "card": {"body": "x" * 30_001}}, "longer than"),
        ({"format": "html", "text": "x"}, "format"),
        ({"text": "x", "channel": "feishu"}, "Extra inputs"),
    ],
)
def test_invalid_configs_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReplyConfig.model_validate(config)


def test_a_card_of_the_maximum_depth_is_accepted() -> None:
    ReplyConfig.model_validate({"format": "card", "card": _nested(MAX_CARD_DEPTH)})
