from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from tests.doubles.vllm_server import VllmDouble
from tests.workflows.nodes.helpers import run_node
from workflows.llm import gateway as llm_gateway
from workflows.llm.endpoints import EndpointConfig
from workflows.llm.gateway import Gateway
from workflows.nodes import intent  # noqa: F401  (registers the type)
from workflows.nodes.base import NodeContext, NodeResult
from workflows.nodes.intent import MAX_TEXT_CHARS, Intent, IntentConfig
from workflows.nodes.llm import MODEL_ENDPOINT_RESOURCE

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
        "classified_by": "rule",
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
        "classified_by": "none",
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


# --- the LLM fallback, against the vLLM protocol double -----------------------------------


@pytest.fixture
def fast_gateway(monkeypatch: pytest.MonkeyPatch) -> Gateway:
    gateway = Gateway(max_retries=0, backoff_base_s=0.01, backoff_cap_s=0.02)
    monkeypatch.setattr(llm_gateway, "gateway", gateway)
    return gateway


def _with_model(double: VllmDouble | None, text: str, **fallback: Any) -> NodeResult:
    config = _config(_rule("refund", "退款"), _rule("calendar_create", CALENDAR))
    config["llm_fallback"] = {"endpoints": ["chat"], **fallback}
    node = Intent("n1", IntentConfig.model_validate(config))
    resources = {}
    if double is not None:
        resources[MODEL_ENDPOINT_RESOURCE, "chat"] = EndpointConfig(
            id=7, name="chat", kind="chat", base_url=double.base_url, model=double.model
        )
    variables = {"trigger": {"text": text}, "nodes": {}, "vars": {}, "conversation": {}}
    return asyncio.run(node.run(NodeContext(variables=variables, resources=resources)))


def test_a_rule_match_does_not_ask_the_model(
    fast_gateway: Gateway, vllm_double: VllmDouble
) -> None:
    result = _with_model(vllm_double, "我要退款")
    assert (result.branch, result.outputs["classified_by"]) == ("refund", "rule")
    assert vllm_double.requests == []


def test_the_model_classifies_what_no_rule_matched(
    fast_gateway: Gateway, vllm_double: VllmDouble
) -> None:
    vllm_double.reply = '{"intent": "refund"}'
    result = _with_model(
        vllm_double, "这个东西我不想要了，钱能还给我吗", descriptions={"refund": "用户想退钱"}
    )
    assert result.branch == "refund"
    assert result.outputs["classified_by"] == "llm"
    assert result.tokens_in > 0
    sent = vllm_double.requests[-1]
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["intent"]["enum"] == ["refund", "calendar_create", "fallback"]
    assert "- refund: 用户想退钱" in sent["messages"][0]["content"]
    assert sent["temperature"] == 0


def test_an_answer_outside_the_intents_follows_the_fallback_branch(
    fast_gateway: Gateway, vllm_double: VllmDouble
) -> None:
    vllm_double.reply = '{"intent": "weather"}'
    result = _with_model(vllm_double, "天气如何")
    assert (result.branch, result.outputs["classified_by"]) == ("fallback", "llm")
    vllm_double.reply = "I think it is weather"
    assert _with_model(vllm_double, "天气如何").branch == "fallback"


def test_the_fallback_fails_clearly_without_a_model(fast_gateway: Gateway) -> None:
    result = _with_model(None, "天气如何")
    assert result.error == "no model endpoint configured (chat: missing or disabled)"


def test_descriptions_must_name_declared_intents() -> None:
    config = _config(_rule("refund", "退款"))
    config["llm_fallback"] = {"endpoints": ["chat"], "descriptions": {"weather": "天气"}}
    with pytest.raises(ValidationError, match="no rule declares: weather"):
        IntentConfig.model_validate(config)


def test_the_fallback_declares_its_endpoints() -> None:
    config = _config(_rule("refund", "退款"))
    assert Intent.required_resources(IntentConfig.model_validate(config)) == []
    config["llm_fallback"] = {"endpoints": ["a", "b"]}
    assert Intent.required_resources(IntentConfig.model_validate(config)) == [
        (MODEL_ENDPOINT_RESOURCE, "a"),
        (MODEL_ENDPOINT_RESOURCE, "b"),
    ]
