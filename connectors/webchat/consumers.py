"""The web chat widget's WebSocket: /ws/webchat/<connector id>/?token=<visitor token>.

Client -> server (JSON):
- ``{"type": "message", "id": "<client message id>", "text": "..."}``: the id is the
  widget's own (a UUID); sending the same id again (after a reconnect) is acknowledged
  with ``duplicate: true`` and answered once.
- ``{"type": "resume", "after": "<last reply id seen>"}``: replies sent since then.
- ``{"type": "pong"}``: the answer to a ping (any message counts as activity).

Server -> client:
- ``{"type": "ready", "visitor": "...", "title": "..."}`` once connected;
- ``{"type": "ack", "id": ..., "duplicate": bool}`` for each message;
- ``{"type": "typing"}``; ``{"type": "stream", "id": ..., "text": <answer so far>}``;
- ``{"type": "message", "id": ..., "text": ..., "reply_to": <client message id>}``: a
  reply; one with the id of an earlier stream replaces the streamed text;
- ``{"type": "ping"}`` every 30 s; ``{"type": "error", "field": ..., "detail": ...}``.

Closed with 4401 without a valid token or session, 4403 from a site the connector does not
list in ``allowed_origins``, 4404 for an unknown or disabled
connector, 4408 after the connector's idle timeout without a message from the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from connectors import services
from connectors.models import Connector
from connectors.registry import connector_settings
from connectors.webchat.adapter import WebchatConfig, visitor_group

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_IDLE = 4408
HEARTBEAT_S = 30.0
MAX_TEXT = 20_000
MAX_ID = 100


def origin_allowed(origin: str, config: WebchatConfig) -> bool:
    """No Origin (not a browser), this site, or a site the connector lets embed the widget."""
    if not origin:
        return True
    if origin.rstrip("/") in {allowed.rstrip("/") for allowed in config.allowed_origins}:
        return True
    # ALLOWED_HOSTS names hosts without ports: this site on :8000 is still this site.
    host, _port = split_domain_port(urlsplit(origin).netloc)
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


def _connection(
    connector_id: int, token: str, user: Any, origin: str
) -> tuple[str, WebchatConfig] | int:
    """(visitor id, config), or the close code."""
    connector = Connector.objects.filter(pk=connector_id, enabled=True, platform="webchat").first()
    if connector is None:
        return CLOSE_NOT_FOUND
    config = connector_settings(connector).config
    assert isinstance(config, WebchatConfig)  # noqa: S101  (the platform's model)
    if not origin_allowed(origin, config):
        return CLOSE_FORBIDDEN
    if token:
        visitor = services.webchat_visitor_of(connector=connector, token=token)
        return (visitor, config) if visitor else CLOSE_UNAUTHORIZED
    if config.session_users and user is not None and user.is_authenticated:
        return f"user-{user.pk}", config
    return CLOSE_UNAUTHORIZED


def _origin_of(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"origin":
            return bytes(value).decode("latin-1")
    return ""


def _token_of(scope: dict[str, Any]) -> str:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return str((query.get("token") or [""])[0])


class WebchatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        self.connector_id = int(self.scope["url_route"]["kwargs"]["connector_id"])
        found = await database_sync_to_async(_connection)(
            self.connector_id, _token_of(self.scope), self.scope.get("user"), _origin_of(self.scope)
        )
        if isinstance(found, int):
            await self.close(code=found)
            return
        self.visitor, config = found
        self.idle_timeout_s = config.idle_timeout_s
        self.last_seen = time.monotonic()
        self.group = visitor_group(self.connector_id, self.visitor)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "ready", "visitor": self.visitor, "title": config.title})
        self.heartbeat = asyncio.ensure_future(self._heartbeat())

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "heartbeat"):
            self.heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(min(HEARTBEAT_S, self.idle_timeout_s))
            if time.monotonic() - self.last_seen >= self.idle_timeout_s:
                await self.close(code=CLOSE_IDLE)
                return
            await self.send_json({"type": "ping"})

    async def _error(self, field: str, detail: str) -> None:
        await self.send_json({"type": "error", "field": field, "detail": detail})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.last_seen = time.monotonic()
        if not isinstance(content, dict):
            await self._error("type", "send a JSON object with a type")
            return
        kind = content.get("type")
        if kind == "message":
            await self._message(content)
        elif kind == "resume":
            after = content.get("after") or ""
            if not isinstance(after, str) or len(after) > 200:
                await self._error("after", "the id of the last reply seen, as a string")
                return
            history = await database_sync_to_async(services.webchat_history)(
                connector_id=self.connector_id, visitor=self.visitor, after=after
            )
            for message in history:
                await self.send_json({"type": "message", **message})
        elif kind != "pong":
            await self._error("type", "type must be message, resume or pong")

    async def _message(self, content: dict[str, Any]) -> None:
        client_id, text = content.get("id"), content.get("text")
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_ID:
            await self._error("id", f"a message id of 1 to {MAX_ID} characters is required")
            return
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            await self._error("text", f"the text must have 1 to {MAX_TEXT} characters")
            return
        client = self.scope.get("client") or ("", 0)
        event = await database_sync_to_async(services.webchat_message_receive)(
            connector_id=self.connector_id,
            visitor=self.visitor,
            client_id=client_id,
            text=text,
            source_ip=client[0] or "",
        )
        await self.send_json({"type": "ack", "id": client_id, "duplicate": event is None})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "message",
                "id": event["id"],
                "text": event["text"],
                "reply_to": event.get("reply_to", ""),
            }
        )

    async def chat_stream(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "stream",
                "id": event["id"],
                "text": event["text"],
                "reply_to": event.get("reply_to", ""),
            }
        )

    async def chat_typing(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "typing"})
