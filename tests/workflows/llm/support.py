"""Helpers shared by the gateway tests."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from assistant_site.metrics import render_latest
from tests.doubles.vllm_server import VllmDouble
from workflows.llm.endpoints import EndpointConfig
from workflows.llm.gateway import ChatRequest, Gateway

T = TypeVar("T")
_ids = itertools.count(1000)


def endpoint_for(double: VllmDouble, **overrides: Any) -> EndpointConfig:
    """A chat endpoint on ``double`` with a fresh id and a unique name (metrics labels)."""
    settings: dict[str, Any] = {
        "id": next(_ids),
        "name": f"test-{uuid.uuid4().hex[:8]}",
        "kind": "chat",
        "base_url": double.base_url,
        "model": double.model,
        "timeout_s": 10.0,
    }
    settings.update(overrides)
    return EndpointConfig(**settings)


def fast_gateway(**overrides: Any) -> Gateway:
    """A gateway whose backoff is milliseconds, not seconds."""
    settings: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05}
    settings.update(overrides)
    return Gateway(**settings)


def ask(text: str = "hello there", *, stream: bool = False, **params: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], params=params, stream=stream)


def run(gateway: Gateway, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh loop and close the gateway's clients of that loop after."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await gateway.aclose()

    return asyncio.run(main())


def sample(name: str, **labels: str) -> float:
    """The value of one metric sample, as /metrics shows it (0 when absent)."""
    for line in render_latest().decode().splitlines():
        if not line.startswith(f"{name}{{"):
            continue
        label_text, value = line[len(name) + 1 :].rsplit("} ", 1)
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if found == labels:
            return float(value)
    return 0.0
