"""Feishu's long connection against the long-connection double: events reach ``handle`` and
are answered only after it returned, split messages are joined, pings flow, lost connections
come back by themselves, refusals back off, and ``stop`` ends everything."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from connectors.base import ConnectorSettings
from connectors.feishu.adapter import FeishuAdapter, FeishuConfig, FeishuSecrets
from connectors.feishu.longconn import (
    EXCEED_CONN_LIMIT,
    FeishuLongConnection,
    LongConnectionError,
    ServerConfig,
)
from tests.doubles.feishu_server import message_event
from tests.doubles.feishu_ws_server import FeishuWsDouble

APP_ID = "cli_a5f3d2c1b0e90001"
CHAT = "oc_a0553eda9014c201e6969b478895c230"
WAIT_S = 10.0  # generous: only failures wait this long


def connector_settings(
    double: FeishuWsDouble, *, app_secret: str | None = None
) -> ConnectorSettings:
    return ConnectorSettings(
        connector_id=7,
        config=FeishuConfig(app_id=double.app_id, bot_open_id=""),
        secrets=FeishuSecrets(app_secret=app_secret or double.app_secret),
        api_base_url=double.base_url,
    )


class Recording(FeishuLongConnection):
    """A long connection that notes every pause it makes."""

    pauses: list[float]

    async def _pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await super()._pause(seconds)


class Inbox:
    """The caller's ``handle``: records payloads; fails the first ``failures`` calls; waits
    for ``gate`` when one is given."""

    def __init__(self, *, failures: int = 0, gate: asyncio.Event | None = None) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.calls = 0
        self.entered = 0
        self.failures = failures
        self.gate = gate

    async def __call__(self, payload: dict[str, Any]) -> None:
        self.entered += 1
        if self.gate is not None:
            await self.gate.wait()
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("database unavailable")
        self.payloads.append(payload)


def long_connection(
    double: FeishuWsDouble, handle: Any, stop: asyncio.Event, **options: Any
) -> Recording:
    app_secret = options.pop("app_secret", None)
    options.setdefault("backoff_base_s", 0.05)
    made = Recording(
        connector_settings(double, app_secret=app_secret), handle, stop=stop, **options
    )
    made.pauses = []
    return made


async def until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def stopped(stop: asyncio.Event, running: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(running, WAIT_S)


@pytest.fixture
def double(settings: Settings) -> Iterator[FeishuWsDouble]:
    """A started double on a free loopback port, which the SSRF guard lets through; it asks
    clients to reconnect at once (ReconnectNonce 0) and to wait at most 1 s between tries."""
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with FeishuWsDouble(app_id=APP_ID, reconnect_nonce_s=0, reconnect_interval_s=1) as made:
        yield made


def event(text: str = "hello", **fields: Any) -> dict[str, Any]:
    fields.setdefault("app_id", APP_ID)
    return message_event(chat_id=CHAT, text=text, **fields)


# -- events --------------------------------------------------------------------------------------


def test_an_event_reaches_handle_and_is_answered_200(double: FeishuWsDouble) -> None:
    payload = event("你好")
    inbox = Inbox()

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = long_connection(double, inbox, stop)
        running = asyncio.create_task(made.run())
        await until(lambda: double.open_connections == 1)
        message_id = double.push(payload)
        await until(lambda: double.acks_for(message_id) == [200])
        assert made.health()["connected"] is True
        await stopped(stop, running)
        return made

    made = asyncio.run(scenario())
    assert inbox.payloads == [payload]
    [request] = double.endpoint_requests
    assert request.body == {"AppID": APP_ID, "AppSecret": double.app_secret}
    assert request.headers.get("locale") == "zh"
    [ack] = double.acks
    assert ack.headers["type"] == "event"
    assert int(ack.headers["biz_rt"]) >= 0
    assert double.protocol_errors == []
    health = made.health()
    assert health["events"] == 1
    assert health["last_event_at"] is not None
    assert health["reconnects"] == 0
    assert health["last_error"] is None
    # The caller stores the payload as a webhook push; the adapter reads it the same way.
    [item] = FeishuAdapter().parse(made.settings, inbox.payloads[0])
    assert item.kind == "message"
    assert item.message is not None
    assert item.message.text == "你好"


def test_an_event_is_answered_only_after_handle_returns(double: FeishuWsDouble) -> None:
    async def scenario() -> tuple[Inbox, list[int | None]]:
        stop = asyncio.Event()
        inbox = Inbox(gate=asyncio.Event())
        running = asyncio.create_task(long_connection(double, inbox, stop).run())
        await until(lambda: double.open_connections == 1)
        message_id = double.push(event())
        await until(lambda: inbox.entered == 1)
        await asyncio.sleep(0.3)  # an answer sent before handle returned would be here
        answered_while_handling = double.acks_for(message_id)
        assert inbox.gate is not None
        inbox.gate.set()
        await until(lambda: double.acks_for(message_id) == [200])
        await stopped(stop, running)
        return inbox, answered_while_handling

    inbox, answered_while_handling = asyncio.run(scenario())
    assert answered_while_handling == []
    assert len(inbox.payloads) == 1


def test_a_failing_handle_is_answered_500_and_the_redelivery_is_handled(
    settings: Settings,
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    payload = event("retry me")

    async def scenario(double: FeishuWsDouble) -> tuple[Inbox, Recording, str]:
        stop = asyncio.Event()
        inbox = Inbox(failures=1)
        made = long_connection(double, inbox, stop)
        running = asyncio.create_task(made.run())
        await until(lambda: double.open_connections == 1)
        message_id = double.push(payload)
        await until(lambda: double.acks_for(message_id) == [500, 200])
        await stopped(stop, running)
        return inbox, made, message_id

    with FeishuWsDouble(app_id=APP_ID, redeliver_after_s=0.1) as double:
        inbox, made, message_id = asyncio.run(scenario(double))
    assert inbox.calls == 2
    assert inbox.payloads == [payload]
    assert len(double.connections) == 1  # answered on the same connection
    health = made.health()
    assert health["events"] == 1
    assert f"handling event {message_id} failed" in (health["last_error"] or "")
    assert double.protocol_errors == []


def test_split_messages_are_joined_whatever_the_order_of_their_parts(
    double: FeishuWsDouble,
) -> None:
    # CJK text: the parts are cut inside multi-byte characters, joining must be by bytes.
    payload = event("长连接把大的事件分成几帧发送。" * 40)
    second = event("second")
    inbox = Inbox()

    async def scenario() -> tuple[str, str]:
        stop = asyncio.Event()
        running = asyncio.create_task(long_connection(double, inbox, stop).run())
        await until(lambda: double.open_connections == 1)
        split = double.push(payload, parts=3, order=(2, 0, 1))
        whole = double.push(second)
        await until(lambda: double.acks_for(split) == [200] and double.acks_for(whole) == [200])
        await stopped(stop, running)
        return split, whole

    split, _whole = asyncio.run(scenario())
    assert inbox.payloads == [payload, second]
    [ack] = [ack for ack in double.acks if ack.message_id == split]
    assert ack.headers["sum"] == "3"
    assert ack.headers["seq"] == "1"  # answered with the frame that completed it
    assert double.protocol_errors == []


def test_an_event_for_another_app_and_garbage_are_answered_and_dropped(
    double: FeishuWsDouble,
) -> None:
    inbox = Inbox()

    async def scenario() -> tuple[Recording, list[str]]:
        stop = asyncio.Event()
        made = long_connection(double, inbox, stop)
        running = asyncio.create_task(made.run())
        await until(lambda: double.open_connections == 1)
        errors: list[str] = []
        for payload in (event(app_id="cli_ffffffffffffffff"), b"not json", b'["a list"]'):
            message_id = double.push(payload)
            await until(lambda: double.acks_for(message_id) == [200])  # noqa: B023  (used in this iteration)
            errors.append(made.health()["last_error"] or "")
        await stopped(stop, running)
        return made, errors

    made, errors = asyncio.run(scenario())
    assert inbox.calls == 0
    assert made.health()["events"] == 0
    assert f"is for app cli_ffffffffffffffff, not {APP_ID}" in errors[0]
    assert "is not a JSON object" in errors[1]
    assert "is not a JSON object" in errors[2]
    assert double.protocol_errors == []


# -- pings ---------------------------------------------------------------------------------------


def test_pings_flow_and_pongs_carry_new_settings(settings: Settings) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]

    async def scenario(double: FeishuWsDouble) -> Recording:
        stop = asyncio.Event()
        made = long_connection(double, Inbox(), stop)
        running = asyncio.create_task(made.run())
        await until(lambda: double.pings >= 2)
        assert made.config.ping_interval_s == 1
        double.set_client_config(PingInterval=5, ReconnectInterval=9)
        await until(lambda: made.config.ping_interval_s == 5)
        await stopped(stop, running)
        return made

    with FeishuWsDouble(app_id=APP_ID, ping_interval_s=1) as double:
        made = asyncio.run(scenario(double))
    assert double.pongs >= 2
    assert made.pings >= 2
    assert made.health()["config"]["ping_interval_s"] == 5
    assert made.health()["config"]["reconnect_interval_s"] == 9
    assert double.protocol_errors == []  # right service id, type and method on each ping


# -- reconnecting --------------------------------------------------------------------------------


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "cut"])
def test_after_the_server_drops_the_connection_the_client_comes_back(
    double: FeishuWsDouble, abrupt: bool
) -> None:
    first, later = event("before"), event("after")
    inbox = Inbox()

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = long_connection(double, inbox, stop)
        running = asyncio.create_task(made.run())
        await until(lambda: double.open_connections == 1)
        before = double.push(first)
        await until(lambda: double.acks_for(before) == [200])
        assert double.drop(abrupt=abrupt) == 1
        await until(lambda: len(double.connections) == 2 and double.open_connections == 1)
        after = double.push(later)
        await until(lambda: double.acks_for(after) == [200])
        await stopped(stop, running)
        return made

    made = asyncio.run(scenario())
    assert inbox.payloads == [first, later]
    assert len(double.endpoint_requests) == 2  # a new address for each connection
    first_connection, second_connection = double.connections
    assert first_connection.service_id != second_connection.service_id
    health = made.health()
    assert health["reconnects"] == 1
    assert health["failures"] == 0
    assert "the long connection was lost" in (health["last_error"] or "")
    assert double.protocol_errors == []


def test_an_event_left_unanswered_by_a_lost_connection_comes_again(settings: Settings) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    payload = event("in flight")

    async def scenario(double: FeishuWsDouble) -> Inbox:
        stop = asyncio.Event()
        gate = asyncio.Event()
        inbox = Inbox(gate=gate)
        running = asyncio.create_task(long_connection(double, inbox, stop).run())
        await until(lambda: double.open_connections == 1)
        message_id = double.push(payload)
        await until(lambda: inbox.entered == 1)
        double.drop(abrupt=True)  # the answer cannot be sent any more
        gate.set()
        await until(lambda: double.acks_for(message_id) == [200])
        await stopped(stop, running)
        return inbox

    with FeishuWsDouble(
        app_id=APP_ID, reconnect_nonce_s=0, reconnect_interval_s=1, redeliver_after_s=0.1
    ) as double:
        inbox = asyncio.run(scenario(double))
    # Handled twice (the caller's dedupe key absorbs that), answered once: at least once.
    assert inbox.payloads == [payload, payload]
    assert len(double.connections) == 2


def test_endpoint_trouble_is_retried_with_backoff(double: FeishuWsDouble) -> None:
    double.fail_endpoint(code=1, msg="system busy", count=2)
    double.fail_endpoint(code=0, status=503, msg="", count=1)

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = long_connection(double, Inbox(), stop, backoff_base_s=0.1)
        running = asyncio.create_task(made.run())
        await until(lambda: double.open_connections == 1)
        await stopped(stop, running)
        return made

    made = asyncio.run(scenario())
    assert len(double.endpoint_requests) == 4
    assert len(made.pauses) == 3
    for attempt, pause in enumerate(made.pauses, start=1):
        ceiling = 0.1 * 2 ** (attempt - 1)
        assert ceiling / 2 <= pause <= ceiling
    health = made.health()
    assert health["failures"] == 0  # connected in the end
    assert "HTTP 503" in (health["last_error"] or "")


def test_bad_credentials_show_in_health_and_back_off(double: FeishuWsDouble) -> None:
    async def scenario() -> tuple[Recording, dict[str, Any]]:
        stop = asyncio.Event()
        made = long_connection(
            double, Inbox(), stop, app_secret="not-the-secret", backoff_base_s=0.1
        )
        running = asyncio.create_task(made.run())
        await until(lambda: len(made.pauses) >= 4)
        health = made.health()
        await stopped(stop, running)
        return made, health

    made, health = asyncio.run(scenario())
    assert health["connected"] is False
    assert health["failures"] >= 4
    assert "code 10014" in health["last_error"]
    assert "App Secret" in health["last_error"]
    assert double.open_connections == 0
    assert double.connections == []
    # Each failed attempt waits, twice as long as the one before (with jitter): no tight loop.
    for attempt, pause in enumerate(made.pauses, start=1):
        ceiling = 0.1 * 2 ** (attempt - 1)
        assert ceiling / 2 <= pause <= ceiling
    assert len(double.endpoint_requests) <= len(made.pauses) + 1


def test_too_many_connections_is_a_refusal_and_an_auth_failure_is_not(
    double: FeishuWsDouble,
) -> None:
    double.refuse_handshake(msg="exceed conn limit", autherrcode=EXCEED_CONN_LIMIT)
    double.refuse_handshake(msg="auth failed")
    errors: list[str] = []

    class Noting(Recording):
        async def _pause(self, seconds: float) -> None:
            errors.append(self.last_error or "")
            await super()._pause(seconds)

    async def scenario() -> Noting:
        stop = asyncio.Event()
        made = Noting(connector_settings(double), Inbox(), stop=stop, backoff_base_s=0.05)
        made.pauses = []
        running = asyncio.create_task(made.run())
        await until(lambda: double.open_connections == 1)
        await stopped(stop, running)
        return made

    made = asyncio.run(scenario())
    assert len(double.endpoint_requests) == 3  # a new ticket for each handshake
    assert "too many connections" in errors[0]
    assert "auth failed" in errors[1]
    assert made.health()["connected"] is False  # after stop
    assert made.health()["reconnects"] == 0


def test_the_server_reconnect_count_is_honoured(double: FeishuWsDouble) -> None:
    double.set_client_config(ReconnectCount=2)

    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = long_connection(double, Inbox(), stop)
        running = asyncio.create_task(made.run())
        await until(lambda: double.open_connections == 1)
        double.fail_endpoint(code=1, msg="system busy", count=10)
        double.drop()
        with pytest.raises(LongConnectionError, match="after 3 attempts"):
            await asyncio.wait_for(running, WAIT_S)
        return made

    made = asyncio.run(scenario())
    assert len(double.endpoint_requests) == 4  # the first connection, then 3 tries
    assert made.health()["failures"] == 3


def test_the_websocket_address_passes_the_ssrf_guard(settings: Settings) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]

    async def scenario(double: FeishuWsDouble) -> Recording:
        stop = asyncio.Event()
        made = long_connection(double, Inbox(), stop)
        running = asyncio.create_task(made.run())
        await until(lambda: made.failures >= 1)
        await stopped(stop, running)
        return made

    with FeishuWsDouble(app_id=APP_ID, ws_host="10.1.2.3") as double:
        made = asyncio.run(scenario(double))
    assert "10.1.2.3 is a private address" in (made.health()["last_error"] or "")
    assert double.connections == []


# -- stopping ------------------------------------------------------------------------------------


def test_stop_ends_run_while_connected(double: FeishuWsDouble) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(long_connection(double, Inbox(), stop).run())
        await until(lambda: double.open_connections == 1)
        await stopped(stop, running)

    asyncio.run(scenario())
    [connection] = double.connections
    assert connection.closed
    assert connection.close_code == 1000  # closed properly, not cut


def test_stop_ends_run_while_waiting_to_retry(double: FeishuWsDouble) -> None:
    async def scenario() -> Recording:
        stop = asyncio.Event()
        made = long_connection(double, Inbox(), stop, app_secret="wrong", backoff_base_s=600)
        running = asyncio.create_task(made.run())
        await until(lambda: made.health()["next_attempt_at"] is not None)
        await stopped(stop, running)  # well before the 300 s or more the backoff asks for
        return made

    made = asyncio.run(scenario())
    assert made.pauses[0] >= 300
    assert len(double.endpoint_requests) == 1


def test_stop_lets_the_event_being_handled_finish_and_be_answered(
    double: FeishuWsDouble,
) -> None:
    async def scenario() -> tuple[Inbox, str]:
        stop = asyncio.Event()
        gate = asyncio.Event()
        inbox = Inbox(gate=gate)
        running = asyncio.create_task(long_connection(double, inbox, stop).run())
        await until(lambda: double.open_connections == 1)
        message_id = double.push(event())
        await until(lambda: inbox.entered == 1)
        stop.set()
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.wait_for(running, WAIT_S)
        return inbox, message_id

    inbox, message_id = asyncio.run(scenario())
    assert len(inbox.payloads) == 1
    assert double.acks_for(message_id) == [200]


# -- policy --------------------------------------------------------------------------------------


def test_retry_delays_follow_the_server_settings() -> None:
    settings = ConnectorSettings(
        connector_id=1,
        config=FeishuConfig(app_id=APP_ID, bot_open_id=""),
        secrets=FeishuSecrets(app_secret="s"),
        api_base_url="https://open.feishu.cn",
    )

    async def ignore(payload: dict[str, Any]) -> None:
        pass

    made = FeishuLongConnection(settings, ignore, backoff_base_s=1.0, rejected_backoff_cap_s=600)
    assert made.config == ServerConfig()  # the SDK's defaults before Feishu answered
    made.config = made.config.merged(
        {"PingInterval": 90, "ReconnectCount": -1, "ReconnectInterval": 60, "ReconnectNonce": 20}
    )
    for _ in range(50):
        assert 0 <= made.retry_delay_s(0) <= 20  # a lost connection: within the nonce
        assert 0.5 <= made.retry_delay_s(1) <= 1
        assert 4 <= made.retry_delay_s(4) <= 8
        assert 30 <= made.retry_delay_s(30) <= 60  # capped by ReconnectInterval
        assert 300 <= made.retry_delay_s(30, rejected=True) <= 600
    made.config = made.config.merged({"ReconnectInterval": 0, "PingInterval": 0, "Other": 1})
    assert made.config.ping_interval_s == 90  # 0 would ping in a tight loop: ignored
    assert made.retry_delay_s(10) >= 0.5  # never a tight loop
    assert made.config.merged(json.loads('{"ReconnectCount": "3"}')).reconnect_count == -1
    health = made.health()
    assert health["connected"] is False
    assert health["since"] is None
    assert health["config"]["reconnect_interval_s"] == 0
