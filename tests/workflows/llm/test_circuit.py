from __future__ import annotations

import threading

from workflows.llm.circuit import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_of_failures_in_a_row() -> None:
    clock = Clock()
    changes: list[tuple[str, bool]] = []
    breaker = CircuitBreaker(
        failure_threshold=3, open_for_s=30, clock=clock, on_change=lambda *c: changes.append(c)
    )
    for _ in range(2):
        breaker.record_failure(1, "a")
    assert breaker.check(1).allowed
    breaker.record_failure(1, "a")
    verdict = breaker.check(1)
    assert not verdict.allowed
    assert verdict.retry_in_s == 30
    assert verdict.failures == 3
    assert changes == [("a", True)]
    assert breaker.check(2).allowed  # per endpoint


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=Clock())
    breaker.record_failure(1)
    breaker.record_failure(1)
    breaker.record_success(1)
    breaker.record_failure(1)
    breaker.record_failure(1)
    assert breaker.check(1).allowed


def test_half_open_lets_one_trial_through_and_success_closes() -> None:
    clock = Clock()
    changes: list[tuple[str, bool]] = []
    breaker = CircuitBreaker(
        failure_threshold=1, open_for_s=30, clock=clock, on_change=lambda *c: changes.append(c)
    )
    breaker.record_failure(1, "a")
    clock.now += 29.9
    assert not breaker.check(1).allowed
    clock.now += 0.2
    trial = breaker.check(1)
    assert trial.allowed
    assert trial.trial
    assert not breaker.check(1).allowed  # only one trial at a time
    breaker.record_success(1, "a")
    assert breaker.check(1) == breaker.check(1)
    assert breaker.check(1).allowed
    assert not breaker.check(1).trial
    assert changes == [("a", True), ("a", False)]


def test_a_failed_trial_opens_the_circuit_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, open_for_s=30, clock=clock)
    breaker.record_failure(1)
    clock.now += 31
    assert breaker.check(1).trial
    breaker.record_failure(1)
    verdict = breaker.check(1)
    assert not verdict.allowed
    assert verdict.retry_in_s == 30
    clock.now += 31
    assert breaker.check(1).trial


def test_an_abandoned_trial_lets_the_next_caller_try() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, open_for_s=30, clock=clock)
    breaker.record_failure(1)
    clock.now += 31
    assert breaker.check(1).trial
    breaker.record_abandoned(1)
    assert breaker.check(1).trial


def test_a_trial_that_never_reports_expires() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, open_for_s=30, clock=clock)
    breaker.record_failure(1)
    clock.now += 31
    assert breaker.check(1).trial
    clock.now += 10
    assert not breaker.check(1).allowed
    clock.now += 21
    assert breaker.check(1).trial


def test_failures_from_many_threads_are_all_counted() -> None:
    breaker = CircuitBreaker(failure_threshold=10_000, clock=Clock())

    def fail() -> None:
        for _ in range(1000):
            breaker.record_failure(1)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.failures(1) == 8000
