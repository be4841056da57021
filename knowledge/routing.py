from __future__ import annotations

from django.urls import path

from knowledge.consumers import DocumentStatusConsumer

websocket_urlpatterns = [
    path("ws/knowledge/<int:knowledge_base_id>/", DocumentStatusConsumer.as_asgi()),
]
