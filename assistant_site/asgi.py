"""ASGI entry point: HTTP and WebSockets on one address.

WebSocket routes are collected from each app's ``routing.websocket_urlpatterns``.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings.base")
# Django must be set up before anything imports models (the consumers below do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from assistant_site.routing import websocket_urlpatterns  # noqa: E402

# The web chat widget is embedded in other sites: its consumer checks the Origin against
# the connector's allowed origins itself. Every other socket accepts this site only.
WIDGET_SOCKET_PREFIX = "/ws/webchat/"


class _OriginCheck:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.site_only = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if str(scope.get("path", "")).startswith(WIDGET_SOCKET_PREFIX):
            return await self.inner(scope, receive, send)
        return await self.site_only(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": _OriginCheck(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
