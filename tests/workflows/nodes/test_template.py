from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes.template import TemplateConfig


def test_renders_the_message_and_upstream_outputs() -> None:
    result = run_node(
        "template",
        {"template": "{{ trigger.text }}：{{ nodes.kb.passages | join('、') }}"},
        trigger={"text": "退货政策"},
        nodes={"kb": {"passages": ["七天无理由", "运费自理"]}},
    )
    assert result.outputs == {"text": "退货政策：七天无理由、运费自理"}


def test_a_template_error_fails_the_node_with_line_and_reason() -> None:
    result = run_node("template", {"template": "ok\n{{ nodes.missing.text }}"})
    assert result.failed
    assert result.error is not None
    assert result.error.startswith("template line 2:")
    assert "missing" in result.error


def test_an_empty_template_is_invalid() -> None:
    with pytest.raises(ValidationError, match="template"):
        TemplateConfig.model_validate({"template": ""})
