"""The circuit breaker as the gateway uses it, against the double, with a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.doubles.vllm_server import VllmDouble
from tests.workflows.llm.support import ask, endpoint_for, fast_gateway, run, sample
from workflows.llm.errors import LlmError


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_the_circuit_opens_after_n_failures_then_half_opens_and_closes(
    make_double: Callable[..., VllmDouble],
) -> None:
    broken, spare = make_double(), make_double(reply="spare")
    clock = Clock()
    gateway = fast_gateway(max_retries=0, failure_threshold=3, open_for_s=30, clock=clock)
    endpoint = endpoint_for(broken, name=f"{endpoint_for(broken).name}-broken")
    fallback = endpoint_for(spare)
    broken.inject("503", count=3)
    for _ in range(3):
        result = run(gateway, gateway.chat([endpoint, fallback], ask()))
        assert result.text == "spare"
    assert sample("assistant_llm_circuit_open", endpoint=endpoint.name) == 1

    # Open: the endpoint is skipped without a request.
    result = run(gateway, gateway.chat([endpoint, fallback], ask()))
    assert result.text == "spare"
    assert [(a.endpoint, a.outcome) for a in result.attempts] == [
        (endpoint.name, "circuit_open"),
        (fallback.name, "ok"),
    ]
    assert len(broken.requests) == 3
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint], ask()))
    assert caught.value.kind == "circuit_open"
    assert str(caught.value) == (
        f"endpoint {endpoint.name} failed 3 times in a row; calls resume after 30 s"
    )

    # Half-open after open_for_s: one trial; it fails, so the circuit opens again.
    clock.now += 31
    broken.inject("500")
    result = run(gateway, gateway.chat([endpoint, fallback], ask()))
    assert [a.outcome for a in result.attempts] == ["unavailable", "ok"]
    assert len(broken.requests) == 4
    result = run(gateway, gateway.chat([endpoint, fallback], ask()))
    assert result.attempts[0].outcome == "circuit_open"

    # The next trial succeeds and closes it.
    clock.now += 31
    result = run(gateway, gateway.chat([endpoint], ask()))
    assert result.text == "Echo: hello there"
    assert sample("assistant_llm_circuit_open", endpoint=endpoint.name) == 0
    result = run(gateway, gateway.chat([endpoint], ask()))
    assert [a.outcome for a in result.attempts] == ["ok"]


def test_the_circuit_stops_retries_on_the_same_endpoint(vllm_double: VllmDouble) -> None:
    gateway = fast_gateway(max_retries=5, failure_threshold=2)
    vllm_double.inject("503", count=10)
    with pytest.raises(LlmError) as caught:
        run(gateway, gateway.chat([endpoint_for(vllm_double)], ask()))
    assert [a.outcome for a in caught.value.attempts] == [
        "unavailable",
        "unavailable",
        "circuit_open",
    ]
    assert len(vllm_double.requests) == 2


def test_answers_that_are_not_server_faults_do_not_open_the_circuit(
    vllm_double: VllmDouble,
) -> None:
    gateway = fast_gateway(failure_threshold=2)
    endpoint = endpoint_for(vllm_double)
    for _ in range(3):
        vllm_double.inject("context_length")
        with pytest.raises(LlmError):
            run(gateway, gateway.chat([endpoint], ask()))
    assert not gateway.breaker.is_open(endpoint.id)
