"""Feishu's long connection: events over a WebSocket the connector opens, no public URL.

The alternative to the HTTP callback (``adapter.verify``) in the developer console's "Receive
events through persistent connection" (使用长连接接收事件) mode. The reference is lark-oapi
1.7.5's ``lark_oapi/ws`` (client.py, const.py, model.py), the Node and Go SDKs agreeing:

1. ``POST {api_base_url}/callback/ws/endpoint`` with ``{"AppID": ..., "AppSecret": ...}``
   (and a ``locale: zh`` header) answers ``{"code": 0, "data": {"URL": "wss://...?device_id=
   ...&service_id=...", "ClientConfig": {"PingInterval": s, "ReconnectCount": n,
   "ReconnectInterval": s, "ReconnectNonce": s}}}``. Code 1 (busy) and 1000040343 (internal
   error) are Feishu's trouble; the SDK treats any other code as a refusal of the app.
2. The WebSocket carries binary protobuf ``pbbp2.Frame`` messages. ``method`` 0 is control:
   the client sends a ``ping`` (header ``type``; ``service`` = the URL's ``service_id``) every
   PingInterval seconds, the server answers ``pong``, whose payload, when there is one, is a
   new ClientConfig. ``method`` 1 is data: headers ``type`` (``event``; ``card`` for card
   callbacks), ``message_id``, ``trace_id``, and ``sum``/``seq`` for a message split into
   ``sum`` frames (``seq`` counts from 0); the payloads joined are the event's JSON, the same
   document a webhook push carries (decrypted; the connection itself is authenticated, so
   there is no signature or token to check).
3. Each event is answered with its own frame (the last part's, for a split message) with a
   ``biz_rt`` header added (handling time, ms) and the payload ``{"code": 200}``, or
   ``{"code": 500}`` when handling failed: Feishu delivers an event again until it is
   answered 200.
4. A refused handshake carries ``handshake-status`` (514 auth failed, 403 forbidden),
   ``handshake-msg`` and ``handshake-autherrcode`` (1000040350: too many connections).

Why not ``lark_oapi.ws.Client`` itself: it runs on a module-level event loop of its own
(``start()`` blocks in ``run_until_complete``), fetches the endpoint with blocking
``requests`` (stalling the loop, and bypassing ``assistant_site.http``'s SSRF guard), has no
way to stop, hands events to a synchronous dispatcher, ends its reconnect loop silently on a
refusal (an exception in a background task) and shows no state a readiness check could read.
The protocol is small, so it is spoken here on ``websockets`` with the SDK's generated
protobuf class.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from assistant_site import http
from connectors.base import ConnectorSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
Handle = Callable[[dict[str, Any]], Awaitable[None]]

ENDPOINT_PATH = "/callback/ws/endpoint"

# Endpoint answer codes (lark_oapi/ws/const.py).
OK = 0
SYSTEM_BUSY = 1
INTERNAL_ERROR = 1000040343
# Handshake refusals: the handshake-status header, and under AUTH_FAILED the
# handshake-autherrcode header.
FORBIDDEN = 403
AUTH_FAILED = 514
EXCEED_CONN_LIMIT = 1000040350

FRAME_CONTROL = 0
FRAME_DATA = 1

HEADER_TYPE = "type"
HEADER_MESSAGE_ID = "message_id"
HEADER_TRACE_ID = "trace_id"
HEADER_SUM = "sum"
HEADER_SEQ = "seq"
HEADER_BIZ_RT = "biz_rt"
HANDSHAKE_STATUS = "handshake-status"
HANDSHAKE_MSG = "handshake-msg"
HANDSHAKE_AUTH_CODE = "handshake-autherrcode"

# What an event is answered with (the SDK's http.HTTPStatus values).
ACK_OK = 200
ACK_FAILED = 500

# The parts of a split message wait this long for the rest, as in the SDK (5 s, renewed by
# each part). The limits only bound memory; Feishu splits large events into a few parts.
PARTS_TTL_S = 5.0
MAX_PARTS = 100
MAX_PENDING_MESSAGES = 100
# websockets' default (1 MiB, what the SDK runs with) is raised: an oversized frame closes
# the connection, and the same frame would come again after reconnecting.
MAX_FRAME_BYTES = 4 * 1024 * 1024

REFUSED_HINT = (
    "check the App ID and App Secret (Credentials & Basic Info in the developer console), "
    "that the app receives events through the persistent connection (Events and callbacks > "
    "Event configuration) and the API base URL"
)


@functools.cache
def frame_class() -> Any:
    """lark-oapi's generated ``pbbp2.Frame``. Imported on first use: importing it imports
    the whole SDK package, which takes seconds."""
    from lark_oapi.ws.pb.pbbp2_pb2 import Frame  # type: ignore[import-untyped]

    return Frame


@dataclass(frozen=True)
class ServerConfig:
    """What Feishu tells the client to do (``ClientConfig``, in seconds); the SDK's defaults
    until Feishu has answered."""

    ping_interval_s: float = 120.0
    reconnect_count: int = -1  # connection attempts before giving up; -1: never give up
    reconnect_interval_s: float = 120.0
    reconnect_nonce_s: float = 30.0

    def merged(self, raw: Any) -> ServerConfig:
        """This config updated with the usable fields of a ``ClientConfig`` object."""
        if not isinstance(raw, dict):
            return self

        def number(key: str, current: float, least: float) -> float:
            value = raw.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= least:
                return float(value)
            return current

        return ServerConfig(
            # A zero interval would ping in a tight loop: kept as it was.
            ping_interval_s=number("PingInterval", self.ping_interval_s, 1),
            reconnect_count=int(number("ReconnectCount", self.reconnect_count, -1)),
            reconnect_interval_s=number("ReconnectInterval", self.reconnect_interval_s, 0),
            reconnect_nonce_s=number("ReconnectNonce", self.reconnect_nonce_s, 0),
        )


class LongConnectionError(Exception):
    """A connection attempt that failed. ``rejected``: Feishu refused the app (credentials,
    long-connection mode not chosen, too many connections), so retrying soon cannot help."""

    def __init__(self, message: str, *, rejected: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rejected = rejected
        self.code = code


class _Stopped(Exception):  # noqa: N818  (control flow, never escapes)
    pass


class _Parts:
    """Split messages being put back together, by message id."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[float, list[bytes | None]]] = {}

    def add(self, message_id: str, total: int, seq: int, data: bytes, now: float) -> bytes | None:
        """The whole message once this part completes it, else None."""
        for key, (touched, _parts) in list(self._pending.items()):
            if now - touched > PARTS_TTL_S:
                del self._pending[key]
        entry = self._pending.pop(message_id, None)
        parts: list[bytes | None] = entry[1] if entry and len(entry[1]) == total else [None] * total
        parts[seq] = data
        if all(part is not None for part in parts):
            return b"".join(part for part in parts if part is not None)
        if len(self._pending) >= MAX_PENDING_MESSAGES:
            oldest = min(self._pending, key=lambda key: self._pending[key][0])
            del self._pending[oldest]
        self._pending[message_id] = (now, parts)
        return None


class FeishuLongConnection:
    """Receive one Feishu app's events over the long connection until ``stop`` is set.

    - ``handle`` gets each event's payload (the JSON object a webhook push would carry) and
      stores it as the webhook view does, quickly: the webhook's 3 s rule and retries apply
      here too (protocols.md A.6, A.8). The event is answered 200 only once ``handle`` has
      returned: if it raises, the answer is 500 and Feishu delivers the event again; if the
      connection or the process goes first, there is no answer, which Feishu retries too.
      At least once, then: the connector's dedupe key absorbs the repeats.
    - Events are handled one at a time, in the order they arrive (Feishu orders some events).
    - Payloads that are not JSON objects, and events naming another app in ``header.app_id``,
      are answered 200 and dropped (a redelivery would be the same), with a warning.
    - A lost connection is opened again after a random part of Feishu's ReconnectNonce, so
      that the clients of a restarted server do not all come back at once; failed attempts
      back off exponentially from ``backoff_base_s`` with jitter, up to Feishu's
      ReconnectInterval, or up to ``rejected_backoff_cap_s`` while Feishu refuses the app
      (wrong App Secret...): editing the connector restarts it anyway.
    - :meth:`health` tells a readiness check how things stand.
    - Setting ``stop`` ends :meth:`run` at once, except that an event being handled is
      handled and answered first.
    """

    def __init__(
        self,
        settings: ConnectorSettings,
        handle: Handle,
        *,
        stop: asyncio.Event | None = None,
        backoff_base_s: float = 1.0,
        rejected_backoff_cap_s: float = 600.0,
        open_timeout_s: float = 15.0,
        close_timeout_s: float = 3.0,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.stop = stop if stop is not None else asyncio.Event()
        self.backoff_base_s = backoff_base_s
        self.rejected_backoff_cap_s = rejected_backoff_cap_s
        self.open_timeout_s = open_timeout_s
        self.close_timeout_s = close_timeout_s
        self.config = ServerConfig()
        self.failures = 0  # connection attempts failed in a row; drives the backoff
        self.reconnects = 0  # connections opened after the first one
        self.events = 0  # events handled
        self.pings = 0  # pings sent
        self.last_error: str | None = None
        self._connected = False
        self._connections = 0
        self._since: datetime | None = None
        self._last_event_at: datetime | None = None
        self._last_error_at: datetime | None = None
        self._next_attempt_at: datetime | None = None
        self._parts = _Parts()

    # -- public API ------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, and connect again whenever the connection is lost, until ``stop`` is set.

        Raises :class:`LongConnectionError` only when Feishu's ReconnectCount is used up (-1,
        the SDK's default and what Feishu is reported to send, means never); any other
        failure is retried and shown by :meth:`health`.
        """
        self._since = _now()
        try:
            # Importing the protobuf class imports the whole SDK: not on the event loop.
            await self._unless_stopped(asyncio.to_thread(frame_class))
        except _Stopped:
            return
        while not self.stop.is_set():
            try:
                connection, service_id = await self._unless_stopped(self._connect())
            except _Stopped:
                break
            except LongConnectionError as exc:
                self.failures += 1
                self._note_error(exc.message)
                count = self.config.reconnect_count
                if 0 <= count < self.failures:
                    raise LongConnectionError(
                        f"no connection after {self.failures} attempts (Feishu allows "
                        f"{count} retries): {exc.message}",
                        rejected=exc.rejected,
                        code=exc.code,
                    ) from exc
                delay = self.retry_delay_s(self.failures, rejected=exc.rejected)
                logger.warning(
                    "feishu connector %s: long connection failed (%s), next try in %.1f s",
                    self.settings.connector_id,
                    exc.message,
                    delay,
                )
                await self._pause(delay)
                continue
            reason = await self._serve(connection, service_id)
            if self.stop.is_set():
                break
            self._note_error(reason)
            delay = self.retry_delay_s(0)
            logger.warning(
                "feishu connector %s: %s, connecting again in %.1f s",
                self.settings.connector_id,
                reason,
                delay,
            )
            await self._pause(delay)

    def health(self) -> dict[str, Any]:
        """How the connection stands, for a readiness check (times in ISO 8601, UTC).

        ``connected``; ``since`` when it became connected, or stopped being (or started
        trying); ``last_event_at``; ``reconnects`` (connections opened after the first);
        ``last_error`` (the last failure or lost connection, kept after recovering) and
        ``last_error_at``; ``failures`` (attempts failed in a row, 0 while connected);
        ``next_attempt_at`` while waiting to retry; ``events`` handled; ``config`` (what
        Feishu asked for).
        """
        config = self.config
        return {
            "connected": self._connected,
            "since": _iso(self._since),
            "last_event_at": _iso(self._last_event_at),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "last_error_at": _iso(self._last_error_at),
            "failures": self.failures,
            "next_attempt_at": _iso(self._next_attempt_at),
            "events": self.events,
            "config": {
                "ping_interval_s": config.ping_interval_s,
                "reconnect_count": config.reconnect_count,
                "reconnect_interval_s": config.reconnect_interval_s,
                "reconnect_nonce_s": config.reconnect_nonce_s,
            },
        }

    def retry_delay_s(self, failures: int, *, rejected: bool = False) -> float:
        """Seconds to wait before the next attempt, ``failures`` attempts having failed since
        the last connection (0: it was just lost). See the class doc."""
        config = self.config
        if failures <= 0:
            return random.uniform(0, config.reconnect_nonce_s)  # noqa: S311  (jitter)
        cap = config.reconnect_interval_s
        if rejected:
            cap = max(cap, self.rejected_backoff_cap_s)
        # Never below the base: Feishu's ReconnectInterval 0 must not make a tight loop.
        cap = max(cap, self.backoff_base_s)
        delay = min(cap, self.backoff_base_s * 2.0 ** (failures - 1))
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  (jitter, not a secret)

    # -- connecting ------------------------------------------------------------------------

    async def _endpoint(self) -> str:
        """The WebSocket URL Feishu hands out (once per connection); takes its config."""
        settings = self.settings
        what = "asking Feishu for a long connection"
        try:
            response = await http.request(
                "POST",
                settings.api_base_url + ENDPOINT_PATH,
                headers={"locale": "zh", "Content-Type": "application/json; charset=utf-8"},
                json={"AppID": settings.config.app_id, "AppSecret": settings.secrets.app_secret},
                timeout_s=self.open_timeout_s,
            )
        except http.OutboundHttpError as exc:
            raise LongConnectionError(f"{what}: {exc.message}", rejected=exc.permanent) from exc
        try:
            answer = json.loads(response.body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        code = answer.get("code")
        msg = answer.get("msg") if isinstance(answer.get("msg"), str) else ""
        if not response.ok:
            # The SDK reports the status with the answer's msg. A 4xx other than 408/429 is a
            # refusal of what we sent (seen when the app is not in long-connection mode).
            rejected = 400 <= response.status < 500 and response.status not in (408, 429)
            detail = f"{what}: Feishu answered HTTP {response.status}" + (
                f" ({msg})" if msg else ""
            )
            raise LongConnectionError(
                detail + (f"; {REFUSED_HINT}" if rejected else ""),
                rejected=rejected,
                code=code if isinstance(code, int) else None,
            )
        if not isinstance(code, int) or isinstance(code, bool):
            raise LongConnectionError(
                f"{what}: the answer is not Feishu's JSON: {response.preview()}"
            )
        if code in (SYSTEM_BUSY, INTERNAL_ERROR):
            raise LongConnectionError(f"{what}: Feishu is busy (code {code}: {msg})", code=code)
        if code != OK:
            raise LongConnectionError(
                f"{what}: Feishu refused the app (code {code}: {msg}); {REFUSED_HINT}",
                rejected=True,
                code=code,
            )
        data = answer.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("URL"), str) or not data["URL"]:
            raise LongConnectionError(f"{what}: Feishu answered no URL")
        self.config = self.config.merged(data.get("ClientConfig"))
        return str(data["URL"])

    async def _connect(self) -> tuple[ClientConnection, int]:
        """An open WebSocket and its service id, or :class:`LongConnectionError`."""
        url = await self._endpoint()
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("ws", "wss") or not host:
            raise LongConnectionError("Feishu's long connection address is not a WebSocket URL")
        query = parse_qs(parts.query)
        try:
            service_id = int((query.get("service_id") or [""])[0])
        except ValueError:
            raise LongConnectionError(
                "Feishu's long connection address has no service_id"
            ) from None
        try:
            port = parts.port or (443 if parts.scheme == "wss" else 80)
        except ValueError:
            raise LongConnectionError("Feishu's long connection address has a bad port") from None
        # The address comes from the answer of api_base_url's server: it passes the same
        # SSRF guard as any outbound request, and the connection goes to the checked address
        # (host=...), while TLS and the Host header still use the name.
        try:
            addresses = await http.resolve(host, port)
            http.vet(host, addresses, http.AllowList.parse(http.configured_allow_list()))
        except http.OutboundHttpError as exc:
            raise LongConnectionError(
                f"connecting to Feishu's long connection: {exc.message}", rejected=exc.permanent
            ) from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                connection = await connect(
                    url,
                    host=str(address),
                    port=port,
                    proxy=None,  # as the SDK: no proxy from the environment
                    user_agent_header=http.USER_AGENT,
                    open_timeout=self.open_timeout_s,
                    close_timeout=self.close_timeout_s,
                    max_size=MAX_FRAME_BYTES,
                )
            except InvalidStatus as exc:
                raise _refusal(exc) from exc
            except OSError as exc:  # refused, unreachable: the next address may do
                failure = exc
                continue
            except (TimeoutError, InvalidURI, WebSocketException) as exc:
                raise LongConnectionError(
                    f"opening the long connection failed: {exc or type(exc).__name__}"
                ) from exc
            return connection, service_id
        raise LongConnectionError(f"cannot connect to {host}:{port}: {failure}")

    # -- connected ---------------------------------------------------------------------------

    async def _serve(self, connection: ClientConnection, service_id: int) -> str:
        """Ping and answer frames until the connection ends (answers why) or ``stop`` is set
        (answers ""); closes the connection."""
        self._connections += 1
        if self._connections > 1:
            self.reconnects += 1
        self._connected = True
        self._since = _now()
        self.failures = 0
        logger.info(
            "feishu connector %s: long connection open (service %s)",
            self.settings.connector_id,
            service_id,
        )
        pinger = asyncio.create_task(self._ping(connection, service_id))
        try:
            while True:
                try:
                    message = await self._unless_stopped(connection.recv())
                except _Stopped:
                    return ""
                if not isinstance(message, bytes):
                    continue  # Feishu sends binary frames only
                try:
                    await self._on_frame(connection, message)
                except ConnectionClosed:
                    raise
                except Exception:  # a bug here must not end the connection for good
                    logger.exception(
                        "feishu connector %s: a frame could not be handled",
                        self.settings.connector_id,
                    )
        except ConnectionClosed as exc:
            return f"the long connection was lost ({exc})"
        finally:
            self._connected = False
            self._since = _now()
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
            await connection.close()

    async def _ping(self, connection: ClientConnection, service_id: int) -> None:
        """A ping frame at once and every PingInterval (Feishu may change it in a pong)."""
        while True:
            frame = frame_class()()
            header = frame.headers.add()
            header.key = HEADER_TYPE
            header.value = "ping"
            frame.service = service_id
            frame.method = FRAME_CONTROL
            frame.SeqID = 0
            frame.LogID = 0
            try:
                await connection.send(frame.SerializeToString())
            except ConnectionClosed:
                return  # the receiving side notices and says why
            self.pings += 1
            await asyncio.sleep(self.config.ping_interval_s)

    async def _on_frame(self, connection: ClientConnection, data: bytes) -> None:
        frame = frame_class()()
        try:
            frame.ParseFromString(data)
        except Exception:  # the SDK's own protobuf copy raises its own DecodeError
            logger.warning(
                "feishu connector %s: a frame that is not a pbbp2.Frame; ignored",
                self.settings.connector_id,
            )
            return
        headers = {header.key: header.value for header in frame.headers}
        kind = headers.get(HEADER_TYPE, "")
        if frame.method == FRAME_CONTROL:
            if kind == "pong" and frame.payload:
                self._configure(bytes(frame.payload))
            return
        if frame.method == FRAME_DATA:
            await self._on_data(connection, frame, headers)

    def _configure(self, payload: bytes) -> None:
        try:
            raw = json.loads(payload)
        except ValueError:
            return
        self.config = self.config.merged(raw)

    async def _on_data(
        self, connection: ClientConnection, frame: Any, headers: dict[str, str]
    ) -> None:
        connector_id = self.settings.connector_id
        message_id = headers.get(HEADER_MESSAGE_ID, "")
        kind = headers.get(HEADER_TYPE, "")
        try:
            total = int(headers.get(HEADER_SUM, "1"))
            seq = int(headers.get(HEADER_SEQ, "0"))
        except ValueError:
            total, seq = 0, 0
        payload: bytes | None = bytes(frame.payload)
        if total > 1:
            if not message_id or total > MAX_PARTS or not 0 <= seq < total:
                total = 0
            else:
                payload = self._parts.add(message_id, total, seq, payload or b"", time.monotonic())
        if total < 1:
            # The SDK cannot answer such a frame either (it raises on the headers).
            logger.warning(
                "feishu connector %s: data frame %s with bad sum/seq headers; ignored",
                connector_id,
                message_id,
            )
            return
        if payload is None:
            return  # more parts to come
        if kind != "event":
            # Card callbacks (type "card") are not subscribed to here; the SDK leaves them
            # unanswered as well.
            logger.info(
                "feishu connector %s: %s frame %s ignored",
                connector_id,
                kind or "untyped",
                message_id,
            )
            return
        started = time.monotonic()
        code = await self._deliver(payload, message_id)
        header = frame.headers.add()
        header.key = HEADER_BIZ_RT
        header.value = str(int((time.monotonic() - started) * 1000))
        frame.payload = json.dumps({"code": code}).encode()
        await connection.send(frame.SerializeToString())

    async def _deliver(self, raw: bytes, message_id: str) -> int:
        """Hand one event to ``handle``; answers the status to acknowledge it with."""
        connector_id = self.settings.connector_id
        try:
            payload = json.loads(raw)
        except ValueError:  # UnicodeDecodeError included
            payload = None
        if not isinstance(payload, dict):
            self._note_error(f"event {message_id} is not a JSON object; dropped")
            logger.warning("feishu connector %s: %s", connector_id, self.last_error)
            return ACK_OK
        header = payload.get("header")
        app_id = header.get("app_id") if isinstance(header, dict) else None
        expected = self.settings.config.app_id
        if isinstance(app_id, str) and app_id and app_id != expected:
            self._note_error(f"event {message_id} is for app {app_id}, not {expected}; dropped")
            logger.warning("feishu connector %s: %s", connector_id, self.last_error)
            return ACK_OK
        try:
            await self.handle(payload)
        except Exception as exc:  # the caller's code: answered 500, so Feishu delivers it again
            self._note_error(f"handling event {message_id} failed: {exc!r}")
            logger.exception(
                "feishu connector %s: handling event %s failed", connector_id, message_id
            )
            return ACK_FAILED
        self.events += 1
        self._last_event_at = _now()
        return ACK_OK

    # -- helpers -------------------------------------------------------------------------------

    def _note_error(self, message: str) -> None:
        self.last_error = message
        self._last_error_at = _now()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up as soon as ``stop`` is set."""
        self._next_attempt_at = _now() + timedelta(seconds=seconds)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=max(0.0, seconds))
        finally:
            self._next_attempt_at = None

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


def _refusal(exc: InvalidStatus) -> LongConnectionError:
    """What a refused handshake means, as the SDK reads it (``_parse_ws_conn_exception``)."""
    response = exc.response
    headers = response.headers
    message = headers.get(HANDSHAKE_MSG) or ""
    detail = f"HTTP {response.status_code}" + (f": {message}" if message else "")
    code = _int(headers.get(HANDSHAKE_STATUS))
    if code == AUTH_FAILED and _int(headers.get(HANDSHAKE_AUTH_CODE)) == EXCEED_CONN_LIMIT:
        return LongConnectionError(
            f"Feishu refused the long connection: too many connections for this app ({detail}); "
            "is another process connected with the same App ID?",
            rejected=True,
            code=EXCEED_CONN_LIMIT,
        )
    if code == FORBIDDEN:
        return LongConnectionError(
            f"Feishu refused the long connection as forbidden ({detail}); {REFUSED_HINT}",
            rejected=True,
            code=code,
        )
    # AUTH_FAILED otherwise, and anything else: the SDK treats these as Feishu's trouble.
    return LongConnectionError(
        f"Feishu refused the WebSocket handshake ({detail})", code=code or response.status_code
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
