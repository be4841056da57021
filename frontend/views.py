"""Pages that host the bundle: the studio (editor and knowledge pages), the full chat page and
the widget's loader. The bundle talks only to the documented API and sockets."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import get_language
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from connectors.models import Connector
from connectors.registry import connector_settings
from frontend.assets import BundleMissingError, entry_url

# Model-wide permissions the studio uses to show or hide buttons; the API still decides.
STUDIO_PERMISSIONS = (
    "workflows.add_workflow",
    "knowledge.add_knowledgebase",
)


def _bundle_missing(exc: BundleMissingError) -> HttpResponse:
    return HttpResponse(str(exc), status=503, content_type="text/plain; charset=utf-8")


@require_GET
@login_required
@ensure_csrf_cookie
def studio(request: HttpRequest, path: str = "") -> HttpResponse:
    """Every /studio/... address is the one-page app; it routes on the client."""
    user = request.user
    boot: dict[str, Any] = {
        "user": {
            "username": user.get_username(),
            "is_staff": user.is_staff,
            "permissions": [perm for perm in STUDIO_PERMISSIONS if user.has_perm(perm)],
        },
        "language": get_language() or "en",
        "urls": {
            "admin": reverse("admin:index"),
            "logout": reverse("frontend:logout"),
            "setlang": reverse("set_language"),
        },
    }
    try:
        return render(request, "frontend/studio.html", {"boot": boot})
    except BundleMissingError as exc:
        return _bundle_missing(exc)


def _webchat_connector(pk: int) -> Connector | None:
    return Connector.objects.filter(pk=pk, enabled=True, platform="webchat").first()


@require_GET
def chat_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The full-page web chat of one connector, for a link or a kiosk."""
    connector = _webchat_connector(pk)
    if connector is None:
        return render(request, "frontend/chat_missing.html", status=404)
    title = getattr(connector_settings(connector).config, "title", "") or connector.name
    boot = {
        "connector": connector.pk,
        "title": title,
        "session_url": reverse("connectors:webchat-session", args=[connector.pk]),
        "language": get_language() or "en",
    }
    try:
        return render(request, "frontend/chat.html", {"boot": boot, "title": title})
    except BundleMissingError as exc:
        return _bundle_missing(exc)


@require_GET
@cache_control(public=True, max_age=300)
def widget_loader(request: HttpRequest) -> HttpResponse:
    """`/chat/widget.js`: a stable address for embedding that loads the current hashed widget
    bundle. Cached for five minutes, so a deployment reaches embedded widgets quickly.
    Attributes of the tag: ``data-connector`` (required), ``data-title``, ``data-language``
    (default: the browser's)."""
    try:
        bundle = request.build_absolute_uri(entry_url("widget"))
    except BundleMissingError as exc:
        return _bundle_missing(exc)
    # The session endpoint's path with "{id}" where the connector goes (the tag names it).
    marker = 987654321
    session = reverse("connectors:webchat-session", args=[marker]).replace(str(marker), "{id}")
    script = (
        "(function(){var s=document.currentScript;if(!s)return;"
        "var q=window.AssistantStudioChat=window.AssistantStudioChat||[];"
        "q.push({connector:s.getAttribute('data-connector'),"
        "title:s.getAttribute('data-title')||'',"
        "language:s.getAttribute('data-language')||'',"
        f"session:{json.dumps(session)},"
        "origin:new URL(s.src,location.href).origin});"
        "var m=document.createElement('script');m.type='module';m.crossOrigin='anonymous';"
        f"m.src={json.dumps(bundle)};document.head.appendChild(m);}})();\n"
    )
    return HttpResponse(script, content_type="text/javascript; charset=utf-8")
