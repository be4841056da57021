"""A protocol double of Feishu's long-connection server (events over a WebSocket).

It is NOT Feishu: one app, in memory, on a loopback port, served from a thread. The wire
format follows lark-oapi 1.7.5 (``lark_oapi/ws``: client.py, const.py, model.py, pb/), the
client every Feishu SDK agrees with; connectors/feishu/longconn.py explains the protocol.

Endpoints
    ``POST /callback/ws/endpoint`` with ``{"AppID": ..., "AppSecret": ...}`` answers
    ``{"code": 0, "msg": "success", "data": {"URL": "ws://127.0.0.1:<port>/ws/v2?fpid=493&
    aid=552564&device_id=...&access_key=...&service_id=...&ticket=...", "ClientConfig":
    {"PingInterval": ..., "ReconnectCount": ..., "ReconnectInterval": ..., "ReconnectNonce":
    ...}}}`` (field names and integer seconds as the SDK's ``EndpointResp``; the query as the
    real URL has it). Credentials are refused with HTTP 200 and a code the SDK classes as a
    client error (neither 0, 1 nor 1000040343): 10003 for an unknown App ID, 10014 for a
    wrong App Secret. These two codes are the double's choice (those of the Open Platform's
    token endpoint, as in feishu_server.py): the codes the real endpoint uses are not
    documented.
    ``GET /ws/v2`` opens the WebSocket; its ticket must come from the endpoint and serves
    once. A refused handshake is HTTP 403 with the ``handshake-status``, ``handshake-msg``
    and (under 514) ``handshake-autherrcode`` headers the SDK reads: 514 for a bad ticket,
    514 with 1000040350 beyond ``max_connections`` (the HTTP status is the double's choice).

Frames (binary protobuf ``pbbp2.Frame``)
    Pings from the client (control, ``type: ping``, ``service`` = the URL's service_id) are
    answered with a pong carrying the current ClientConfig as JSON. :meth:`push` sends an
    event as data frames (``type``, ``message_id``, ``sum``, ``seq``, ``trace_id`` headers),
    split into ``parts`` when asked; the client's answers (its frame back with ``biz_rt``
    added and ``{"code": N}`` as payload) are recorded per message id.

Delivery
    An event pushed while no client is connected waits for one. With ``redeliver_after_s``,
    an event answered with another code than 200, or left unanswered when its connection
    closed, is sent again after that delay, with the same message id (the double's choice:
    how Feishu numbers a redelivery is not documented).

What tests read
    ``endpoint_requests``, ``connections`` (each: device id, service id, pings, closed),
    ``acks_for(message_id)`` (the codes answered, in order), ``acks`` (with headers),
    ``pongs``, ``protocol_errors`` (anything the client sent that the SDK would not: tests
    assert it stays empty).

Faults
    ``fail_endpoint(code=..., msg=..., status=200, count=1)``,
    ``refuse_handshake(status=514, msg=..., autherrcode=None, count=1)``,
    ``drop(abrupt=False)`` closes every connection (with a close frame, or by cutting the
    TCP connection); ``ws_host`` makes the handed-out URL name another host (for the SSRF
    guard).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import WSMsgType, web
from lark_oapi.ws.pb.pbbp2_pb2 import Frame  # type: ignore[import-untyped]

from tests.doubles.serving import ThreadedDouble

T = TypeVar("T")

ENDPOINT_PATH = "/callback/ws/endpoint"
WS_PATH = "/ws/v2"
FRAME_CONTROL = 0
FRAME_DATA = 1
AUTH_FAILED = 514
EXCEED_CONN_LIMIT = 1000040350
_CALL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class EndpointRequest:
    headers: dict[str, str]
    body: Any


@dataclass
class Connection:
    """One WebSocket a client opened."""

    number: int
    device_id: str
    service_id: int
    pings: int = 0
    closed: bool = False
    close_code: int | None = None


@dataclass(frozen=True)
class Ack:
    """A client's answer to an event: ``code`` from its payload ``{"code": N}``."""

    message_id: str
    code: int | None
    headers: dict[str, str]
    connection: int


@dataclass
class _Delivery:
    message_id: str
    body: bytes
    parts: int
    order: tuple[int, ...]
    kind: str
    sent_on: int | None = None  # the connection it was last sent on, until answered
    done: bool = False


@dataclass
class _Live:
    record: Connection
    ws: web.WebSocketResponse
    request: web.Request


@dataclass
class _Fault:
    kind: str  # endpoint or handshake
    remaining: int
    params: dict[str, Any] = field(default_factory=dict)


class FeishuWsDouble(ThreadedDouble):
    """Feishu's long-connection server for one app; see the module doc."""

    label = "Feishu long-connection"

    def __init__(
        self,
        *,
        app_id: str = "cli_a5f3d2c1b0e90001",
        app_secret: str = "double-app-secret",  # noqa: S107  (the double's own app)
        ping_interval_s: int = 120,
        reconnect_count: int = -1,
        reconnect_interval_s: int = 120,
        reconnect_nonce_s: int = 30,
        redeliver_after_s: float | None = None,
        max_connections: int = 50,
        ws_host: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.client_config: dict[str, int] = {
            "PingInterval": ping_interval_s,
            "ReconnectCount": reconnect_count,
            "ReconnectInterval": reconnect_interval_s,
            "ReconnectNonce": reconnect_nonce_s,
        }
        self.redeliver_after_s = redeliver_after_s
        self.max_connections = max_connections
        self.ws_host = ws_host  # the host the handed-out URL names (default: the double's)
        self.host = host
        self.port = port
        self.endpoint_requests: list[EndpointRequest] = []
        self.connections: list[Connection] = []
        self.acks: list[Ack] = []
        self.pongs = 0
        self.protocol_errors: list[str] = []
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._tickets: set[str] = set()
        self._live: list[_Live] = []
        self._deliveries: dict[str, _Delivery] = {}
        self._waiting: list[_Delivery] = []
        self._sequence = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- public API ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What a connector takes as its API base URL."""
        return f"http://{self.host}:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(ENDPOINT_PATH, self._endpoint)
        app.router.add_get(WS_PATH, self._websocket)
        return app

    async def on_stopping(self) -> None:
        await self._drop(abrupt=False, code=1001)

    def set_client_config(self, **fields: int) -> None:
        """Change what the endpoint answers and pongs carry (``PingInterval=...``)."""
        unknown = set(fields) - set(self.client_config)
        if unknown:
            raise ValueError(f"unknown ClientConfig fields: {', '.join(sorted(unknown))}")
        with self._lock:
            self.client_config.update(fields)

    def fail_endpoint(
        self, *, code: int, msg: str = "system busy", status: int = 200, count: int = 1
    ) -> None:
        """The next ``count`` endpoint calls answer ``{"code": code, "msg": msg}``."""
        with self._lock:
            self._faults.append(
                _Fault("endpoint", count, {"code": code, "msg": msg, "status": status})
            )

    def refuse_handshake(
        self,
        *,
        status: int = AUTH_FAILED,
        msg: str = "auth failed",
        autherrcode: int | None = None,
        count: int = 1,
    ) -> None:
        """The next ``count`` WebSocket handshakes are refused with these headers."""
        params = {"status": status, "msg": msg, "autherrcode": autherrcode}
        with self._lock:
            self._faults.append(_Fault("handshake", count, params))

    def push(
        self,
        payload: Mapping[str, Any] | str | bytes,
        *,
        parts: int = 1,
        order: Sequence[int] | None = None,
        message_id: str | None = None,
        kind: str = "event",
    ) -> str:
        """Send an event (its JSON) to the connected client, split into ``parts`` frames
        sent in ``order`` (the seq numbers; in order by default); answers its message id.
        Without a client it waits for one."""
        if isinstance(payload, bytes):
            body = payload
        elif isinstance(payload, str):
            body = payload.encode()
        else:
            body = json.dumps(payload, ensure_ascii=False).encode()
        if parts < 1 or parts > max(1, len(body)):
            raise ValueError("parts must be between 1 and the payload's length in bytes")
        sequence = tuple(order) if order is not None else tuple(range(parts))
        if sorted(sequence) != list(range(parts)):
            raise ValueError("order must name each part once")
        delivery = _Delivery(
            message_id=message_id or secrets.token_hex(16),
            body=body,
            parts=parts,
            order=sequence,
            kind=kind,
        )
        with self._lock:
            self._deliveries[delivery.message_id] = delivery
        self._call(self._deliver(delivery))
        return delivery.message_id

    def drop(self, *, abrupt: bool = False, code: int = 1000) -> int:
        """Close every open connection; answers how many there were."""
        return self._call(self._drop(abrupt=abrupt, code=code))

    def acks_for(self, message_id: str) -> list[int | None]:
        """The codes the client answered ``message_id`` with, in order."""
        with self._lock:
            return [ack.code for ack in self.acks if ack.message_id == message_id]

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._live)

    @property
    def pings(self) -> int:
        with self._lock:
            return sum(connection.pings for connection in self.connections)

    # -- serving -----------------------------------------------------------------------------

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None or self._thread is None:
            work.close()
            raise RuntimeError("the Feishu long-connection double is not running")
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout=_CALL_TIMEOUT_S)

    def _fault(self, kind: str) -> dict[str, Any] | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault.remaining > 0:
                    fault.remaining -= 1
                    return fault.params
        return None

    async def _endpoint(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.endpoint_requests.append(EndpointRequest(dict(request.headers), body))
        fault = self._fault("endpoint")
        if fault is not None:
            answer = {"code": fault["code"], "msg": fault["msg"], "data": None}
            return web.json_response(answer, status=fault["status"])
        if not isinstance(body, dict) or body.get("AppID") != self.app_id:
            return web.json_response({"code": 10003, "msg": "invalid param: app_id not found"})
        given = body.get("AppSecret")
        if not isinstance(given, str) or not secrets.compare_digest(
            given.encode(), self.app_secret.encode()
        ):
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        ticket = secrets.token_hex(16)
        with self._lock:
            self._tickets.add(ticket)
            self._sequence += 1
            service_id = 33554000 + self._sequence
            config = dict(self.client_config)
        url = (
            f"ws://{self.ws_host or self.host}:{self.port}{WS_PATH}?fpid=493&aid=552564"
            f"&device_id={secrets.token_hex(8)}&access_key={secrets.token_hex(16)}"
            f"&service_id={service_id}&ticket={ticket}"
        )
        data = {"URL": url, "ClientConfig": config}
        return web.json_response({"code": 0, "msg": "success", "data": data})

    def _refusal(self, ticket: str) -> web.Response | None:
        fault = self._fault("handshake")
        with self._lock:
            known = ticket in self._tickets
            self._tickets.discard(ticket)
            crowded = len(self._live) >= self.max_connections
        if fault is not None:
            status, msg, autherrcode = fault["status"], fault["msg"], fault["autherrcode"]
        elif not known:
            status, msg, autherrcode = AUTH_FAILED, "invalid ticket", None
        elif crowded:
            status, msg, autherrcode = AUTH_FAILED, "exceed conn limit", EXCEED_CONN_LIMIT
        else:
            return None
        headers = {"handshake-status": str(status), "handshake-msg": msg}
        if autherrcode is not None:
            headers["handshake-autherrcode"] = str(autherrcode)
        return web.Response(status=403, headers=headers, text=msg)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request.query.get("ticket", ""))
        if refusal is not None:
            return refusal
        try:
            service_id = int(request.query.get("service_id", ""))
        except ValueError:
            return web.Response(status=400, text="no service_id")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._lock:
            record = Connection(
                number=len(self.connections) + 1,
                device_id=request.query.get("device_id", ""),
                service_id=service_id,
            )
            self.connections.append(record)
            live = _Live(record, ws, request)
            self._live.append(live)
            waiting, self._waiting = self._waiting, []
        for delivery in waiting:
            await self._send(live, delivery)
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    await self._on_frame(live, message.data)
                elif message.type == WSMsgType.TEXT:
                    self._protocol_error(record, "a text message (Feishu speaks binary frames)")
        finally:
            with self._lock:
                record.closed = True
                record.close_code = ws.close_code
                if live in self._live:
                    self._live.remove(live)
                unanswered = [
                    d
                    for d in self._deliveries.values()
                    if d.sent_on == record.number and not d.done
                ]
            for delivery in unanswered:
                delivery.sent_on = None
                self._redeliver_later(delivery)
        return ws

    def _protocol_error(self, record: Connection, what: str) -> None:
        with self._lock:
            self.protocol_errors.append(f"connection {record.number}: {what}")

    async def _on_frame(self, live: _Live, data: bytes) -> None:
        record = live.record
        frame = Frame()
        try:
            frame.ParseFromString(data)
        except Exception as exc:  # the SDK's protobuf copy raises its own DecodeError
            self._protocol_error(record, f"not a pbbp2.Frame ({exc})")
            return
        headers = {header.key: header.value for header in frame.headers}
        if frame.method == FRAME_CONTROL:
            if headers.get("type") != "ping":
                self._protocol_error(record, f"control frame of type {headers.get('type')!r}")
                return
            if frame.service != record.service_id:
                self._protocol_error(
                    record, f"ping for service {frame.service}, not {record.service_id}"
                )
            with self._lock:
                record.pings += 1
                config = dict(self.client_config)
            await live.ws.send_bytes(self._pong(record, config))
            return
        if frame.method != FRAME_DATA:
            self._protocol_error(record, f"frame method {frame.method}")
            return
        self._on_answer(record, frame, headers)

    def _pong(self, record: Connection, config: dict[str, int]) -> bytes:
        pong = Frame()
        header = pong.headers.add()
        header.key = "type"
        header.value = "pong"
        pong.service = record.service_id
        pong.method = FRAME_CONTROL
        pong.SeqID = 0
        pong.LogID = 0
        pong.payload = json.dumps(config).encode()
        with self._lock:
            self.pongs += 1
        return bytes(pong.SerializeToString())

    def _on_answer(self, record: Connection, frame: Any, headers: dict[str, str]) -> None:
        message_id = headers.get("message_id", "")
        with self._lock:
            delivery = self._deliveries.get(message_id)
        if delivery is None:
            self._protocol_error(record, f"an answer to unknown message {message_id!r}")
            return
        if "biz_rt" not in headers:
            self._protocol_error(record, f"an answer to {message_id} without biz_rt")
        if headers.get("type") != delivery.kind or headers.get("sum") != str(delivery.parts):
            self._protocol_error(record, f"an answer to {message_id} with other headers")
        try:
            answer = json.loads(frame.payload)
        except ValueError:
            answer = None
        code = answer.get("code") if isinstance(answer, dict) else None
        if not isinstance(code, int):
            self._protocol_error(record, f"an answer to {message_id} without a code")
            code = None
        with self._lock:
            self.acks.append(Ack(message_id, code, headers, record.number))
            delivery.sent_on = None
            delivery.done = code == 200
        if code != 200:
            self._redeliver_later(delivery)

    def _redeliver_later(self, delivery: _Delivery) -> None:
        if self.redeliver_after_s is None or delivery.done or self._loop is None:
            return

        def again() -> None:
            task = asyncio.ensure_future(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._loop.call_later(self.redeliver_after_s, again)

    async def _deliver(self, delivery: _Delivery) -> None:
        with self._lock:
            live = self._live[-1] if self._live else None
            if live is None:
                self._waiting.append(delivery)
        if live is not None:
            await self._send(live, delivery)

    async def _send(self, live: _Live, delivery: _Delivery) -> None:
        body, parts = delivery.body, delivery.parts
        size = -(-len(body) // parts)  # ceil: every part non-empty
        chunks = [body[i * size : (i + 1) * size] for i in range(parts)]
        trace_id = secrets.token_hex(8)
        with self._lock:
            delivery.sent_on = live.record.number
        for seq in delivery.order:
            with self._lock:
                self._sequence += 1
                number = self._sequence
            frame = Frame()
            frame.SeqID = number
            frame.LogID = number
            frame.service = live.record.service_id
            frame.method = FRAME_DATA
            for key, value in (
                ("type", delivery.kind),
                ("message_id", delivery.message_id),
                ("sum", str(parts)),
                ("seq", str(seq)),
                ("trace_id", trace_id),
            ):
                header = frame.headers.add()
                header.key = key
                header.value = value
            frame.payload = chunks[seq]
            with contextlib.suppress(ConnectionError):
                await live.ws.send_bytes(frame.SerializeToString())

    async def _drop(self, *, abrupt: bool, code: int) -> int:
        with self._lock:
            live = list(self._live)
        for connection in live:
            transport = connection.request.transport
            if abrupt and transport is not None:
                transport.abort()
            else:
                await connection.ws.close(code=code, message=b"server going away")
        deadline = time.monotonic() + 5
        while self.open_connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return len(live)
