from __future__ import annotations

from django.urls import path

from connectors.webchat.consumers import WebchatConsumer

websocket_urlpatterns = [
    path("ws/webchat/<int:connector_id>/", WebchatConsumer.as_asgi()),
]
