from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from workflows.llm.gateway import backoff_delay, parse_retry_after


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.2"}) == 0.2


def test_retry_after_as_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=10)
    seconds = parse_retry_after({"retry-after": format_datetime(when, usegmt=True)})
    assert seconds is not None
    assert 8.5 <= seconds <= 10


def test_retry_after_in_the_past_means_now() -> None:
    when = datetime.now(UTC) - timedelta(seconds=10)
    assert parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}) == 0.0


def test_retry_after_is_capped() -> None:
    assert parse_retry_after({"retry-after": "3600"}) == 30.0
    assert parse_retry_after({"retry-after": "3600"}, cap_s=5) == 5.0


def test_retry_after_ms_wins() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


@pytest.mark.parametrize("value", ["", "soon", "nan", "Mon, 99 Foo 2026"])
def test_retry_after_that_cannot_be_read_is_ignored(value: str) -> None:
    assert parse_retry_after({"retry-after": value}) is None


def test_no_retry_after() -> None:
    assert parse_retry_after({}) is None


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = [backoff_delay(retry, base_s=0.5, cap_s=8.0) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not fixed
        assert min(delays) < ceiling / 2
