"""Token buckets shared by every process: one Lua script in Redis per check.

A bucket holds up to ``capacity`` tokens and gains ``refill_per_s`` tokens a second; each
allowed event takes one. The script reads Redis's own clock, so web and worker processes on
machines with different clocks agree, and the check and the update are one atomic step.
Without ``REDIS_URL`` (the embedded development mode) buckets live in this process only.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from django.conf import settings

_BUCKET_SCRIPT = """
local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * refill)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / refill * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class BucketState:
    allowed: bool
    tokens_left: float
    retry_after_s: float  # until one token is back; 0 when allowed


@cache
def _script() -> Any:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return client.register_script(_BUCKET_SCRIPT)


_local_lock = threading.Lock()
_local: dict[str, tuple[float, float]] = {}


def _take_local(key: str, capacity: int, refill_per_s: float) -> float:
    """Tokens left after taking one, or a negative number when the bucket was empty."""
    with _local_lock:
        now = time.monotonic()
        tokens, at = _local.get(key, (float(capacity), now))
        tokens = min(capacity, tokens + (now - at) * refill_per_s)
        if tokens >= 1:
            _local[key] = (tokens - 1, now)
            return tokens - 1
        _local[key] = (tokens, now)
        return tokens - 1


def bucket_take(*, key: str, capacity: int, refill_per_s: float) -> BucketState:
    """Take one token from the bucket named ``key``, if there is one."""
    if capacity < 1 or refill_per_s <= 0:
        raise ValueError("a bucket needs a capacity of at least 1 and a positive refill rate")
    if settings.REDIS_URL:
        allowed, left = _script()(keys=[f"ratelimit:{key}"], args=[capacity, refill_per_s])
        tokens = float(left)
        if int(allowed):
            return BucketState(True, tokens, 0.0)
    else:
        tokens = _take_local(key, capacity, refill_per_s)
        if tokens >= 0:
            return BucketState(True, tokens, 0.0)
        tokens += 1
    wait = (1 - tokens) / refill_per_s
    return BucketState(False, tokens, math.ceil(wait * 10) / 10)
