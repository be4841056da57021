"""A circuit breaker per endpoint, shared by every thread and loop of the process.

After ``failure_threshold`` retryable failures in a row (each failed request counts, retries
included) the circuit opens: calls skip the endpoint for ``open_for_s`` and go to the next
one. Then one trial call is let through (half-open): success closes the circuit, failure
opens it again for another ``open_for_s``. A trial that never reports back (its caller was
cancelled) is forgotten after ``open_for_s``, so the circuit cannot stay stuck half-open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None
    trial_started_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    trial: bool = False  # this call is the half-open trial
    retry_in_s: float = 0.0  # when refused: how long until a trial may go through
    failures: int = 0


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        open_for_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.open_for_s = open_for_s
        self._clock = clock
        self._on_change = on_change  # (label, is_open): feeds the circuit gauge
        self._lock = threading.Lock()
        self._states: dict[object, _State] = {}

    def check(self, key: object) -> Verdict:
        """May a call go to this endpoint now?"""
        with self._lock:
            state = self._states.get(key)
            if state is None or state.opened_at is None:
                return Verdict(allowed=True)
            now = self._clock()
            remaining = state.opened_at + self.open_for_s - now
            if remaining > 0:
                return Verdict(allowed=False, retry_in_s=remaining, failures=state.failures)
            trial = state.trial_started_at
            if trial is not None and now - trial < self.open_for_s:
                # Another caller is running the trial; wait for its verdict.
                return Verdict(
                    allowed=False,
                    retry_in_s=trial + self.open_for_s - now,
                    failures=state.failures,
                )
            state.trial_started_at = now
            return Verdict(allowed=True, trial=True, failures=state.failures)

    def is_open(self, key: object) -> bool:
        with self._lock:
            state = self._states.get(key)
            return state is not None and state.opened_at is not None

    def record_success(self, key: object, label: str = "") -> None:
        """The endpoint answered (any answer that is not its own fault counts)."""
        with self._lock:
            state = self._states.pop(key, None)
        if state is not None and state.opened_at is not None and self._on_change:
            self._on_change(label, False)

    def record_failure(self, key: object, label: str = "") -> None:
        opened = False
        with self._lock:
            state = self._states.setdefault(key, _State())
            state.failures += 1
            if state.opened_at is not None:
                if state.trial_started_at is not None:  # the trial failed: open again
                    state.opened_at = self._clock()
                    state.trial_started_at = None
            elif state.failures >= self.failure_threshold:
                state.opened_at = self._clock()
                opened = True
        if opened and self._on_change:
            self._on_change(label, True)

    def record_abandoned(self, key: object) -> None:
        """A trial ended without a verdict (cancelled): let the next caller try."""
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                state.trial_started_at = None

    def failures(self, key: object) -> int:
        with self._lock:
            state = self._states.get(key)
            return 0 if state is None else state.failures
