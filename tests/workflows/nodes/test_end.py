from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes import registry
from workflows.nodes.end import EndConfig


def test_sets_the_run_output_and_has_no_outgoing_branch() -> None:
    result = run_node("end", {"output": "{{ nodes.a.text }}!"}, nodes={"a": {"text": "done"}})
    assert result.outputs == {"output": "done!"}
    end = registry.get("end", 1)
    assert end is not None
    assert end.branches(EndConfig()) == []


def test_a_bad_output_template_fails_the_node() -> None:
    result = run_node("end", {"output": "{{ 1 / 0 }}"})
    assert result.error is not None
    assert "ZeroDivisionError" in result.error


def test_rejects_a_non_text_output() -> None:
    with pytest.raises(ValidationError, match="output"):
        EndConfig.model_validate({"output": ["not", "text"]})
