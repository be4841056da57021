"""Probing an endpoint and embedding texts, against the double."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.doubles.vllm_server import VllmDouble, embedding_vector
from tests.workflows.llm.support import endpoint_for, fast_gateway, run
from workflows.llm.errors import LlmError
from workflows.llm.gateway import _health_url


def test_probe_of_a_healthy_endpoint(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    result = run(gateway, gateway.probe(endpoint_for(vllm_double)))
    assert result.ok
    assert result.error == ""
    assert vllm_double.model in result.models
    assert result.health == "ok"
    assert result.latency_ms > 0


def test_probe_of_an_unhealthy_engine(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    vllm_double.inject("unhealthy")
    result = run(gateway, gateway.probe(endpoint_for(vllm_double)))
    assert not result.ok
    assert result.health == "unhealthy"
    assert vllm_double.model in result.models  # /v1/models still answers
    assert "unhealthy" in result.error


def test_probe_with_a_wrong_key(make_double: Callable[..., VllmDouble]) -> None:
    double = make_double(api_key="right-key")
    gateway = fast_gateway()
    result = run(gateway, gateway.probe(endpoint_for(double, api_key="wrong-key")))
    assert not result.ok
    assert result.models == []
    assert "refused the API key (HTTP 401)" in result.error
    assert result.health == "ok"  # /health is open, as in vLLM
    good = run(gateway, gateway.probe(endpoint_for(double, api_key="right-key")))
    assert good.ok


def test_probe_of_a_model_the_server_does_not_serve(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    result = run(gateway, gateway.probe(endpoint_for(vllm_double, model="llama-9000")))
    assert not result.ok
    assert "model llama-9000 is not served" in result.error
    assert vllm_double.model in result.error


def test_probe_of_nothing_listening() -> None:
    from workflows.llm.endpoints import EndpointConfig

    gateway = fast_gateway()
    endpoint = EndpointConfig(
        id=1, name="gone", kind="chat", base_url="http://127.0.0.1:9/v1", model="m"
    )
    result = run(gateway, gateway.probe(endpoint))
    assert not result.ok
    assert result.health == "unhealthy"
    assert "http://127.0.0.1:9/v1" in result.error


@pytest.mark.parametrize(
    ("base_url", "health"),
    [
        ("http://vllm:8000/v1", "http://vllm:8000/health"),
        ("http://vllm:8000/v1/", "http://vllm:8000/health"),
        ("https://gw.example.com/qwen/v1", "https://gw.example.com/qwen/health"),
        ("http://vllm:8000", "http://vllm:8000/health"),
    ],
)
def test_health_lives_at_the_server_root(base_url: str, health: str) -> None:
    assert _health_url(base_url) == health


def test_embed_returns_one_vector_per_text_of_the_models_dimension(
    make_double: Callable[..., VllmDouble],
) -> None:
    double = make_double(embedding_dim=16)
    gateway = fast_gateway()
    endpoint = endpoint_for(double, kind="embedding", model=double.embedding_model)
    texts = ["第一段文字", "second passage", "third"]
    vectors = run(gateway, gateway.embed(endpoint, texts))
    assert len(vectors) == 3
    assert all(len(vector) == 16 for vector in vectors)
    assert vectors == [embedding_vector(text, 16) for text in texts]
    assert double.requests[-1]["encoding_format"] == "float"
    assert run(gateway, gateway.embed(endpoint, [])) == []


def test_embed_retries_and_reports_errors(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway(max_retries=1)
    endpoint = endpoint_for(vllm_double, kind="embedding", model=vllm_double.embedding_model)
    vllm_double.inject("503")
    assert len(run(gateway, gateway.embed(endpoint, ["a"]))) == 1
    vllm_double.inject("context_length")
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.embed(endpoint, ["a"]))
    assert caught.value.kind == "context_length"
    assert [a.outcome for a in caught.value.attempts] == ["context_length"]
