from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes.manual_trigger import ManualTriggerConfig


def test_passes_the_typed_message_and_payload_on() -> None:
    result = run_node("manual_trigger", {}, trigger={"text": "查询订单", "payload": {"id": 7}})
    assert result.outputs == {"text": "查询订单", "payload": {"id": 7}}
    assert not result.failed


def test_falls_back_to_the_sample_message() -> None:
    result = run_node("manual_trigger", {"sample_message": "hello"})
    assert result.outputs["text"] == "hello"


def test_rejects_unknown_config_fields() -> None:
    with pytest.raises(ValidationError, match="colour"):
        ManualTriggerConfig.model_validate({"colour": "red"})
