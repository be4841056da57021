"""Token buckets in real Redis: burst, refill, isolation, atomicity, and the local fallback."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import override_settings

from assistant_site.ratelimit import bucket_take


def _key() -> str:
    return f"test:{uuid.uuid4()}"


def test_a_full_bucket_allows_a_burst_then_refuses(redis_url: str) -> None:
    key = _key()
    taken = [bucket_take(key=key, capacity=3, refill_per_s=0.01) for _ in range(4)]
    assert [state.allowed for state in taken] == [True, True, True, False]
    assert taken[2].tokens_left == pytest.approx(0, abs=0.01)
    # One token comes back every 100 s at this rate.
    assert 90 <= taken[3].retry_after_s <= 100


def test_tokens_come_back_with_time(redis_url: str) -> None:
    key = _key()
    assert bucket_take(key=key, capacity=1, refill_per_s=20).allowed
    assert not bucket_take(key=key, capacity=1, refill_per_s=20).allowed
    time.sleep(0.1)
    assert bucket_take(key=key, capacity=1, refill_per_s=20).allowed


def test_buckets_are_independent(redis_url: str) -> None:
    first, second = _key(), _key()
    assert bucket_take(key=first, capacity=1, refill_per_s=0.01).allowed
    assert not bucket_take(key=first, capacity=1, refill_per_s=0.01).allowed
    assert bucket_take(key=second, capacity=1, refill_per_s=0.01).allowed


def test_concurrent_takers_never_get_more_than_the_bucket_holds(redis_url: str) -> None:
    key = _key()
    with ThreadPoolExecutor(max_workers=16) as pool:
        states = list(
            pool.map(lambda _: bucket_take(key=key, capacity=5, refill_per_s=0.001), range(64))
        )
    assert sum(state.allowed for state in states) == 5


def test_the_process_local_fallback_behaves_the_same() -> None:
    key = _key()
    with override_settings(REDIS_URL=""):
        taken = [bucket_take(key=key, capacity=2, refill_per_s=0.01) for _ in range(3)]
        assert [state.allowed for state in taken] == [True, True, False]
        assert 90 <= taken[2].retry_after_s <= 100


@pytest.mark.parametrize(("capacity", "refill"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_a_bucket_that_could_never_allow_anything_is_an_error(capacity: int, refill: float) -> None:
    with pytest.raises(ValueError, match="capacity"):
        bucket_take(key=_key(), capacity=capacity, refill_per_s=refill)
