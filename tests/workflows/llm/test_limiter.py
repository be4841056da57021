from __future__ import annotations

import asyncio
import threading

import pytest

from workflows.llm.limiter import ConcurrencyLimiter, _Waiter


class Tally:
    """Counts holders at once, over threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.done = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1
            self.done += 1


def test_limit_holds_across_threads_each_with_its_own_loop() -> None:
    limiter = ConcurrencyLimiter(3)
    tally = Tally()

    async def hold() -> None:
        async with limiter.slot():
            tally.enter()
            await asyncio.sleep(0.01)
            tally.leave()

    async def many() -> None:
        await asyncio.gather(*(hold() for _ in range(20)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert tally.done == 80
    assert tally.peak == 3
    assert limiter.in_use == 0
    assert limiter.waiting == 0


def test_waiters_are_served_first_come_first_served() -> None:
    limiter = ConcurrencyLimiter(1)
    order: list[int] = []

    async def take(number: int) -> None:
        async with limiter.slot():
            order.append(number)
            await asyncio.sleep(0)

    async def main() -> None:
        await limiter.acquire()  # everyone below has to queue
        tasks = []
        for number in range(10):
            tasks.append(asyncio.create_task(take(number)))
            await asyncio.sleep(0)  # let it reach the queue, in this order
        limiter.release()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == list(range(10))


def test_a_newcomer_does_not_overtake_a_waiter_from_another_thread() -> None:
    limiter = ConcurrencyLimiter(1)
    order: list[str] = []
    queued = threading.Event()

    async def waiter() -> None:
        queued.set()
        async with limiter.slot():
            order.append("waiter")

    async def main() -> None:
        await limiter.acquire()
        thread = threading.Thread(target=asyncio.run, args=(waiter(),))
        thread.start()
        queued.wait(5)
        while limiter.waiting == 0:
            await asyncio.sleep(0.001)
        limiter.release()
        async with limiter.slot():  # a newcomer: must come after the waiter
            order.append("newcomer")
        thread.join(5)

    asyncio.run(main())
    assert order == ["waiter", "newcomer"]


def test_a_cancelled_waiter_leaves_the_queue_and_loses_no_slot() -> None:
    limiter = ConcurrencyLimiter(1)

    async def main() -> None:
        await limiter.acquire()
        waiting = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        assert limiter.waiting == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert limiter.waiting == 0
        limiter.release()
        assert limiter.in_use == 0
        async with asyncio.timeout(1):
            async with limiter.slot():
                assert limiter.in_use == 1

    asyncio.run(main())
    assert limiter.in_use == 0


def test_a_waiter_cancelled_just_as_it_is_granted_passes_the_slot_on() -> None:
    limiter = ConcurrencyLimiter(1)

    async def main() -> None:
        await limiter.acquire()
        first = asyncio.create_task(limiter.acquire())
        second = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        limiter.release()  # grants the slot to `first`, whose wake-up is still queued
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        async with asyncio.timeout(1):
            await second  # got the slot `first` gave back
        assert limiter.in_use == 1
        limiter.release()

    asyncio.run(main())
    assert limiter.in_use == 0


def test_timeout_while_waiting_is_clean() -> None:
    limiter = ConcurrencyLimiter(1)

    async def main() -> None:
        await limiter.acquire()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await limiter.acquire()
        limiter.release()

    asyncio.run(main())
    assert (limiter.in_use, limiter.waiting) == (0, 0)


def test_raising_the_limit_wakes_waiters_and_lowering_it_lets_holders_finish() -> None:
    limiter = ConcurrencyLimiter(1)

    async def main() -> None:
        await limiter.acquire()
        waiters = [asyncio.create_task(limiter.acquire()) for _ in range(2)]
        await asyncio.sleep(0.01)
        limiter.set_limit(3)
        async with asyncio.timeout(1):
            await asyncio.gather(*waiters)
        assert limiter.in_use == 3
        limiter.set_limit(1)
        late = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        assert not late.done()
        limiter.release()
        limiter.release()
        await asyncio.sleep(0.01)
        assert not late.done()  # still 1 holder, the limit is 1
        limiter.release()
        async with asyncio.timeout(1):
            await late
        limiter.release()

    asyncio.run(main())
    assert limiter.in_use == 0


def test_a_waiter_whose_loop_closed_is_skipped() -> None:
    limiter = ConcurrencyLimiter(1)
    asyncio.run(limiter.acquire())  # held, by a loop that is gone
    dead_loop = asyncio.new_event_loop()
    # What a thread leaves behind if its loop closes while it waits.
    limiter._waiters.append(_Waiter(dead_loop, dead_loop.create_future()))
    dead_loop.close()
    limiter.release()
    assert (limiter.in_use, limiter.waiting) == (0, 0)

    async def take() -> None:
        async with asyncio.timeout(1), limiter.slot():
            assert limiter.in_use == 1

    asyncio.run(take())
    assert limiter.in_use == 0
