"""The parameter extractor against the vLLM protocol double: constrained answers, schema
validation, the one repair attempt, and config checks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from tests.doubles.vllm_server import VllmDouble
from workflows.llm import gateway as llm_gateway
from workflows.llm.endpoints import EndpointConfig
from workflows.llm.gateway import Gateway
from workflows.nodes.base import NodeContext, NodeResult
from workflows.nodes.llm import MODEL_ENDPOINT_RESOURCE
from workflows.nodes.parameter_extractor import ParameterExtractor, ParameterExtractorConfig

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "people": {"type": "integer", "minimum": 1},
    },
    "required": ["city", "date"],
    "additionalProperties": False,
}


@pytest.fixture(autouse=True)
def fast_gateway(monkeypatch: pytest.MonkeyPatch) -> Gateway:
    gateway = Gateway(max_retries=0, backoff_base_s=0.01, backoff_cap_s=0.02)
    monkeypatch.setattr(llm_gateway, "gateway", gateway)
    return gateway


def _run(double: VllmDouble | None, **config: Any) -> NodeResult:
    node = ParameterExtractor(
        "extract",
        ParameterExtractorConfig.model_validate(
            {"endpoints": ["chat"], "parameters_schema": SCHEMA, **config}
        ),
    )
    resources = {}
    if double is not None:
        resources[MODEL_ENDPOINT_RESOURCE, "chat"] = EndpointConfig(
            id=1, name="chat", kind="chat", base_url=double.base_url, model=double.model
        )
    variables = {"trigger": {"text": "帮我订明天去杭州的票，两个人"}, "nodes": {}, "vars": {}}
    return asyncio.run(node.run(NodeContext(variables=variables, resources=resources)))


def test_a_valid_answer_becomes_the_parameters(vllm_double: VllmDouble) -> None:
    vllm_double.reply = '{"city": "杭州", "date": "2026-11-23", "people": 2}'
    result = _run(vllm_double)
    assert not result.failed, result.error
    assert result.outputs == {
        "parameters": {"city": "杭州", "date": "2026-11-23", "people": 2},
        "repaired": False,
        "endpoint": "chat",
    }
    sent = vllm_double.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == SCHEMA
    assert not any(key.startswith("guided_") for key in sent)
    assert sent["messages"][-1] == {"role": "user", "content": "帮我订明天去杭州的票，两个人"}
    assert result.tokens_in > 0


def test_the_schema_constrained_answer_of_the_server_is_accepted(
    vllm_double: VllmDouble,
) -> None:
    # No reply set: the double answers with an instance of the requested schema, as vLLM's
    # structured outputs would (the double does not generate strings for patterns).
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "kind": {"enum": ["train", "plane"]}},
        "required": ["city", "kind"],
    }
    result = _run(vllm_double, parameters_schema=schema)
    assert not result.failed, result.error
    assert result.outputs["parameters"]["kind"] == "train"
    assert isinstance(result.outputs["parameters"]["city"], str)


def test_an_invalid_answer_gets_one_repair(vllm_double: VllmDouble) -> None:
    answers = iter(['{"city": "杭州", "date": "明天"}', '{"city": "杭州", "date": "2026-11-23"}'])
    vllm_double.reply = lambda request: next(answers)
    result = _run(vllm_double)
    assert not result.failed, result.error
    assert result.outputs["parameters"] == {"city": "杭州", "date": "2026-11-23"}
    assert result.outputs["repaired"] is True
    repair = vllm_double.requests[-1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"city": "杭州", "date": "明天"}'}
    assert "date: '明天' does not match" in repair[-1]["content"]


def test_not_json_is_repaired_too(vllm_double: VllmDouble) -> None:
    answers = iter(["city is 杭州", '{"city": "杭州", "date": "2026-11-23"}'])
    vllm_double.reply = lambda request: next(answers)
    result = _run(vllm_double)
    assert result.outputs["repaired"] is True
    assert "not JSON" in vllm_double.requests[-1]["messages"][-1]["content"]


def test_two_invalid_answers_fail_naming_the_problems(vllm_double: VllmDouble) -> None:
    vllm_double.reply = '{"city": 5, "people": 0}'
    result = _run(vllm_double)
    assert result.failed
    error = result.error or ""
    assert error.startswith("the model's answer does not match the schema, even after one repair")
    assert "'date' is a required property" in error
    assert "city: 5 is not of type 'string'" in error
    assert len(vllm_double.requests) == 2
    assert result.tokens_out > 0


def test_without_an_endpoint_it_says_no_model_is_configured() -> None:
    result = _run(None)
    assert result.error == "no model endpoint configured (chat: missing or disabled)"


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string"}, 'must be {"type": "object"'),
        ({"type": "object"}, 'must be {"type": "object"'),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "not a valid JSON Schema"),
        ({"type": "object", "properties": {"a": {"description": "x" * 20_001}}}, "longer than"),
    ],
)
def test_rejects_a_bad_schema(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ParameterExtractorConfig.model_validate({"parameters_schema": schema})


def test_the_schema_is_required() -> None:
    with pytest.raises(ValidationError, match="parameters_schema"):
        ParameterExtractorConfig.model_validate({"endpoints": ["chat"]})


def test_config_round_trips_as_json() -> None:
    config = ParameterExtractorConfig.model_validate({"parameters_schema": SCHEMA})
    assert json.loads(config.model_dump_json())["parameters_schema"] == SCHEMA
