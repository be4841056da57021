"""Fixtures for the gateway tests. ``vllm_double`` (tests/conftest.py) is one double with
default settings; ``make_double`` starts more, with settings of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.doubles.vllm_server import VllmDouble


@pytest.fixture
def make_double() -> Iterator[Callable[..., VllmDouble]]:
    """Start doubles with the given settings; all are stopped after the test."""
    started: list[VllmDouble] = []

    def make(**settings: Any) -> VllmDouble:
        double = VllmDouble(**settings).start()
        started.append(double)
        return double

    yield make
    for double in started:
        double.stop()
