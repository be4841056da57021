"""The vLLM protocol double speaks vLLM's wire format: checked with the official openai client
and byte for byte with raw httpx."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from pydantic import BaseModel

from tests.conftest import REPO, free_port, wait_for_port
from tests.doubles.vllm_server import (
    VllmDouble,
    count_tokens,
    embedding_vector,
    schema_instance,
    split_tokens,
)

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello world"}]


def client(double: VllmDouble, api_key: str = "unused") -> openai.OpenAI:
    # No retries: each injected fault must reach the test, not be retried away.
    return openai.OpenAI(base_url=double.base_url, api_key=api_key, max_retries=0)


def drain(chunks: Iterable[ChatCompletionChunk], into: list[str] | None = None) -> list[str]:
    """The delta contents of a stream, collected into ``into`` as they arrive."""
    received = [] if into is None else into
    for chunk in chunks:
        received.extend(choice.delta.content or "" for choice in chunk.choices)
    return received


def chat_url(double: VllmDouble) -> str:
    return f"{double.base_url}/chat/completions"


def sse_events(raw: str) -> list[str]:
    """The events of an SSE body, split on blank lines; the body must end with one."""
    assert raw.endswith("\n\n")
    return raw[:-2].split("\n\n")


def data_chunks(raw: str) -> list[dict[str, Any]]:
    events = [e for e in sse_events(raw) if not e.startswith(":")]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    return [json.loads(e.removeprefix("data: ")) for e in events[:-1]]


def stream_raw(double: VllmDouble, **body: Any) -> str:
    payload = {"model": double.model, "messages": HELLO, "stream": True, **body}
    response = httpx.post(chat_url(double), json=payload, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    return response.text


# -- tokens ----------------------------------------------------------------------------------


def test_token_rule_counts_words_and_cjk_characters() -> None:
    assert count_tokens("hello  world\n") == 2
    assert count_tokens("你好，world!") == 4
    assert split_tokens("Echo: 你好 big world") == ["Echo: ", "你", "好 ", "big ", "world"]
    assert "".join(split_tokens("  lead and trail  ")) == "  lead and trail  "


# -- non-streaming -------------------------------------------------------------------------


def test_non_streaming_answer_has_vllm_shape(vllm_double: VllmDouble) -> None:
    response = httpx.post(chat_url(vllm_double), json={"messages": HELLO})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "service_tier",
        "system_fingerprint",
        "usage",
        "prompt_logprobs",
        "prompt_token_ids",
        "prompt_text",
        "kv_transfer_params",
        "ec_transfer_params",
        "metrics",
    ]
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "qwen2.5-7b-instruct"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Echo: hello world",
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "reasoning": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
            "token_ids": None,
            "routed_experts": None,
        }
    ]
    # 3 reply tokens plus the end-of-sequence token, as vLLM counts it.
    assert body["usage"] == {
        "prompt_tokens": 2,
        "total_tokens": 6,
        "completion_tokens": 4,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    # Compact JSON, as FastAPI's JSONResponse writes it.
    assert response.text == json.dumps(body, separators=(",", ":"), ensure_ascii=False)


# -- streaming -----------------------------------------------------------------------------


def test_stream_is_role_chunk_deltas_finish_chunk_and_done(vllm_double: VllmDouble) -> None:
    raw = stream_raw(vllm_double)

    events = sse_events(raw)
    assert all(e.startswith("data: ") for e in events)
    chunks = data_chunks(raw)
    first, deltas, final = chunks[0], chunks[1:-1], chunks[-1]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1
    assert ids.pop().startswith("chatcmpl-")
    assert {c["created"] for c in chunks} == {first["created"]}

    assert list(first) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "prompt_token_ids",
        "prompt_text",
    ]
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert [d["choices"][0]["delta"] for d in deltas] == [
        {"content": "Echo: "},
        {"content": "hello "},
        {"content": "world"},
    ]
    for delta in deltas:
        assert list(delta) == ["id", "object", "created", "model", "choices", "kv_transfer_params"]
        assert list(delta["choices"][0]) == [
            "index",
            "delta",
            "logprobs",
            "finish_reason",
            "token_ids",
        ]
        assert delta["choices"][0]["finish_reason"] is None
    assert final["choices"] == [
        {
            "index": 0,
            "delta": {"content": ""},
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
            "token_ids": None,
        }
    ]
    assert "usage" not in final
    # pydantic's model_dump_json: compact separators, non-ASCII unescaped.
    for event, chunk in zip(events, chunks, strict=False):
        assert event == "data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)


def test_usage_chunk_with_empty_choices_only_when_requested(vllm_double: VllmDouble) -> None:
    without = data_chunks(stream_raw(vllm_double))
    with_usage = data_chunks(stream_raw(vllm_double, stream_options={"include_usage": True}))

    assert all("usage" not in c and c["choices"] for c in without)
    assert len(with_usage) == len(without) + 1
    usage_chunk = with_usage[-1]
    assert list(usage_chunk) == ["id", "object", "created", "model", "choices", "usage"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 2, "total_tokens": 6, "completion_tokens": 4}
    assert with_usage[-2]["choices"][0]["finish_reason"] == "stop"


def test_openai_client_gets_the_same_text_streaming_and_not(vllm_double: VllmDouble) -> None:
    vllm_double.reply = "你好，世界! A reply with several words."
    llm = client(vllm_double)

    whole = llm.chat.completions.create(model=vllm_double.model, messages=HELLO)
    stream = llm.chat.completions.create(
        model=vllm_double.model,
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish

    assert whole.choices[0].message.content == "你好，世界! A reply with several words."
    assert "".join(parts) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason == "stop"
    assert usage is not None
    assert whole.usage is not None
    # 你 好 ， 世 界, then "! " and five words, then the end-of-sequence token.
    assert usage.completion_tokens == whole.usage.completion_tokens == 5 + 6 + 1


def test_model_may_be_omitted_and_a_wrong_model_is_404(vllm_double: VllmDouble) -> None:
    assert httpx.post(chat_url(vllm_double), json={"messages": HELLO}).status_code == 200

    response = httpx.post(chat_url(vllm_double), json={"model": "gpt-4o", "messages": HELLO})

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `gpt-4o` does not exist. Valid aliases: qwen2.5-7b-instruct.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    with pytest.raises(openai.NotFoundError):
        client(vllm_double).chat.completions.create(model="gpt-4o", messages=HELLO)


# -- length, stop, structured output -------------------------------------------------------


def test_max_tokens_cuts_the_reply_with_finish_reason_length(vllm_double: VllmDouble) -> None:
    llm = client(vllm_double)
    vllm_double.reply = "one two three four"

    whole = llm.chat.completions.create(model=vllm_double.model, messages=HELLO, max_tokens=2)
    chunks = data_chunks(stream_raw(vllm_double, max_completion_tokens=3, max_tokens=99))

    assert whole.choices[0].message.content == "one two "
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 2
    # max_completion_tokens wins over the deprecated max_tokens; the last token rides on
    # the finish chunk, as in vLLM.
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:]] == [
        "one ",
        "two ",
        "three ",
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_reply_exactly_max_tokens_long_finishes_with_length(vllm_double: VllmDouble) -> None:
    vllm_double.reply = "one two"

    body = httpx.post(chat_url(vllm_double), json={"messages": HELLO, "max_tokens": 2}).json()

    assert body["choices"][0]["message"]["content"] == "one two"
    assert body["choices"][0]["finish_reason"] == "length"


def test_stop_strings_cut_the_reply(vllm_double: VllmDouble) -> None:
    vllm_double.reply = "alpha beta gamma delta"
    llm = client(vllm_double)

    whole = llm.chat.completions.create(
        model=vllm_double.model,
        messages=HELLO,
        stop=["delta", "gamma"],
    )
    chunks = data_chunks(stream_raw(vllm_double, stop="a g"))

    assert whole.choices[0].message.content == "alpha beta "
    assert whole.choices[0].finish_reason == "stop"
    assert whole.model_extra is not None
    assert whole.choices[0].model_extra == {
        "stop_reason": "gamma",
        "token_ids": None,
        "routed_experts": None,
    }
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 3
    # The stop string spans two tokens; the text is cut before it.
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:])
    assert text == "alpha bet"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["stop_reason"] == "a g"


class Address(BaseModel):
    city: str
    zip_code: str


class Ticket(BaseModel):
    title: str
    priority: Literal["high", "low"]
    count: int
    score: float
    urgent: bool
    tags: list[str]
    address: Address
    note: str | None = None


def test_json_schema_response_format_yields_valid_json(vllm_double: VllmDouble) -> None:
    llm = client(vllm_double)
    schema = Ticket.model_json_schema()

    answer = llm.chat.completions.create(
        model=vllm_double.model,
        messages=HELLO,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "ticket", "schema": schema, "strict": True},
        },
    )
    via_extra = httpx.post(
        chat_url(vllm_double), json={"messages": HELLO, "structured_outputs": {"json": schema}}
    ).json()

    content = answer.choices[0].message.content
    assert content is not None
    ticket = Ticket.model_validate_json(content)
    assert ticket.priority == "high"
    assert ticket.title == "example"
    assert ticket.tags == []
    assert ticket.urgent is False
    assert Ticket.model_validate_json(via_extra["choices"][0]["message"]["content"]) == ticket


def test_schema_instance_honours_bounds_and_formats() -> None:
    schema = {
        "type": "object",
        "required": ["n", "when", "items", "choice"],
        "properties": {
            "n": {"type": "integer", "minimum": 3},
            "when": {"type": "string", "format": "date-time"},
            "items": {"type": "array", "minItems": 2, "items": {"type": "boolean"}},
            "choice": {"anyOf": [{"type": "null"}, {"const": "x"}]},
        },
    }

    assert schema_instance(schema) == {
        "n": 3,
        "when": "1970-01-01T00:00:00Z",
        "items": [False, False],
        "choice": "x",
    }


# -- validation ----------------------------------------------------------------------------


def test_rejects_a_body_that_is_not_json(vllm_double: VllmDouble) -> None:
    response = httpx.post(
        chat_url(vllm_double), content=b"messages=hi", headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert "Unsupported Media Type: Only 'application/json' is allowed" in error["message"]
    assert error["type"] == "Bad Request"


def test_rejects_missing_messages_and_stream_options_without_stream(
    vllm_double: VllmDouble,
) -> None:
    missing = httpx.post(chat_url(vllm_double), json={"model": vllm_double.model})
    options = httpx.post(
        chat_url(vllm_double),
        json={"messages": HELLO, "stream_options": {"include_usage": True}},
    )

    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "Bad Request"
    assert "messages" in missing.json()["error"]["message"]
    assert options.status_code == 400
    assert options.json()["error"]["type"] == "Bad Request"
    assert (
        "Stream options can only be defined when `stream=True`."
        in (options.json()["error"]["message"])
    )
    with pytest.raises(openai.BadRequestError):
        client(vllm_double).chat.completions.create(
            model=vllm_double.model,
            messages=HELLO,
            stream_options={"include_usage": True},
        )


def test_prompt_longer_than_the_context_is_a_400_with_vllms_message() -> None:
    with VllmDouble(max_model_len=5) as double:
        prompt = [{"role": "user", "content": "one two three 四五六"}]
        response = httpx.post(chat_url(double), json={"messages": prompt})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": (
            "This model's maximum context length is 5 tokens. However, your prompt contains "
            "6 input tokens, which exceeds this limit even without any output tokens. Please "
            "reduce the length of the input prompt."
        ),
        "type": "BadRequestError",
        "param": "input_tokens",
        "code": 400,
    }


# -- faults --------------------------------------------------------------------------------


def test_429_fault_sends_retry_after_and_openais_body(vllm_double: VllmDouble) -> None:
    vllm_double.inject("429", retry_after_s=2)

    with pytest.raises(openai.RateLimitError) as caught:
        client(vllm_double).chat.completions.create(model=vllm_double.model, messages=HELLO)

    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body == {
        "message": "Rate limit reached, retry later.",
        "type": "RateLimitError",
        "param": None,
        "code": 429,
    }
    # Used up: the next request is answered.
    assert httpx.post(chat_url(vllm_double), json={"messages": HELLO}).status_code == 200


def test_fault_count_covers_that_many_requests(vllm_double: VllmDouble) -> None:
    vllm_double.inject("500", count=2)

    statuses = [
        httpx.post(chat_url(vllm_double), json={"messages": HELLO}).status_code for _ in range(3)
    ]

    assert statuses == [500, 500, 200]


def test_500_and_503_faults_have_vllm_error_bodies(vllm_double: VllmDouble) -> None:
    vllm_double.inject("500")
    vllm_double.inject("503", message="queue full")
    llm = client(vllm_double)

    with pytest.raises(openai.InternalServerError) as first:
        llm.chat.completions.create(model=vllm_double.model, messages=HELLO)
    second = httpx.post(chat_url(vllm_double), json={"messages": HELLO, "stream": True})

    assert first.value.status_code == 500
    assert isinstance(first.value.body, dict)
    assert first.value.body["type"] == "InternalServerError"
    assert second.status_code == 503
    assert second.json() == {
        "error": {
            "message": "queue full",
            "type": "ServiceUnavailableError",
            "param": None,
            "code": 503,
        }
    }


def test_drop_mid_stream_raises_in_the_client(vllm_double: VllmDouble) -> None:
    vllm_double.reply = "a b c d e f"
    vllm_double.inject("drop_mid_stream", after_tokens=2)
    received: list[str] = []

    stream = client(vllm_double).chat.completions.create(
        model=vllm_double.model, messages=HELLO, stream=True
    )

    with pytest.raises(openai.APIConnectionError):
        drain(stream, into=received)

    assert received == ["", "a ", "b "]


def test_drop_without_stream_closes_without_an_answer(vllm_double: VllmDouble) -> None:
    vllm_double.inject("drop_mid_stream")

    with pytest.raises(openai.APIConnectionError):
        client(vllm_double).chat.completions.create(model=vllm_double.model, messages=HELLO)


def test_malformed_chunk_is_a_data_line_that_is_not_json(vllm_double: VllmDouble) -> None:
    vllm_double.inject("malformed_chunk")
    raw = stream_raw(vllm_double)
    vllm_double.inject("malformed_chunk")

    bad = [e for e in sse_events(raw) if e.startswith("data: {")]
    not_json = []
    for event in bad:
        try:
            json.loads(event.removeprefix("data: "))
        except ValueError:
            not_json.append(event)
    assert len(not_json) == 1
    assert sse_events(raw)[-1] == "data: [DONE]"
    stream = client(vllm_double).chat.completions.create(
        model=vllm_double.model, messages=HELLO, stream=True
    )
    with pytest.raises(json.JSONDecodeError):
        drain(stream)


def test_error_in_stream_keeps_200_and_the_client_raises(vllm_double: VllmDouble) -> None:
    vllm_double.inject("error_in_stream", after_tokens=1, message="engine died")
    raw = stream_raw(vllm_double)
    vllm_double.inject("error_in_stream")

    events = sse_events(raw)
    assert events[-2:] == [
        'data: {"error": {"message": "engine died", "type": "InternalServerError", '
        '"param": null, "code": 500}}',
        "data: [DONE]",
    ]
    stream = client(vllm_double).chat.completions.create(
        model=vllm_double.model, messages=HELLO, stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        drain(stream)
    assert "Engine failed mid-generation" in caught.value.message


def test_slow_headers_delays_the_response_headers(vllm_double: VllmDouble) -> None:
    vllm_double.inject("slow_headers", delay_s=0.4)
    started = time.monotonic()

    with httpx.stream(
        "POST", chat_url(vllm_double), json={"messages": HELLO, "stream": True}
    ) as response:
        headers_after = time.monotonic() - started
        body = response.read().decode()

    assert headers_after >= 0.4
    assert body.endswith("data: [DONE]\n\n")


def test_context_length_fault_forces_the_overflow_answer(vllm_double: VllmDouble) -> None:
    vllm_double.inject("context_length")

    with pytest.raises(openai.BadRequestError) as caught:
        client(vllm_double).chat.completions.create(model=vllm_double.model, messages=HELLO)

    assert caught.value.message.endswith(
        "This model's maximum context length is 4096 tokens. However, your prompt contains "
        "4097 input tokens, which exceeds this limit even without any output tokens. Please "
        "reduce the length of the input prompt."
    )


def test_unknown_fault_name_is_refused(vllm_double: VllmDouble) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        vllm_double.inject("502")


# -- auth, health, models, metrics ---------------------------------------------------------


def test_api_key_guards_v1_with_a_flat_401_body() -> None:
    with VllmDouble(api_key="s3cret") as double:
        missing = httpx.post(chat_url(double), json={"messages": HELLO})
        wrong = httpx.get(f"{double.base_url}/models", headers={"Authorization": "Bearer nope"})
        health = httpx.get(f"{double.url}/health")
        metrics = httpx.get(f"{double.url}/metrics")
        answer = client(double, api_key="s3cret").chat.completions.create(
            model=double.model,
            messages=HELLO,
        )
        with pytest.raises(openai.AuthenticationError):
            client(double, api_key="nope").models.list()

    assert missing.status_code == wrong.status_code == 401
    assert missing.text == '{"error":"Unauthorized"}'
    assert health.status_code == metrics.status_code == 200
    assert answer.choices[0].message.content == "Echo: hello world"


def test_health_is_an_empty_200_and_unhealthy_is_503(vllm_double: VllmDouble) -> None:
    vllm_double.inject("unhealthy", count=2)

    statuses = [httpx.get(f"{vllm_double.url}/health") for _ in range(3)]

    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[-1].content == b""


def test_models_lists_both_models_as_vllm_does(vllm_double: VllmDouble) -> None:
    body = httpx.get(f"{vllm_double.base_url}/models").json()
    listed = client(vllm_double).models.list()

    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["qwen2.5-7b-instruct", "bge-m3"]
    card = body["data"][0]
    assert list(card) == [
        "id",
        "object",
        "created",
        "owned_by",
        "root",
        "parent",
        "max_model_len",
        "permission",
    ]
    assert card["owned_by"] == "vllm"
    assert card["max_model_len"] == 4096
    assert card["permission"][0]["object"] == "model_permission"
    assert card["permission"][0]["id"].startswith("modelperm-")
    assert [m.id for m in listed] == ["qwen2.5-7b-instruct", "bge-m3"]


def metric(text: str, name: str, model: str, **labels: str) -> float:
    wanted = {"model_name": model, "engine": "0", **labels}
    label_text = ",".join(f'{k}="{v}"' for k, v in wanted.items())
    prefix = f"{name}{{{label_text}}} "
    values = [
        float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)
    ]
    assert len(values) == 1, (name, labels)
    return values[0]


def test_metrics_counters_move_with_requests(vllm_double: VllmDouble) -> None:
    def scrape() -> str:
        response = httpx.get(f"{vllm_double.url}/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    model = vllm_double.model
    before = scrape()
    assert "# TYPE vllm:num_requests_running gauge" in before
    assert "# TYPE vllm:prompt_tokens counter" in before
    httpx.post(chat_url(vllm_double), json={"messages": HELLO})
    stream_raw(vllm_double)
    after = scrape()

    assert (
        metric(after, "vllm:prompt_tokens_total", model)
        - metric(before, "vllm:prompt_tokens_total", model)
        == 2 * 2
    )
    assert (
        metric(after, "vllm:generation_tokens_total", model)
        - metric(before, "vllm:generation_tokens_total", model)
        == 2 * 4
    )
    assert metric(after, "vllm:request_success_total", model, finished_reason="stop") == 2
    assert metric(after, "vllm:num_requests_running", model) == 0
    assert metric(after, "vllm:num_requests_waiting", model) == 0


def test_metrics_show_running_requests(vllm_double: VllmDouble) -> None:
    vllm_double.ttft_s = 0.5

    async def scenario() -> float:
        async with httpx.AsyncClient(timeout=10) as http:
            pending = asyncio.ensure_future(
                http.post(chat_url(vllm_double), json={"messages": HELLO})
            )
            await asyncio.sleep(0.2)
            text = (await http.get(f"{vllm_double.url}/metrics")).text
            await pending
            return metric(text, "vllm:num_requests_running", vllm_double.model)

    assert asyncio.run(scenario()) == 1


# -- embeddings ----------------------------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors(vllm_double: VllmDouble) -> None:
    llm = client(vllm_double)

    # The openai client asks for base64 unless told otherwise, and decodes it.
    first = llm.embeddings.create(model="bge-m3", input=["alpha", "beta gamma"])
    again = llm.embeddings.create(model="bge-m3", input="alpha")
    raw = httpx.post(
        f"{vllm_double.base_url}/embeddings",
        json={"model": "bge-m3", "input": "alpha", "encoding_format": "float"},
    ).json()

    assert [d.index for d in first.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in first.data)
    assert all(math.isclose(sum(v * v for v in d.embedding), 1.0, rel_tol=1e-5) for d in first.data)
    assert first.data[0].embedding == again.data[0].embedding == raw["data"][0]["embedding"]
    assert first.data[0].embedding == embedding_vector("alpha", 8)
    assert first.data[0].embedding != first.data[1].embedding
    assert first.usage.prompt_tokens == 3
    assert list(raw) == ["id", "object", "created", "model", "data", "usage"]
    assert raw["id"].startswith("embd-")
    assert raw["object"] == "list"
    assert raw["data"][0]["object"] == "embedding"
    assert raw["usage"] == {"prompt_tokens": 1, "total_tokens": 1, "completion_tokens": 0}


def test_embeddings_base64_is_the_float32_buffer(vllm_double: VllmDouble) -> None:
    raw = httpx.post(
        f"{vllm_double.base_url}/embeddings",
        json={"input": "alpha", "encoding_format": "base64"},
    ).json()

    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == embedding_vector("alpha", 8)


def test_embeddings_dimensions_and_wrong_model() -> None:
    with VllmDouble(embedding_dim=32) as double:
        llm = client(double)
        full = llm.embeddings.create(model="bge-m3", input="x", encoding_format="float")
        short = llm.embeddings.create(model="bge-m3", input="x", dimensions=4)
        with pytest.raises(openai.NotFoundError):
            llm.embeddings.create(model="qwen2.5-7b-instruct", input="x")
        double.inject("503")
        with pytest.raises(openai.InternalServerError):
            llm.embeddings.create(model="bge-m3", input="x")

    assert len(full.data[0].embedding) == 32
    assert len(short.data[0].embedding) == 4
    assert math.isclose(sum(v * v for v in short.data[0].embedding), 1.0, rel_tol=1e-5)


# -- keep-alive, recording, concurrency --------------------------------------------------------


def test_keep_alive_comments_during_the_wait_are_ignored_by_the_client() -> None:
    with VllmDouble(ttft_s=0.5, keep_alive_s=0.1) as double:
        raw = stream_raw(double)
        stream = client(double).chat.completions.create(
            model=double.model,
            messages=HELLO,
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    events = sse_events(raw)
    keep_alives = [e for e in events if e.startswith(":")]
    assert keep_alives
    assert set(keep_alives) == {": keep-alive"}
    assert events.index(keep_alives[-1]) < min(
        i for i, e in enumerate(events) if e.startswith("data:")
    )
    assert text == "Echo: hello world"


def test_records_request_bodies_in_order_and_reset_clears(vllm_double: VllmDouble) -> None:
    vllm_double.inject("500", count=5)
    httpx.post(chat_url(vllm_double), json={"messages": HELLO, "n": 1})
    httpx.post(f"{vllm_double.base_url}/embeddings", json={"input": "x"})

    assert vllm_double.requests == [{"messages": HELLO, "n": 1}, {"input": "x"}]
    vllm_double.reset()
    assert vllm_double.requests == []
    assert httpx.post(chat_url(vllm_double), json={"messages": HELLO}).status_code == 200


def test_reply_and_timing_may_change_while_running(vllm_double: VllmDouble) -> None:
    vllm_double.reply = lambda body: f"{len(body['messages'])} messages"
    first = httpx.post(chat_url(vllm_double), json={"messages": HELLO * 3}).json()
    vllm_double.reply = None
    vllm_double.ttft_s = 0.3
    started = time.monotonic()
    second = httpx.post(chat_url(vllm_double), json={"messages": HELLO}).json()

    assert first["choices"][0]["message"]["content"] == "3 messages"
    assert second["choices"][0]["message"]["content"] == "Echo: hello world"
    assert time.monotonic() - started >= 0.3


def test_fifty_concurrent_streams_are_all_in_flight_together(vllm_double: VllmDouble) -> None:
    vllm_double.ttft_s = 0.5
    vllm_double.token_delay_s = 0.01

    async def one(llm: openai.AsyncOpenAI, index: int) -> str:
        stream = await llm.chat.completions.create(
            model=vllm_double.model,
            messages=[{"role": "user", "content": f"request {index}"}],
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def scenario() -> list[str]:
        llm = openai.AsyncOpenAI(base_url=vllm_double.base_url, api_key="x", max_retries=0)
        async with llm:
            return await asyncio.gather(*(one(llm, i) for i in range(50)))

    texts = asyncio.run(scenario())

    assert texts == [f"Echo: request {i}" for i in range(50)]
    assert vllm_double.max_in_flight == 50
    assert vllm_double.in_flight == 0


# -- command line --------------------------------------------------------------------------


@pytest.fixture
def cli_double() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.doubles.vllm_server", "--port", str(port), "--ttft-ms", "10"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for_port(port)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_command_line_serves_until_interrupted(
    cli_double: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = cli_double

    health = httpx.get(f"http://127.0.0.1:{port}/health")
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions", json={"messages": HELLO}
    ).json()
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=10)

    assert health.status_code == 200
    assert answer["choices"][0]["message"]["content"] == "Echo: hello world"
    assert f"http://127.0.0.1:{port}/v1" in out
    assert process.returncode == 0
