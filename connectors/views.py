"""The platforms' callback URL: ``POST /connectors/<id>/events``.

A plain Django view, not DRF: it only delivers (the service verifies, stores and answers),
the raw body must reach the signature check untouched, and it is the hottest URL we serve.
No login and no CSRF token: the platform's signature or secret is the authentication.
"""

from __future__ import annotations

import json
import time

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from assistant_site.middleware import client_ip
from connectors import services
from connectors.base import InboundRequest, RequestRejected
from connectors.models import Connector
from connectors.registry import connector_settings
from connectors.webchat.adapter import WebchatConfig
from connectors.webchat.consumers import origin_allowed


@csrf_exempt
@require_POST
def connector_events(request: HttpRequest, pk: int) -> JsonResponse:
    inbound = InboundRequest(
        body=request.body,
        headers=dict(request.headers),
        remote_addr=client_ip(request) or "",
        received_at=time.time(),
    )
    try:
        answer = services.event_receive(connector_id=pk, request=inbound)
    except RequestRejected as exc:
        return JsonResponse({"detail": exc.message, "field": exc.field}, status=exc.status)
    return JsonResponse(answer.body, status=answer.status)


def _widget_cors(response: HttpResponse, origin: str, allowed: bool) -> HttpResponse:
    if origin and allowed:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Vary"] = "Origin"
    return response


def _previous_token(body: bytes) -> str | None:
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    token = data.get("token", "") if isinstance(data, dict) else None
    return token if isinstance(token, str) else None


@csrf_exempt
def webchat_session(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /connectors/<id>/webchat/session`` with ``{"token": <previous token>}`` or
    nothing: a signed visitor token for the widget's WebSocket. A still-valid token keeps
    its visitor (and conversation); anything else starts a new visitor. Answers CORS for
    the connector's ``allowed_origins``."""
    connector = Connector.objects.filter(pk=pk, enabled=True, platform="webchat").first()
    if connector is None:
        return JsonResponse({"detail": "no enabled web chat connector has this id"}, status=404)
    config = connector_settings(connector).config
    assert isinstance(config, WebchatConfig)  # noqa: S101  (the platform's model)
    origin = request.headers.get("Origin", "")
    allowed = origin_allowed(origin, config)
    if request.method == "OPTIONS":
        return _widget_cors(HttpResponse(status=204), origin, allowed)
    if request.method != "POST":
        return JsonResponse({"detail": "use POST"}, status=405)
    if not allowed:
        return JsonResponse(
            {"detail": "this site may not embed the chat", "field": "Origin"}, status=403
        )
    previous = _previous_token(request.body)
    if previous is None:
        return JsonResponse(
            {"detail": 'the body must be {"token": "<previous token>"} or empty', "field": "token"},
            status=400,
        )
    token, visitor = services.webchat_token_issue(connector=connector, token=previous)
    answer = {"token": token, "visitor": visitor, "socket": f"/ws/webchat/{connector.pk}/"}
    return _widget_cors(JsonResponse(answer), origin, allowed)
