"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from assistant_site.checks import (
    broker_check,
    chroma_check,
    database_check,
    mask_secrets,
    redis_check,
)
from assistant_site.metrics import render_latest
from assistant_site.metrics_access import scrape_allowed
from assistant_site.middleware import client_ip

_CHECK_TIMEOUT_S = 2.0


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


_CHECKS: dict[str, Callable[[float], str]] = {
    "database": database_check,
    "redis": redis_check,
    "broker": broker_check,
    "chroma": chroma_check,
}


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """503 unless every configured service answers; the body names each check's result."""
    results: dict[str, dict[str, object]] = {}
    for name, check in _CHECKS.items():
        started = time.perf_counter()
        try:
            detail, ok = check(_CHECK_TIMEOUT_S), True
        except Exception as exc:
            detail, ok = mask_secrets(f"{type(exc).__name__}: {exc}"), False
        results[name] = {
            "ok": ok,
            "detail": detail,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
    ready = all(result["ok"] for result in results.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": results},
        status=200 if ready else 503,
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(client_ip(request), request.headers.get("Authorization", "")):
        response = HttpResponse(
            "metrics: present a valid bearer token or call from an allowed address\n",
            status=401 if settings.METRICS_BEARER_TOKEN else 403,
            content_type="text/plain",
        )
        if settings.METRICS_BEARER_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_latest(), content_type="text/plain; version=0.0.4; charset=utf-8")
