from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes import set_variable  # noqa: F401  (registers the type)
from workflows.nodes.set_variable import SetVariable, SetVariableConfig


def _assign(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def test_renders_each_value_and_writes_it_into_the_run_variables() -> None:
    run_vars: dict[str, Any] = {"tone": "friendly"}
    result = run_node(
        "set_variable",
        {
            "assignments": [
                _assign("title", "{{ nodes.intent.parameters.title }}"),
                _assign("greeting", "你好，{{ trigger.text }}（{{ vars.tone }}）"),
            ]
        },
        trigger={"text": "小王"},
        nodes={"intent": {"parameters": {"title": "周会"}}},
        vars=run_vars,
    )
    assert result.outputs == {"values": {"title": "周会", "greeting": "你好，小王（friendly）"}}
    assert run_vars == {"tone": "friendly", "title": "周会", "greeting": "你好，小王（friendly）"}


def test_values_see_the_variables_from_before_the_node() -> None:
    run_vars: dict[str, Any] = {"count": "1"}
    result = run_node(
        "set_variable",
        {"assignments": [_assign("count", "2"), _assign("previous", "{{ vars.count }}")]},
        vars=run_vars,
    )
    assert result.outputs == {"values": {"count": "2", "previous": "1"}}
    assert run_vars == {"count": "2", "previous": "1"}


def test_a_template_error_fails_the_node_and_writes_nothing() -> None:
    run_vars: dict[str, Any] = {}
    result = run_node(
        "set_variable",
        {"assignments": [_assign("a", "fine"), _assign("b", "{{ nodes.missing.text }}")]},
        vars=run_vars,
    )
    assert result.error is not None
    assert result.error.startswith("assignments.1 (b): line 1:")
    assert run_vars == {}


def test_declares_the_names_it_assigns_and_their_templates() -> None:
    config = SetVariableConfig.model_validate(
        {"assignments": [_assign("a", "{{ trigger.text }}"), _assign("b", "x")]}
    )
    assert SetVariable.declared_variables(config) == ["a", "b"]
    assert SetVariable.template_sources(config) == {
        "assignments.0.value": "{{ trigger.text }}",
        "assignments.1.value": "x",
    }


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        ([], "at least 1 item"),
        ([_assign("1st", "x")], "String should match pattern"),
        ([_assign("has space", "x")], "String should match pattern"),
        ([_assign("items", "x")], "cannot be read as vars.items"),
        ([_assign("a", "x"), _assign("a", "y")], "assigned once"),
        ([{"name": "a", "value": "x", "scope": "global"}], "Extra inputs"),
    ],
)
def test_invalid_configs_are_refused(assignments: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SetVariableConfig.model_validate({"assignments": assignments})
