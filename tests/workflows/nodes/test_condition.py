from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes.condition import Condition, ConditionConfig


def _case(
    case_id: str, operator: str, right: str = "", left: str = "{{ trigger.text }}"
) -> dict[str, Any]:
    return {"id": case_id, "left": left, "operator": operator, "right": right}


@pytest.mark.parametrize(
    ("operator", "text", "right", "expected"),
    [
        ("equals", "退款", "退款", "yes"),
        ("not_equals", "退款", "退货", "yes"),
        ("contains", "我要退款", "退款", "yes"),
        ("not_contains", "你好", "退款", "yes"),
        ("starts_with", "/help me", "/help", "yes"),
        ("ends_with", "thanks!", "!", "yes"),
        ("is_empty", "   ", "", "yes"),
        ("is_not_empty", "x", "", "yes"),
        ("greater_than", "12.5", "3", "yes"),
        ("less_than", "12.5", "3", "else"),
        ("matches_regex", "订单 2026-12-01", r"\d{4}-\d{2}-\d{2}", "yes"),
        ("contains", "hello", "退款", "else"),
    ],
)
def test_follows_the_first_true_branch_or_else(
    operator: str, text: str, right: str, expected: str
) -> None:
    result = run_node(
        "condition", {"cases": [_case("yes", operator, right)]}, trigger={"text": text}
    )
    assert (result.branch, result.outputs["matched"]) == (expected, expected)


def test_cases_are_checked_in_order() -> None:
    config = {"cases": [_case("first", "contains", "a"), _case("second", "contains", "a")]}
    assert run_node("condition", config, trigger={"text": "a"}).branch == "first"


def test_a_number_comparison_on_text_fails_with_the_values() -> None:
    result = run_node(
        "condition", {"cases": [_case("big", "greater_than", "10")]}, trigger={"text": "many"}
    )
    assert result.error is not None
    assert "cases.0 (big)" in result.error
    assert "'many'" in result.error


def test_a_bad_regular_expression_fails_the_node() -> None:
    result = run_node(
        "condition", {"cases": [_case("r", "matches_regex", "(")]}, trigger={"text": "x"}
    )
    assert result.error is not None
    assert "bad regular expression" in result.error


def test_branches_are_the_case_ids_plus_else_and_only_cases_are_required() -> None:
    config = ConditionConfig.model_validate(
        {"cases": [_case("a", "is_empty"), _case("b", "is_empty")]}
    )
    assert Condition.branches(config) == ["a", "b", "else"]
    assert Condition.required_branches(config) == ["a", "b"]


@pytest.mark.parametrize(
    "cases",
    [
        [],
        [_case("else", "is_empty")],
        [_case("a", "is_empty"), _case("a", "is_empty")],
        [_case("a", "sounds_like")],
    ],
)
def test_invalid_configs_are_refused(cases: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError):
        ConditionConfig.model_validate({"cases": cases})
