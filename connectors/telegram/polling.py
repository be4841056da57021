"""Long polling for connectors in ``polling`` mode: getUpdates in a loop, no ORM.

The caller (a worker) gives the loop what it must not know itself: ``handle`` (store the
update and start its processing; the same function the webhook view ends in) and an offset
store (``get_offset``/``set_offset``, e.g. a column on the connector), either sync or async.

Delivery is at least once: the offset (the highest handled ``update_id`` + 1) is stored
after each update has been handled, and Telegram only forgets updates below the offset of a
later getUpdates. A crash between handling and storing re-delivers that update, which the
connector's dedupe key (``update:<id>``) absorbs; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from connectors.base import ConnectorSettings
from connectors.telegram import api

logger = logging.getLogger(__name__)

T = TypeVar("T")
OffsetGetter = Callable[[], Awaitable[int | None] | int | None]
OffsetSetter = Callable[[int], Awaitable[None] | None]


class _Stopped(Exception):  # noqa: N818  (control flow, never escapes)
    pass


class TelegramPoller:
    """Poll getUpdates for one bot until ``stop`` is set.

    - ``timeout_s``: the long-poll wait; the HTTP deadline is longer (``api.get_updates``).
    - Conflicts (409: a webhook is set, or another poller uses the token) and transient
      errors (5xx, connection failures) back off exponentially from ``backoff_base_s`` up
      to ``backoff_cap_s``, with jitter so that pollers do not retry in step; a 429 waits
      the ``retry_after`` Telegram asks for. Success resets the backoff.
    - A permanent error (the token was revoked) ends :meth:`run` by raising it.
    - An update whose ``handle`` raises is retried (the whole batch is fetched again after
      a backoff); after ``max_handle_attempts`` failures in a row it is skipped and logged,
      so that one poisonous update cannot stop the bot for good.
    - Setting ``stop`` ends a long poll at once (its updates are not confirmed, so they come
      again next time) and lets an update being handled finish first.
    """

    def __init__(
        self,
        settings: ConnectorSettings,
        handle: Callable[[dict[str, Any]], Awaitable[None]],
        *,
        get_offset: OffsetGetter,
        set_offset: OffsetSetter,
        stop: asyncio.Event | None = None,
        timeout_s: int = 30,
        limit: int = 100,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        max_handle_attempts: int = 5,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.get_offset = get_offset
        self.set_offset = set_offset
        self.stop = stop if stop is not None else asyncio.Event()
        self.timeout_s = timeout_s
        self.limit = limit
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_handle_attempts = max_handle_attempts
        self.failures = 0  # consecutive failed rounds; drives the backoff
        self.last_error: Exception | None = None
        self._attempts: dict[int, int] = {}  # update_id -> failed handle() calls

    async def run(self) -> None:
        """Poll until ``stop`` is set; raises a permanent :class:`api.TelegramApiError`."""
        while not self.stop.is_set():
            try:
                await self.poll_once()
            except _Stopped:
                break
            except api.TelegramApiError as exc:
                if exc.permanent:
                    raise
                await self._failed(exc, exc.retry_after_s)
            except _HandleFailedError as exc:
                await self._failed(exc.error, None)
            else:
                self.failures = 0
                self.last_error = None

    async def poll_once(self) -> int:
        """One getUpdates and the handling of what it brought; answers how many updates
        were handled."""
        offset = await _maybe_await(self.get_offset())
        updates = await self._unless_stopped(
            api.get_updates(self.settings, offset, self.timeout_s, self.limit)
        )
        handled = 0
        for update in sorted(updates, key=_update_id):
            update_id = _update_id(update)
            if update_id < 0 or (offset is not None and update_id < offset):
                continue  # confirmed already (or not an update at all)
            if self.stop.is_set():
                break
            try:
                await self.handle(update)
            except Exception as exc:  # the caller's code: any failure, retried then skipped
                if not self._give_up(update_id, exc):
                    raise _HandleFailedError(exc) from exc
            else:
                handled += 1
            self._attempts.pop(update_id, None)
            await _maybe_await(self.set_offset(update_id + 1))
        return handled

    def backoff_s(self, failures: int) -> float:
        """Exponential with "equal jitter": half fixed, half random, capped."""
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** max(0, failures - 1))
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  (jitter, not a secret)

    def _give_up(self, update_id: int, exc: Exception) -> bool:
        attempts = self._attempts.get(update_id, 0) + 1
        self._attempts[update_id] = attempts
        if attempts < self.max_handle_attempts:
            return False
        logger.error(
            "telegram connector %s: skipping update %s after %s failed attempts: %r",
            self.settings.connector_id,
            update_id,
            attempts,
            exc,
        )
        return True

    async def _failed(self, exc: Exception, retry_after_s: float | None) -> None:
        self.failures += 1
        self.last_error = exc
        delay = retry_after_s if retry_after_s is not None else self.backoff_s(self.failures)
        logger.warning(
            "telegram connector %s: polling failed (%s), next try in %.1f s",
            self.settings.connector_id,
            exc,
            delay,
        )
        await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up as soon as ``stop`` is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=max(0.0, seconds))

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T:
        """``work``'s result, or :class:`_Stopped` (and ``work`` cancelled) if ``stop`` is
        set first."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise _Stopped
        return task.result()


class _HandleFailedError(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _update_id(update: dict[str, Any]) -> int:
    value = update.get("update_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


async def _maybe_await(value: Awaitable[T] | T) -> T:
    if inspect.isawaitable(value):
        return await value
    return value
