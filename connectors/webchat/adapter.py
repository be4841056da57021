"""Web chat: the embeddable widget's connector. Messages arrive over a WebSocket
(``consumers.py``) instead of an HTTP callback; replies and streamed tokens go to the
visitor's channel-layer group, and every reply is also a stored delivery, so a visitor who
reconnects gets what was sent while they were away (``resume``) and nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from typing import Any, ClassVar

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from pydantic import Field

from connectors.base import (
    ConnectorSettings,
    InboundItem,
    InboundRequest,
    OutboundMessage,
    PlatformConfig,
    PlatformSecrets,
    ReplyTarget,
    RequestRejected,
    SentMessage,
    Verified,
)


class WebchatConfig(PlatformConfig):
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Sites that may embed the widget (https://example.com); empty: this site only.",
    )
    idle_timeout_s: int = Field(default=600, ge=5, le=86_400)
    session_users: bool = Field(
        default=True, description="Let signed-in users chat without a visitor token."
    )
    title: str = Field(default="Assistant", max_length=100)


class WebchatSecrets(PlatformSecrets):
    # Signs visitor tokens; empty: derived from the site's secret key and the connector id.
    # Changing it signs every visitor out.
    signing_key: str = Field(default="", max_length=256)


def visitor_group(connector_id: int, visitor: str) -> str:
    """The channel-layer group of one visitor's open tabs (names must be short ASCII)."""
    digest = hashlib.sha256(visitor.encode()).hexdigest()[:32]
    return f"webchat.{connector_id}.{digest}"


_layers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def _loop_layer() -> Any:
    """A channel layer for the running loop. The process-wide one belongs to the loop that
    first used it; deliveries run each in a fresh loop (a task calls ``asyncio.run``) and
    streaming in the run worker's own loop, so each loop gets its layer."""
    if not channel_layers.configs:
        return None
    loop = asyncio.get_running_loop()
    layer = _layers.get(loop)
    if layer is None:
        layer = _layers[loop] = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    return layer


class WebchatAdapter:
    platform: ClassVar[str] = "webchat"
    label: ClassVar[str] = "Web chat"
    config_model: ClassVar[type[PlatformConfig]] = WebchatConfig
    secrets_model: ClassVar[type[PlatformSecrets]] = WebchatSecrets
    default_api_base_url: ClassVar[str] = "http://localhost"  # unused: no platform API
    edit_interval_s: ClassVar[float] = 0.05
    max_message_chars: ClassVar[int] = 100_000

    def verify(self, settings: ConnectorSettings, request: InboundRequest) -> Verified:
        raise RequestRejected(
            404, "url", "web chat messages come over the WebSocket /ws/webchat/<id>/"
        )

    def parse(self, settings: ConnectorSettings, payload: dict[str, Any]) -> list[InboundItem]:
        return []

    async def _push(self, settings: ConnectorSettings, chat_id: str, event: dict[str, Any]) -> None:
        layer = _loop_layer()
        if layer is not None:
            await layer.group_send(visitor_group(settings.connector_id, chat_id), event)

    async def send(self, settings: ConnectorSettings, message: OutboundMessage) -> SentMessage:
        key = message.idempotency_key
        await self._push(
            settings,
            message.target.chat_id,
            {
                "type": "chat.message",
                "id": key,
                "text": message.text,
                "reply_to": message.target.message_id,
            },
        )
        return SentMessage(message_ids=[key], handle={"chat_id": message.target.chat_id})

    async def stream_start(
        self, settings: ConnectorSettings, message: OutboundMessage
    ) -> SentMessage:
        key = message.idempotency_key
        chat_id = message.target.chat_id
        await self._push(
            settings,
            chat_id,
            {
                "type": "chat.stream",
                "id": key,
                "text": message.text,
                "reply_to": message.target.message_id,
            },
        )
        return SentMessage(
            message_ids=[key], handle={"chat_id": chat_id, "reply_to": message.target.message_id}
        )

    async def stream_update(
        self, settings: ConnectorSettings, sent: SentMessage, text: str
    ) -> SentMessage:
        await self._push(
            settings,
            sent.handle["chat_id"],
            {
                "type": "chat.stream",
                "id": sent.message_ids[0],
                "text": text,
                "reply_to": sent.handle.get("reply_to", ""),
            },
        )
        return sent

    async def stream_finish(
        self, settings: ConnectorSettings, sent: SentMessage, text: str
    ) -> SentMessage:
        # The final message keeps the streamed message's id: the widget replaces the
        # streamed text with it, and a resume after a reconnect finds the same id.
        await self._push(
            settings,
            sent.handle["chat_id"],
            {
                "type": "chat.message",
                "id": sent.message_ids[0],
                "text": text,
                "reply_to": sent.handle.get("reply_to", ""),
            },
        )
        return sent

    async def typing(self, settings: ConnectorSettings, target: ReplyTarget) -> None:
        await self._push(settings, target.chat_id, {"type": "chat.typing"})

    def callback_hint(self, settings: ConnectorSettings, callback_url: str) -> str:
        return (
            "Web chat needs no callback: embed the widget, which gets a visitor token from "
            f"{callback_url.rsplit('/events', 1)[0]}/webchat/session and talks over "
            f"/ws/webchat/{settings.connector_id}/."
        )
