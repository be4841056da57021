"""The per-endpoint limit against the double: shared by threads with their own loops, and
not capped below max_concurrency by the HTTP pool."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable

import pytest

from tests.doubles.vllm_server import VllmDouble
from tests.workflows.llm.support import ask, endpoint_for, fast_gateway, run, sample
from workflows.llm.gateway import ChatResult


def test_the_limit_holds_across_threads_each_with_its_own_loop(vllm_double: VllmDouble) -> None:
    vllm_double.ttft_s = 0.05
    gateway = fast_gateway()
    endpoint = endpoint_for(vllm_double, max_concurrency=5)
    texts: list[str] = []
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        async def many() -> list[str]:
            results = await asyncio.gather(
                *(
                    gateway.chat([endpoint], ask(f"t{number} r{i}", stream=i % 2 == 0))
                    for i in range(16)
                )
            )
            return [result.text for result in results]

        try:
            texts.extend(run(gateway, many()))  # one persistent loop per thread, like a worker
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(texts) == 64
    assert sorted(texts) == sorted(f"Echo: t{n} r{i}" for n in range(4) for i in range(16))
    assert vllm_double.max_in_flight == 5
    assert gateway.limiter(endpoint).in_use == 0
    assert sample("assistant_llm_in_flight", endpoint=endpoint.name) == 0


@pytest.mark.slow
def test_256_streams_are_all_in_flight_at_once(make_double: Callable[..., VllmDouble]) -> None:
    # Long enough that the first stream is still waiting when the 256th connects, even on a
    # busy 2-core machine (0.5 s once let one finish first under a full CI run).
    double = make_double(ttft_s=2.0)
    gateway = fast_gateway()
    endpoint = endpoint_for(double, max_concurrency=256, timeout_s=30)
    seen_in_flight: list[float] = []

    async def scenario() -> float:
        started = time.monotonic()
        calls = asyncio.gather(
            *(gateway.chat([endpoint], ask(str(i), stream=True)) for i in range(256))
        )
        while double.max_in_flight < 256 and time.monotonic() - started < 5:
            await asyncio.sleep(0.02)
        seen_in_flight.append(sample("assistant_llm_in_flight", endpoint=endpoint.name))
        results = await calls
        assert sorted(r.text for r in results) == sorted(f"Echo: {i}" for i in range(256))
        # Four connection pools of 64 rather than one of 256 (see POOL_SIZE).
        group = gateway._clients[asyncio.get_running_loop()][endpoint.id]
        assert len(group.clients) == 4
        return time.monotonic() - started

    elapsed = run(gateway, scenario())
    assert double.max_in_flight == 256
    assert seen_in_flight == [256]
    assert elapsed < 5  # one round of 2 s, not several
    print(f"256 streams: max_in_flight={double.max_in_flight} in {elapsed:.2f} s")  # noqa: T201


def test_waiting_for_a_slot_does_not_count_against_the_call_timeout(
    vllm_double: VllmDouble,
) -> None:
    vllm_double.ttft_s = 0.3
    gateway = fast_gateway(max_retries=0)
    endpoint = endpoint_for(vllm_double, max_concurrency=1, timeout_s=0.5)

    async def two() -> list[ChatResult]:
        return await asyncio.gather(*(gateway.chat([endpoint], ask()) for _ in range(2)))

    results = sorted(run(gateway, two()), key=lambda result: result.latency_ms)
    assert results[1].latency_ms > 550  # queued about 0.3 s, then its own 0.3 s call
    # The attempt itself is timed from its slot: the queueing is not in it.
    assert all(r.attempts[0].duration_ms < 450 for r in results)
    assert vllm_double.max_in_flight == 1


def test_a_cancelled_call_gives_back_its_slot_and_in_flight_count(vllm_double: VllmDouble) -> None:
    vllm_double.ttft_s = 5
    gateway = fast_gateway()
    endpoint = endpoint_for(vllm_double, max_concurrency=1)

    async def cancel_both() -> None:
        running = asyncio.create_task(gateway.chat([endpoint], ask(stream=True)))
        queued = asyncio.create_task(gateway.chat([endpoint], ask(stream=True)))
        while vllm_double.in_flight < 1:
            await asyncio.sleep(0.01)
        assert gateway.limiter(endpoint).waiting == 1
        assert sample("assistant_llm_in_flight", endpoint=endpoint.name) == 1
        running.cancel()  # what the run timeout does
        queued.cancel()
        await asyncio.gather(running, queued, return_exceptions=True)

    run(gateway, cancel_both())
    limiter = gateway.limiter(endpoint)
    assert (limiter.in_use, limiter.waiting) == (0, 0)
    assert sample("assistant_llm_in_flight", endpoint=endpoint.name) == 0
    vllm_double.ttft_s = 0
    assert run(gateway, gateway.chat([endpoint], ask())).text == "Echo: hello there"


def test_threads_starting_at_once_share_one_tls_context(
    monkeypatch: pytest.MonkeyPatch, vllm_double: VllmDouble
) -> None:
    # A burst reaching a fresh worker: every thread makes its first client at the same
    # moment. The CA bundle is loaded once per process, not once per thread.
    from workflows.llm import gateway as gateway_module

    built: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def slow_create(*args: object, **kwargs: object) -> ssl.SSLContext:
        time.sleep(0.05)  # loading the bundle takes a while: the others arrive meanwhile
        context = create()
        built.append(context)
        return context

    monkeypatch.setattr(gateway_module, "_tls_shared", [])
    monkeypatch.setattr(ssl, "create_default_context", slow_create)
    gateway = fast_gateway()
    endpoint = endpoint_for(vllm_double)
    start = threading.Barrier(8)
    texts: list[str] = []

    def worker(number: int) -> None:
        start.wait()
        texts.append(run(gateway, gateway.chat([endpoint], ask(f"t{number}"))).text)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(texts) == 8
    assert len(built) == 1
