"""The gateway against the vLLM protocol double: answers, streaming, retries, fallback,
errors and client reuse."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from tests.doubles.vllm_server import VllmDouble
from tests.workflows.llm.support import ask, endpoint_for, fast_gateway, run
from workflows.llm.endpoints import EndpointConfig
from workflows.llm.errors import LlmError
from workflows.llm.gateway import ChatRequest, Gateway, _Assembler, _Progress

LONG = "one two three four five six seven eight"


def test_non_streaming_answer_has_text_usage_and_finish_reason(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    endpoint = endpoint_for(vllm_double)
    result = run(gateway, gateway.chat([endpoint], ask("hello there")))
    assert result.text == "Echo: hello there"
    assert result.finish_reason == "stop"
    assert result.tokens_in == 2
    assert result.tokens_out == 4  # three tokens and the end-of-sequence token
    assert (result.endpoint, result.model) == (endpoint.name, vllm_double.model)
    assert result.ttft_ms is None
    assert result.latency_ms > 0
    assert [a.outcome for a in result.attempts] == ["ok"]
    assert "stream" not in vllm_double.requests[0]
    assert "stream_options" not in vllm_double.requests[0]


def test_streaming_reassembles_the_same_text_as_non_streaming(vllm_double: VllmDouble) -> None:
    vllm_double.ttft_s = 0.05
    gateway = fast_gateway()
    endpoint = endpoint_for(vllm_double)
    plain = run(gateway, gateway.chat([endpoint], ask("你好，世界 hello")))
    pieces: list[str] = []
    streamed = run(
        gateway,
        gateway.chat([endpoint], ask("你好，世界 hello", stream=True), on_delta=pieces.append),
    )
    assert streamed.text == plain.text == "Echo: 你好，世界 hello"
    assert "".join(pieces) == streamed.text
    assert len(pieces) > 3
    assert all(pieces)  # the role chunk's empty content is not a delta
    assert (streamed.tokens_in, streamed.tokens_out) == (plain.tokens_in, plain.tokens_out)
    assert streamed.finish_reason == "stop"
    assert streamed.ttft_ms is not None
    assert streamed.ttft_ms >= 50
    assert vllm_double.requests[-1]["stream"] is True
    assert vllm_double.requests[-1]["stream_options"] == {"include_usage": True}


def test_streaming_takes_finish_reason_length_from_the_final_chunk(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    result = run(
        gateway, gateway.chat([endpoint_for(vllm_double)], ask(LONG, stream=True, max_tokens=3))
    )
    assert result.finish_reason == "length"
    assert result.tokens_out == 3
    assert result.text == "Echo: one two "


def test_reasoning_and_empty_deltas_stay_out_of_the_text() -> None:
    endpoint = EndpointConfig(id=1, name="unit", kind="chat", base_url="http://x/v1", model="m")
    pieces: list[str] = []
    assembler = _Assembler(endpoint, pieces.append, _Progress(started=time.monotonic()))
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning": "let me think"}, None),  # vLLM's reasoning field: not text
        ({}, None),
        ({"content": "Hi"}, None),
        ({"content": "!"}, "stop"),
    ]
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    for delta, reason in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": reason}
        assembler.feed(ChatCompletionChunk.model_validate({**base, "choices": [choice]}))
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assembler.feed(ChatCompletionChunk.model_validate({**base, "choices": [], "usage": usage}))
    reply = assembler.reply()
    assert (reply.text, reply.finish_reason, reply.tokens_in, reply.tokens_out) == (
        "Hi!",
        "stop",
        5,
        3,
    )
    assert pieces == ["Hi", "!"]


def test_params_merge_over_the_endpoint_defaults_and_response_format_passes_through(
    vllm_double: VllmDouble,
) -> None:
    gateway = fast_gateway()
    endpoint = endpoint_for(
        vllm_double, default_params={"temperature": 0.2, "max_tokens": 100, "top_k": 20}
    )
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    request = ChatRequest(
        messages=[{"role": "user", "content": "count"}],
        params={"max_tokens": 50, "seed": 7, "model": "ignored", "stream": True},
        response_format=response_format,
    )
    result = run(gateway, gateway.chat([endpoint], request))
    body = vllm_double.requests[-1]
    assert body["model"] == vllm_double.model
    assert (body["temperature"], body["max_tokens"], body["seed"], body["top_k"]) == (
        0.2,
        50,
        7,
        20,
    )
    assert body["response_format"] == response_format
    assert "stream" not in body
    assert not [key for key in body if key.startswith("guided_")]
    assert result.text == '{"n": 0}'


def test_removed_guided_fields_are_refused_before_any_request(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint_for(vllm_double)], ask(guided_json={"type": "object"})))
    assert caught.value.kind == "bad_request"
    assert "guided_json" in str(caught.value)
    assert "response_format" in str(caught.value)
    assert vllm_double.requests == []


def test_retries_a_429_after_the_retry_after_it_asked_for(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    vllm_double.inject("429", retry_after_s=0.2)
    started = time.monotonic()
    result = run(gateway, gateway.chat([endpoint_for(vllm_double)], ask(stream=True)))
    assert time.monotonic() - started >= 0.2
    assert result.text == "Echo: hello there"
    assert [(a.outcome, a.status_code) for a in result.attempts] == [
        ("rate_limited", 429),
        ("ok", 200),
    ]
    assert result.attempts[0].retry_in_s == 0.2
    assert result.attempts[1].started_at - result.attempts[0].started_at >= 0.2
    assert len(vllm_double.requests) == 2


@pytest.mark.parametrize("fault", ["500", "503"])
def test_retries_server_errors_with_backoff(vllm_double: VllmDouble, fault: str) -> None:
    gateway = fast_gateway()
    vllm_double.inject(fault, count=2)
    result = run(gateway, gateway.chat([endpoint_for(vllm_double)], ask()))
    assert [(a.outcome, a.status_code) for a in result.attempts] == [
        ("unavailable", int(fault)),
        ("unavailable", int(fault)),
        ("ok", 200),
    ]
    assert all(a.retry_in_s is not None and a.retry_in_s <= 0.05 for a in result.attempts[:2])
    assert len(vllm_double.requests) == 3


def test_the_openai_client_does_not_retry_by_itself(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway(max_retries=0)
    vllm_double.inject("503")
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint_for(vllm_double)], ask()))
    assert caught.value.kind == "unavailable"
    assert caught.value.retryable
    assert len(vllm_double.requests) == 1


def test_context_length_is_not_retried_and_says_what_to_do(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    other = endpoint_for(vllm_double)
    vllm_double.inject("context_length")
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint_for(vllm_double), other], ask(stream=True)))
    error = caught.value
    assert error.kind == "context_length"
    assert not error.retryable
    assert str(error) == (
        "the prompt is longer than the model's context (4096 tokens): shorten the prompt or "
        "the history"
    )
    assert len(vllm_double.requests) == 1  # neither retried nor sent to the fallback
    assert [a.outcome for a in error.attempts] == ["context_length"]


def test_a_real_context_overflow_is_detected(make_double: Callable[..., VllmDouble]) -> None:
    double = make_double(max_model_len=8)
    gateway = fast_gateway()
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint_for(double)], ask(LONG + " nine ten")))
    assert caught.value.kind == "context_length"
    assert "(8 tokens)" in str(caught.value)


def test_falls_back_to_the_next_endpoint_after_retries_run_out(
    make_double: Callable[..., VllmDouble],
) -> None:
    first, second = make_double(), make_double(reply="from the second")
    first.inject("503", count=3)
    gateway = fast_gateway(max_retries=2)
    endpoints = [endpoint_for(first, name="first"), endpoint_for(second, name="second")]
    result = run(gateway, gateway.chat(endpoints, ask(stream=True)))
    assert result.text == "from the second"
    assert result.endpoint == "second"
    assert [(a.endpoint, a.outcome) for a in result.attempts] == [
        ("first", "unavailable"),
        ("first", "unavailable"),
        ("first", "unavailable"),
        ("second", "ok"),
    ]
    assert result.attempts[2].retry_in_s is None  # no pause before moving on
    assert (len(first.requests), len(second.requests)) == (3, 1)


def test_when_every_endpoint_fails_the_error_lists_all_attempts(
    make_double: Callable[..., VllmDouble],
) -> None:
    first, second = make_double(), make_double()
    first.inject("500", count=2)
    second.inject("429", count=2)
    gateway = fast_gateway(max_retries=1)
    endpoints = [endpoint_for(first, name="first"), endpoint_for(second, name="second")]
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat(endpoints, ask()))
    error = caught.value
    assert error.kind == "rate_limited"
    assert error.endpoint == "second"
    assert "tried 2 endpoints" in str(error)
    assert [(a.endpoint, a.outcome) for a in error.attempts] == [
        ("first", "unavailable"),
        ("first", "unavailable"),
        ("second", "rate_limited"),
        ("second", "rate_limited"),
    ]


def test_no_endpoint_configured() -> None:
    gateway = fast_gateway()
    with pytest.raises(LlmError) as caught:
        asyncio.run(gateway.chat([], ask()))
    assert caught.value.kind == "no_endpoint"
    assert str(caught.value) == "no model endpoint configured"


def test_a_disabled_endpoint_is_skipped(make_double: Callable[..., VllmDouble]) -> None:
    off, on = make_double(), make_double()
    gateway = fast_gateway()
    endpoints = [endpoint_for(off, name="off", enabled=False), endpoint_for(on, name="on")]
    result = run(gateway, gateway.chat(endpoints, ask()))
    assert result.endpoint == "on"
    assert [(a.endpoint, a.outcome) for a in result.attempts] == [
        ("off", "no_endpoint"),
        ("on", "ok"),
    ]
    assert off.requests == []
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat(endpoints[:1], ask()))
    assert caught.value.kind == "no_endpoint"
    assert "disabled (off)" in str(caught.value)


def test_a_stream_dropped_after_deltas_raises_without_repeating_them(
    make_double: Callable[..., VllmDouble],
) -> None:
    double, spare = make_double(), make_double()
    double.inject("drop_mid_stream", after_tokens=3)
    gateway = fast_gateway()
    pieces: list[str] = []
    endpoints = [endpoint_for(double), endpoint_for(spare)]
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat(endpoints, ask(LONG, stream=True), on_delta=pieces.append))
    error = caught.value
    delivered = "".join(pieces)
    assert error.kind == "connection"
    assert not error.retryable
    assert delivered == "Echo: one two "
    assert f"broke after {len(delivered)} characters" in str(error)
    assert len(double.requests) == 1
    assert spare.requests == []  # not replayed on the fallback either
    assert [a.outcome for a in error.attempts] == ["connection"]


def test_a_stream_dropped_before_any_delta_is_retried(vllm_double: VllmDouble) -> None:
    vllm_double.inject("drop_mid_stream", after_tokens=0)
    gateway = fast_gateway()
    pieces: list[str] = []
    result = run(
        gateway, gateway.chat([endpoint_for(vllm_double)], ask(stream=True), on_delta=pieces.append)
    )
    assert "".join(pieces) == result.text == "Echo: hello there"
    assert [a.outcome for a in result.attempts] == ["connection", "ok"]


def test_an_error_inside_a_200_stream_before_any_delta_is_retried(vllm_double: VllmDouble) -> None:
    vllm_double.inject("error_in_stream")
    gateway = fast_gateway()
    pieces: list[str] = []
    result = run(
        gateway, gateway.chat([endpoint_for(vllm_double)], ask(stream=True), on_delta=pieces.append)
    )
    assert "".join(pieces) == result.text == "Echo: hello there"
    assert [a.outcome for a in result.attempts] == ["unavailable", "ok"]
    assert len(vllm_double.requests) == 2


def test_an_error_inside_a_stream_after_deltas_is_not_retried(vllm_double: VllmDouble) -> None:
    vllm_double.inject("error_in_stream", after_tokens=2, message="engine died")
    gateway = fast_gateway()
    pieces: list[str] = []
    with pytest.raises(LlmError) as caught:
        run(
            gateway,
            gateway.chat(
                [endpoint_for(vllm_double)], ask(LONG, stream=True), on_delta=pieces.append
            ),
        )
    assert caught.value.kind == "unavailable"
    assert not caught.value.retryable
    assert "engine died" in str(caught.value)
    assert f"after {len(''.join(pieces))} characters" in str(caught.value)
    assert len(vllm_double.requests) == 1


def test_a_malformed_chunk_after_deltas_is_reported(vllm_double: VllmDouble) -> None:
    vllm_double.inject("malformed_chunk")
    gateway = fast_gateway()
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint_for(vllm_double)], ask(LONG, stream=True)))
    assert caught.value.kind == "malformed"
    assert not caught.value.retryable
    assert len(vllm_double.requests) == 1


def test_a_malformed_body_is_retried(vllm_double: VllmDouble) -> None:
    vllm_double.inject("malformed_chunk")
    gateway = fast_gateway()
    result = run(gateway, gateway.chat([endpoint_for(vllm_double)], ask()))
    assert [a.outcome for a in result.attempts] == ["malformed", "ok"]


@pytest.mark.parametrize("stream", [False, True])
def test_slow_headers_time_out_and_are_retried(vllm_double: VllmDouble, stream: bool) -> None:
    vllm_double.inject("slow_headers", delay_s=1.0)
    gateway = fast_gateway()
    endpoint = endpoint_for(vllm_double, timeout_s=0.3)
    started = time.monotonic()
    result = run(gateway, gateway.chat([endpoint], ask(stream=stream)))
    assert [a.outcome for a in result.attempts] == ["timeout", "ok"]
    assert 250 <= result.attempts[0].duration_ms < 900
    assert time.monotonic() - started < 2


def test_a_wrong_key_is_unauthorized_and_not_retried(
    make_double: Callable[..., VllmDouble],
) -> None:
    double = make_double(api_key="right-key")
    gateway = fast_gateway()
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint_for(double, api_key="wrong-key")], ask()))
    assert caught.value.kind == "unauthorized"
    assert "API key" in str(caught.value)
    assert [a.status_code for a in caught.value.attempts] == [401]
    result = run(gateway, gateway.chat([endpoint_for(double, api_key="right-key")], ask()))
    assert result.text == "Echo: hello there"


def test_an_unknown_model_is_not_found(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint_for(vllm_double, model="no-such-model")], ask()))
    assert caught.value.kind == "not_found"
    assert "no-such-model" in str(caught.value)
    assert len(caught.value.attempts) == 1


def test_an_unreachable_endpoint_is_a_connection_error() -> None:
    gateway = fast_gateway(max_retries=1)
    endpoint = EndpointConfig(
        id=1, name="gone", kind="chat", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2
    )
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint], ask()))
    assert caught.value.kind == "connection"
    assert "http://127.0.0.1:9/v1" in str(caught.value)
    assert [a.outcome for a in caught.value.attempts] == ["connection", "connection"]


def test_an_exception_in_on_delta_reaches_the_caller_unchanged(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()

    def explode(piece: str) -> None:
        raise KeyError(piece)

    with pytest.raises(KeyError):
        run(gateway, gateway.chat([endpoint_for(vllm_double)], ask(stream=True), on_delta=explode))
    assert len(vllm_double.requests) == 1
    assert gateway.limiter(endpoint_for(vllm_double)).in_use == 0


def test_non_streaming_hands_the_whole_text_to_on_delta_once(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    pieces: list[str] = []
    result = run(gateway, gateway.chat([endpoint_for(vllm_double)], ask(), on_delta=pieces.append))
    assert pieces == [result.text]


def test_an_edited_endpoint_takes_effect_on_the_next_call(
    make_double: Callable[..., VllmDouble],
) -> None:
    old, new = make_double(reply="old server"), make_double(reply="new server", api_key="k2")
    gateway = fast_gateway()
    before = endpoint_for(old, id=7, revision="2026-11-01T10:00:00")
    after = dataclasses.replace(
        before, base_url=new.base_url, api_key="k2", revision="2026-11-01T10:05:00"
    )

    async def scenario() -> tuple[str, str, str]:
        first = await gateway.chat([before], ask())
        client = gateway._client_for(before)  # the cached client of this loop
        await gateway._release_client(client)
        second = await gateway.chat([after], ask())
        assert client.client.is_closed()  # the old one is closed once idle
        third = await gateway.chat([after], ask())
        return first.text, second.text, third.text

    assert run(gateway, scenario()) == ("old server", "new server", "new server")
    assert (len(old.requests), len(new.requests)) == (1, 2)


def test_one_client_per_endpoint_and_loop_is_reused(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    endpoint = endpoint_for(vllm_double)

    async def scenario() -> bool:
        await gateway.chat([endpoint], ask())
        first = gateway._client_for(endpoint)
        await gateway._release_client(first)
        await gateway.chat([endpoint], ask(stream=True))
        second = gateway._client_for(endpoint)
        await gateway._release_client(second)
        return first is second

    assert run(gateway, scenario())
    other_loop = run(gateway, gateway.chat([endpoint], ask()))  # a new loop: a new client
    assert other_loop.text == "Echo: hello there"
    assert len(gateway._clients) == 0  # run() closed them; closed loops are dropped


def test_the_key_is_not_in_the_endpoint_repr() -> None:
    endpoint = EndpointConfig(
        id=1, name="a", kind="chat", base_url="http://x/v1", model="m", api_key="sk-secret"
    )
    assert "sk-secret" not in repr(endpoint)
    assert "sk-secret" not in str(endpoint)


def test_the_process_wide_gateway_exists() -> None:
    from workflows.llm.gateway import gateway

    assert isinstance(gateway, Gateway)
    assert gateway.max_retries == 2
