"""A liveness WebSocket: each "ping" travels through the channel layer and back as "pong".

Clients and load balancers use it to check the WebSocket path end to end, including the
channel layer that run traces and chat replies travel through.
"""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer


class PingConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data != "ping":
            await self.send(text_data=json.dumps({"error": "send the text 'ping'"}))
            return
        # Round trip through the layer, as a reply from a worker would travel.
        await self.channel_layer.send(self.channel_name, {"type": "pong.message"})

    async def pong_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data="pong")
