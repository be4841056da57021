"""The llm node against the vLLM protocol double: prompts, history, parameters, streaming,
fallback, and the failures a designer must be able to tell apart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import free_port
from tests.doubles.vllm_server import VllmDouble
from workflows.llm import gateway as llm_gateway
from workflows.llm.endpoints import EndpointConfig
from workflows.llm.gateway import Gateway
from workflows.nodes.base import NodeContext, NodeResult
from workflows.nodes.llm import MODEL_ENDPOINT_RESOURCE, Llm, LlmConfig


@pytest.fixture(autouse=True)
def fast_gateway(monkeypatch: pytest.MonkeyPatch) -> Gateway:
    # The process-wide gateway waits up to seconds between retries; tests need milliseconds.
    gateway = Gateway(max_retries=1, backoff_base_s=0.01, backoff_cap_s=0.02)
    monkeypatch.setattr(llm_gateway, "gateway", gateway)
    return gateway


def _endpoint(double: VllmDouble | None, name: str = "chat", **fields: Any) -> EndpointConfig:
    base_url = double.base_url if double else f"http://127.0.0.1:{free_port()}/v1"
    values: dict[str, Any] = {
        "id": abs(hash(name)) % 10_000,
        "name": name,
        "kind": "chat",
        "base_url": base_url,
        "model": double.model if double else "gone",
        "timeout_s": 5.0,
    }
    values.update(fields)
    return EndpointConfig(**values)


def _run(
    config: dict[str, Any],
    endpoints: list[EndpointConfig],
    *,
    deltas: list[str] | None = None,
    **variables: Any,
) -> NodeResult:
    node = Llm("answer", LlmConfig.model_validate(config))
    context_variables = {"trigger": {"text": "你好"}, "conversation": {}, "nodes": {}, "vars": {}}
    context_variables.update(variables)
    resources = {(MODEL_ENDPOINT_RESOURCE, e.name): e for e in endpoints}
    context = NodeContext(
        variables=context_variables,
        resources=resources,
        emit_delta=deltas.append if deltas is not None else None,
    )
    return asyncio.run(node.run(context))


def test_answers_with_the_models_text_and_usage(vllm_double: VllmDouble) -> None:
    result = _run({"endpoints": ["chat"], "stream": False}, [_endpoint(vllm_double)])
    assert not result.failed, result.error
    assert result.outputs["text"] == "Echo: 你好"
    assert result.outputs["finish_reason"] == "stop"
    assert result.outputs["endpoint"] == "chat"
    assert result.outputs["model"] == vllm_double.model
    assert result.tokens_in > 0
    assert result.tokens_out == result.outputs["tokens_out"] > 0
    assert [a["outcome"] for a in result.outputs["attempts"]] == ["ok"]


def test_sends_the_system_prompt_history_and_rendered_prompt(vllm_double: VllmDouble) -> None:
    conversation = {
        "history": [
            {"role": "user", "text": "第一问"},
            {"role": "assistant", "text": "第一答"},
            {"role": "user", "text": "第二问"},
            {"role": "assistant", "text": "第二答"},
        ]
    }
    config = {
        "endpoints": ["chat"],
        "system_prompt": "你是{{ vars.company }}的客服。",
        "prompt": "问题：{{ trigger.text }}",
        "history_turns": 1,
    }
    result = _run(
        config, [_endpoint(vllm_double)], conversation=conversation, vars={"company": "示例公司"}
    )
    assert not result.failed, result.error
    assert vllm_double.requests[-1]["messages"] == [
        {"role": "system", "content": "你是示例公司的客服。"},
        {"role": "user", "content": "第二问"},
        {"role": "assistant", "content": "第二答"},
        {"role": "user", "content": "问题：你好"},
    ]


def test_node_parameters_override_the_endpoints_defaults(vllm_double: VllmDouble) -> None:
    endpoint = _endpoint(vllm_double, default_params={"temperature": 0.7, "max_tokens": 512})
    config = {"endpoints": ["chat"], "params": {"temperature": 0.1, "stop": ["。"]}}
    _run(config, [endpoint])
    sent = vllm_double.requests[-1]
    assert sent["temperature"] == 0.1
    assert sent["max_tokens"] == 512
    assert sent["stop"] == ["。"]
    assert not any(key.startswith("guided_") for key in sent)


def test_a_streamed_answer_reaches_the_trace_piece_by_piece(vllm_double: VllmDouble) -> None:
    vllm_double.reply = "第一句。第二句。"
    deltas: list[str] = []
    result = _run({"endpoints": ["chat"], "stream": True}, [_endpoint(vllm_double)], deltas=deltas)
    assert not result.failed, result.error
    assert len(deltas) > 1
    assert "".join(deltas) == result.outputs["text"] == "第一句。第二句。"
    assert vllm_double.requests[-1]["stream"] is True


def test_max_tokens_cuts_the_answer_and_says_so(vllm_double: VllmDouble) -> None:
    vllm_double.reply = "one two three four five"
    result = _run({"endpoints": ["chat"], "params": {"max_tokens": 2}}, [_endpoint(vllm_double)])
    assert result.outputs["finish_reason"] == "length"
    assert result.outputs["tokens_out"] == 2


def test_falls_back_to_the_next_endpoint_and_the_attempts_say_so(
    vllm_double: VllmDouble,
) -> None:
    endpoints = [_endpoint(None, "down"), _endpoint(vllm_double, "backup")]
    result = _run({"endpoints": ["down", "backup"]}, endpoints)
    assert not result.failed, result.error
    assert result.outputs["endpoint"] == "backup"
    outcomes = [(a["endpoint"], a["outcome"]) for a in result.outputs["attempts"]]
    assert outcomes[-1] == ("backup", "ok")
    assert {name for name, outcome in outcomes[:-1]} == {"down"}
    assert all(outcome != "ok" for _name, outcome in outcomes[:-1])


def test_a_prompt_too_long_for_the_model_fails_at_once(vllm_double: VllmDouble) -> None:
    vllm_double.inject("context_length")
    result = _run({"endpoints": ["chat"]}, [_endpoint(vllm_double)])
    assert result.failed
    assert "context" in (result.error or "")
    assert len(vllm_double.requests) == 1  # not retried


def test_without_an_endpoint_the_node_says_no_model_is_configured() -> None:
    result = _run({"endpoints": []}, [])
    assert result.error == "no model endpoint configured"


def test_a_missing_or_disabled_endpoint_is_named() -> None:
    result = _run({"endpoints": ["qwen"]}, [])
    assert result.error == "no model endpoint configured (qwen: missing or disabled)"


def test_a_template_error_fails_with_the_reason(vllm_double: VllmDouble) -> None:
    config = {"endpoints": ["chat"], "prompt": "{{ nodes.kb.context }}"}
    result = _run(config, [_endpoint(vllm_double)])
    assert (result.error or "").startswith("prompt ")
    assert "kb" in (result.error or "")
    assert vllm_double.requests == []


def test_declares_its_endpoints_as_resources() -> None:
    config = LlmConfig.model_validate({"endpoints": ["a", "b"]})
    assert Llm.required_resources(config) == [
        (MODEL_ENDPOINT_RESOURCE, "a"),
        (MODEL_ENDPOINT_RESOURCE, "b"),
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"endpoints": ["a", "a"]}, "listed twice"),
        ({"endpoints": ["a"] * 6}, "at most 5"),
        ({"params": {"temperature": 3}}, "less than or equal to 2"),
        ({"params": {"stop": [""]}}, "cannot be empty"),
        ({"params": {"guided_json": {}}}, "guided_json"),
        ({"history_turns": 51}, "less than or equal to 50"),
        ({"prompt": ""}, "at least 1"),
        ({"model": "x"}, "model"),
    ],
)
def test_rejects_bad_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LlmConfig.model_validate(config)
