"""WebSocket URL routes of every app, in one list for the ASGI router."""

from __future__ import annotations

from django.urls import path

from assistant_site.consumers import PingConsumer
from connectors.routing import websocket_urlpatterns as connector_routes
from knowledge.routing import websocket_urlpatterns as knowledge_routes
from workflows.routing import websocket_urlpatterns as workflow_routes

websocket_urlpatterns = [
    path("ws/ping/", PingConsumer.as_asgi()),
    *workflow_routes,
    *knowledge_routes,
    *connector_routes,
]
