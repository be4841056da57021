"""The getUpdates loop against the Bot API double: at-least-once delivery (offsets stored
after handling), backoff on conflicts and errors, 429 waits, and stopping."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from connectors.base import ConnectorSettings
from connectors.telegram.api import TelegramApiError
from connectors.telegram.polling import TelegramPoller
from tests.connectors.telegram.conftest import fixture, make_settings
from tests.doubles.telegram_server import TelegramDouble

NAMES = ("private_text", "group_mention", "photo_caption")


class Store:
    """The caller's offset store (async, like an ORM call through sync_to_async)."""

    def __init__(self) -> None:
        self.offset: int | None = None
        self.history: list[int] = []

    async def get(self) -> int | None:
        return self.offset

    async def set(self, offset: int) -> None:
        self.offset = offset
        self.history.append(offset)


class Recording(TelegramPoller):
    """A poller that notes every pause it makes."""

    pauses: list[float]

    async def _pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await super()._pause(seconds)


def poller(
    settings: ConnectorSettings,
    handle: Any,
    store: Store,
    stop: asyncio.Event,
    **options: Any,
) -> Recording:
    options.setdefault("timeout_s", 1)
    options.setdefault("backoff_base_s", 0.05)
    made = Recording(
        settings, handle, get_offset=store.get, set_offset=store.set, stop=stop, **options
    )
    made.pauses = []
    return made


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def enqueue_all(double: TelegramDouble) -> list[int]:
    return [double.enqueue(fixture(name)) for name in NAMES]


def test_offsets_are_stored_after_each_update_is_handled(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    ids = enqueue_all(double)
    store = Store()
    handled: list[int] = []
    offsets_while_handling: list[int | None] = []

    async def handle(update: dict[str, Any]) -> None:
        offsets_while_handling.append(store.offset)
        await asyncio.sleep(0.01)
        handled.append(update["update_id"])

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(poller(tg, handle, store, stop).run())
        # Telegram forgets the updates only when the next getUpdates carries the offset.
        await until(lambda: handled == ids and double.pending() == [])
        stop.set()
        await asyncio.wait_for(running, 2)

    asyncio.run(scenario())
    assert handled == ids
    assert offsets_while_handling == [None, ids[0] + 1, ids[1] + 1]
    assert store.history == [ids[0] + 1, ids[1] + 1, ids[2] + 1]
    offsets = [call.params.get("offset") for call in double.calls_to("getUpdates")]
    assert offsets[0] is None
    assert offsets[1] == ids[2] + 1


def test_a_crash_while_handling_redelivers_the_update(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    ids = enqueue_all(double)
    store = Store()
    handled: list[int] = []

    class Crash(BaseException):
        pass

    async def crashing(update: dict[str, Any]) -> None:
        if update["update_id"] == ids[1]:
            raise Crash  # the process dies here: not caught by the loop
        handled.append(update["update_id"])

    async def fine(update: dict[str, Any]) -> None:
        handled.append(update["update_id"])

    async def scenario() -> None:
        stop = asyncio.Event()
        with pytest.raises(Crash):
            await asyncio.wait_for(poller(tg, crashing, store, stop).run(), 5)
        assert store.offset == ids[0] + 1
        restarted = asyncio.create_task(poller(tg, fine, store, stop).run())
        await until(lambda: len(handled) == 3)
        stop.set()
        await asyncio.wait_for(restarted, 2)

    asyncio.run(scenario())
    assert handled == ids  # the first update once, the crashed one again, nothing lost
    assert store.offset == ids[2] + 1


def test_a_failing_handler_is_retried_after_a_backoff(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    ids = enqueue_all(double)
    store = Store()
    calls: list[int] = []

    async def flaky(update: dict[str, Any]) -> None:
        calls.append(update["update_id"])
        if calls.count(ids[1]) == 1 and update["update_id"] == ids[1]:
            raise RuntimeError("database unavailable")

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = poller(tg, flaky, store, stop)
        running = asyncio.create_task(made.run())
        await until(lambda: store.offset == ids[2] + 1)
        stop.set()
        await asyncio.wait_for(running, 2)
        return made

    made = asyncio.run(scenario())
    assert calls == [ids[0], ids[1], ids[1], ids[2]]
    assert len(made.pauses) == 1
    assert made.failures == 0


def test_a_poisonous_update_is_skipped_after_max_attempts(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    ids = enqueue_all(double)
    store = Store()
    handled: list[int] = []

    async def handle(update: dict[str, Any]) -> None:
        if update["update_id"] == ids[1]:
            raise ValueError("cannot be handled")
        handled.append(update["update_id"])

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = poller(tg, handle, store, stop, max_handle_attempts=3)
        running = asyncio.create_task(made.run())
        await until(lambda: store.offset == ids[2] + 1)
        stop.set()
        await asyncio.wait_for(running, 2)
        return made

    made = asyncio.run(scenario())
    assert handled == [ids[0], ids[2]]
    assert len(made.pauses) == 2  # two failures, the third attempt gives up


def test_conflicts_back_off_exponentially_then_recover(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    double.inject("409", method="getUpdates", count=3)
    [update_id] = [double.enqueue(fixture("private_text"))]
    store = Store()
    handled: list[int] = []

    async def handle(update: dict[str, Any]) -> None:
        handled.append(update["update_id"])

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = poller(tg, handle, store, stop, backoff_base_s=0.04)
        running = asyncio.create_task(made.run())
        await until(lambda: handled == [update_id])
        assert made.failures == 0
        stop.set()
        await asyncio.wait_for(running, 2)
        return made

    made = asyncio.run(scenario())
    # Equal jitter: attempt n waits between half and all of base * 2**(n-1).
    bounds = [(0.02, 0.04), (0.04, 0.08), (0.08, 0.16)]
    assert len(made.pauses) == 3
    for pause, (low, high) in zip(made.pauses, bounds, strict=True):
        assert low <= pause <= high
    assert len(double.calls_to("getUpdates")) >= 4


def test_webhook_conflict_waits_until_the_webhook_is_deleted(
    double: TelegramDouble, tg: ConnectorSettings
) -> None:
    from connectors.telegram import api

    asyncio.run(api.set_webhook(tg, "https://assistant.example.com/hook"))
    update_id = double.enqueue(fixture("private_text"))
    store = Store()
    handled: list[int] = []

    async def handle(update: dict[str, Any]) -> None:
        handled.append(update["update_id"])

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = poller(tg, handle, store, stop, backoff_base_s=0.05)
        running = asyncio.create_task(made.run())
        await until(lambda: len(made.pauses) >= 2)
        error = made.last_error
        assert isinstance(error, api.PollingConflict)
        assert error.reason == "webhook_active"
        await api.delete_webhook(tg)
        await until(lambda: handled == [update_id])
        stop.set()
        await asyncio.wait_for(running, 2)
        return made

    asyncio.run(scenario())
    assert handled == [update_id]


def test_rate_limit_waits_the_retry_after(double: TelegramDouble, tg: ConnectorSettings) -> None:
    double.inject("429", method="getUpdates", retry_after=1)
    update_id = double.enqueue(fixture("private_text"))
    handled: list[int] = []

    async def handle(update: dict[str, Any]) -> None:
        handled.append(update["update_id"])

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = poller(tg, handle, Store(), stop)
        running = asyncio.create_task(made.run())
        await until(lambda: handled == [update_id])
        stop.set()
        await asyncio.wait_for(running, 2)
        return made

    made = asyncio.run(scenario())
    assert made.pauses == [1.0]


def test_stop_ends_a_long_poll_at_once(double: TelegramDouble, tg: ConnectorSettings) -> None:
    async def handle(update: dict[str, Any]) -> None:
        raise AssertionError("nothing to handle")

    async def scenario() -> float:
        stop = asyncio.Event()
        running = asyncio.create_task(poller(tg, handle, Store(), stop, timeout_s=20).run())
        await until(lambda: len(double.calls_to("getUpdates")) == 1)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, 2)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 0.5
    assert len(double.calls_to("getUpdates")) == 1


def test_stop_during_a_backoff_ends_it(double: TelegramDouble, tg: ConnectorSettings) -> None:
    double.inject("500", method="getUpdates")

    async def handle(update: dict[str, Any]) -> None:
        return None

    async def scenario() -> float:
        stop = asyncio.Event()
        made = poller(tg, handle, Store(), stop, backoff_base_s=30)
        running = asyncio.create_task(made.run())
        await until(lambda: len(made.pauses) == 1)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, 2)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 0.5


def test_a_revoked_token_ends_the_loop(double: TelegramDouble, settings: Any) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    revoked = make_settings(double.url, bot_token="5555555555:AArevokedrevokedrevokedrevoked")

    async def handle(update: dict[str, Any]) -> None:
        return None

    with pytest.raises(TelegramApiError) as caught:
        asyncio.run(asyncio.wait_for(poller(revoked, handle, Store(), asyncio.Event()).run(), 5))
    assert caught.value.permanent
    assert caught.value.error_code == 401


def test_sync_offset_store_works_too(double: TelegramDouble, tg: ConnectorSettings) -> None:
    ids = enqueue_all(double)
    stored: list[int] = []

    async def handle(update: dict[str, Any]) -> None:
        return None

    async def scenario() -> None:
        stop = asyncio.Event()
        made = TelegramPoller(
            tg,
            handle,
            get_offset=lambda: stored[-1] if stored else None,
            set_offset=stored.append,
            stop=stop,
            timeout_s=1,
        )
        running = asyncio.create_task(made.run())
        await until(lambda: stored[-1:] == [ids[2] + 1])
        stop.set()
        await asyncio.wait_for(running, 2)

    asyncio.run(scenario())
    assert stored == [ids[0] + 1, ids[1] + 1, ids[2] + 1]


def test_backoff_is_capped() -> None:
    made = TelegramPoller(
        make_settings(),
        lambda update: asyncio.sleep(0),
        get_offset=lambda: None,
        set_offset=lambda offset: None,
        backoff_base_s=1,
        backoff_cap_s=8,
    )
    assert all(4 <= made.backoff_s(failures) <= 8 for failures in (4, 10, 60))
