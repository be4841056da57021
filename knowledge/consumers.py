"""Live document status over WebSocket: /ws/knowledge/<knowledge base id>/.

Each status change of a document of the base (queued, parsing, splitting, embedding, indexed,
failed; enabled or not) arrives as {"type": "document", "document": {...}}. Only users who
may view the knowledge base are accepted; others are closed with 4404.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from assistant_site.permissions import viewable
from knowledge.models import KnowledgeBase
from knowledge.services import documents_group

CLOSE_NOT_FOUND = 4404


def _may_view(user: Any, base_id: int) -> bool:
    if user is None or not user.is_authenticated:
        return False
    return viewable(user, KnowledgeBase.objects.filter(pk=base_id)).exists()


class DocumentStatusConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        base_id = int(self.scope["url_route"]["kwargs"]["knowledge_base_id"])
        if not await database_sync_to_async(_may_view)(self.scope.get("user"), base_id):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = documents_group(base_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def document_status(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "document", "document": message["document"]})
