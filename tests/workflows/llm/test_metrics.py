"""The gateway's Prometheus metrics move as calls are made."""

from __future__ import annotations

from tests.doubles.vllm_server import VllmDouble
from tests.workflows.llm.support import ask, endpoint_for, fast_gateway, run, sample


def test_requests_latency_ttft_tokens_and_in_flight_are_recorded(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway()
    endpoint = endpoint_for(vllm_double)
    name = endpoint.name
    vllm_double.inject("503")
    run(gateway, gateway.chat([endpoint], ask("count my tokens", stream=True)))
    run(gateway, gateway.chat([endpoint], ask("again")))
    assert sample("assistant_llm_requests_total", endpoint=name, outcome="ok") == 2
    assert sample("assistant_llm_requests_total", endpoint=name, outcome="unavailable") == 1
    assert sample("assistant_llm_latency_seconds_count", endpoint=name) == 3
    assert sample("assistant_llm_ttft_seconds_count", endpoint=name) == 1  # streaming only
    assert sample("assistant_llm_tokens_total", endpoint=name, direction="prompt") == 3 + 1
    assert sample("assistant_llm_tokens_total", endpoint=name, direction="completion") == 5 + 3
    assert sample("assistant_llm_in_flight", endpoint=name) == 0
