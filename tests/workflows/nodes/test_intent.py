from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes import intent  # noqa: F401  (registers the type)
from workflows.nodes.intent import MAX_TEXT_CHARS, Intent, IntentConfig

CALENDAR = r"创建(?:一个)?(?P<title>.*?)的日程(?:在(?P<date>\d{4}-\d{2}-\d{2}))?"


def _rule(intent_id: str, pattern: str) -> dict[str, Any]:
    return {"intent": intent_id, "pattern": pattern}


def _config(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"rules": list(rules), **extra}


def test_recognises_a_calendar_request_with_its_parameters() -> None:
    result = run_node(
        "intent",
        _config(_rule("calendar_create", CALENDAR)),
        trigger={"text": "请帮我创建一个周会的日程在2026-05-01"},
    )
    assert result.branch == "calendar_create"
    assert result.outputs == {
        "intent": "calendar_create",
        "parameters": {"title": "周会", "date": "2026-05-01"},
        "matched_text": "创建一个周会的日程在2026-05-01",
        "truncated": False,
    }


def test_groups_that_did_not_take_part_are_dropped_from_the_parameters() -> None:
    result = run_node(
        "intent", _config(_rule("calendar_create", CALENDAR)), trigger={"text": "创建复盘会的日程"}
    )
    assert result.outputs["parameters"] == {"title": "复盘会"}


def test_rules_are_checked_in_order_and_may_share_an_intent() -> None:
    config = _config(
        _rule("refund", "退款"),
        _rule("greeting", "你好"),
        _rule("refund", "退货"),
    )
    assert run_node("intent", config, trigger={"text": "你好，我要退款"}).branch == "refund"
    assert run_node("intent", config, trigger={"text": "你好"}).branch == "greeting"
    assert run_node("intent", config, trigger={"text": "想退货"}).branch == "refund"
    parsed = IntentConfig.model_validate(config)
    assert Intent.branches(parsed) == ["refund", "greeting", "fallback"]
    assert Intent.required_branches(parsed) == ["refund", "greeting"]


def test_no_match_follows_the_fallback_branch() -> None:
    result = run_node("intent", _config(_rule("refund", "退款")), trigger={"text": "天气如何"})
    assert result.branch == "fallback"
    assert result.outputs == {
        "intent": "fallback",
        "parameters": {},
        "matched_text": "",
        "truncated": False,
    }


def test_ignore_case_flag() -> None:
    config = _config(_rule("help", r"^/help\b"))
    assert run_node("intent", config, trigger={"text": "/HELP me"}).branch == "fallback"
    config["flags"] = ["ignore_case"]
    assert run_node("intent", config, trigger={"text": "/HELP me"}).branch == "help"


def test_classifies_a_custom_text_template() -> None:
    config = _config(_rule("order", r"订单(?P<number>\d+)"), text="{{ nodes.clean.text }}")
    result = run_node("intent", config, nodes={"clean": {"text": "查询订单42"}})
    assert (result.branch, result.outputs["parameters"]) == ("order", {"number": "42"})


def test_a_long_text_is_cut_off_and_the_outputs_say_so() -> None:
    text = "x" * MAX_TEXT_CHARS + "退款"
    result = run_node("intent", _config(_rule("refund", "退款")), trigger={"text": text})
    assert result.branch == "fallback"
    assert result.outputs["truncated"] is True


def test_a_text_template_error_fails_the_node() -> None:
    result = run_node("intent", _config(_rule("a", "a"), text="{{ nodes.missing.text }}"))
    assert result.error is not None
    assert result.error.startswith("text line 1:")
    assert "missing" in result.error


def test_a_bad_regular_expression_is_refused_naming_the_rule() -> None:
    with pytest.raises(ValidationError) as caught:
        IntentConfig.model_validate(_config(_rule("ok", "a"), _rule("broken", "创建(?P<title>.*")))
    [error] = caught.value.errors()
    assert error["loc"] == ("rules", 1, "pattern")
    assert "rule 'broken': bad regular expression" in error["msg"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([_rule("fallback", "x")], "may not be 'error' or 'fallback'"),
        ([_rule("error", "x")], "may not be 'error' or 'fallback'"),
        ([_rule("a", "(?P<items>x)")], "group name 'items'"),
        ([_rule("a", "x" * 501)], "at most 500 characters"),
        ([_rule("Calendar-Create", "x")], "String should match pattern"),
        ([_rule("a", "")], "at least 1 character"),
        ([], "at least 1 item"),
        ([_rule(f"i{n}", "x") for n in range(51)], "at most 50 items"),
    ],
)
def test_invalid_configs_are_refused(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IntentConfig.model_validate({"rules": rules})


def test_unknown_flags_and_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="flags"):
        IntentConfig.model_validate(_config(_rule("a", "a"), flags=["multiline"]))
    with pytest.raises(ValidationError, match="classifier"):
        IntentConfig.model_validate(_config(_rule("a", "a"), classifier="llm"))
