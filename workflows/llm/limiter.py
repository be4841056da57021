"""A concurrency limit shared by every thread and event loop of the process.

``asyncio.Semaphore`` belongs to one event loop, but a Celery worker process runs up to 64
threads, each with its own persistent loop, all calling the same model server. This limiter
keeps its count under a ``threading.Lock`` and parks each waiter on a future of the waiter's
own loop, woken with ``call_soon_threadsafe``. Waiters are served first come, first served:
a newcomer never overtakes someone already waiting.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = field(default=False)


def _wake(future: asyncio.Future[None]) -> None:
    # Cancelled meanwhile: the cancelled acquire() sees ``granted`` and gives the slot back.
    if not future.done():
        future.set_result(None)


class ConcurrencyLimiter:
    """At most ``limit`` holders at once, over all threads and loops; FIFO for the rest."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._limit = max(1, limit)
        self._in_use = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def set_limit(self, limit: int) -> None:
        """Change the limit (the endpoint was edited). Holders above a lowered limit keep
        their slots; new ones wait until the count is below it."""
        with self._lock:
            self._limit = max(1, limit)
            self._dispatch_locked()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_use < self._limit and not self._waiters:
                self._in_use += 1
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:  # cancelled (run timeout, caller gone) while waiting
            with self._lock:
                if not waiter.granted:
                    self._waiters.remove(waiter)
                    raise
            self.release()  # a slot was handed over as we were cancelled: pass it on
            raise

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1
            self._dispatch_locked()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def _dispatch_locked(self) -> None:
        while self._waiters and self._in_use < self._limit:
            waiter = self._waiters.popleft()
            try:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
            except RuntimeError:  # its loop was closed: nobody will ever take this slot
                continue
            waiter.granted = True
            self._in_use += 1
