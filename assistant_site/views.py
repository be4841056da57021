"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import ipaddress
import secrets
import time
import urllib.request
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from assistant_site.metrics import render_latest
from assistant_site.middleware import client_ip

_CHECK_TIMEOUT_S = 2.0


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return f"{connection.vendor} reachable"


def _check_redis() -> str:
    if not settings.REDIS_URL:
        return "not configured (local-memory cache, in-memory channel layer)"
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=_CHECK_TIMEOUT_S,
        socket_timeout=_CHECK_TIMEOUT_S,
    )
    try:
        client.ping()
    finally:
        client.close()
    return "reachable"


def _check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "not configured (tasks run eagerly in-process)"
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=_CHECK_TIMEOUT_S) as conn:
        conn.ensure_connection(max_retries=1, timeout=int(_CHECK_TIMEOUT_S))
    return "reachable"


def _check_chroma() -> str:
    if not settings.CHROMA_URL:
        return "not configured"
    url = settings.CHROMA_URL.rstrip("/") + "/api/v2/heartbeat"
    with urllib.request.urlopen(url, timeout=_CHECK_TIMEOUT_S) as response:  # noqa: S310
        response.read()
    return "reachable"


_CHECKS: dict[str, Callable[[], str]] = {
    "database": _check_database,
    "redis": _check_redis,
    "broker": _check_broker,
    "chroma": _check_chroma,
}


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """503 unless every configured service answers; the body names each check's result."""
    results: dict[str, dict[str, object]] = {}
    for name, check in _CHECKS.items():
        started = time.perf_counter()
        try:
            detail, ok = check(), True
        except Exception as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
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


def _metrics_allowed(request: HttpRequest) -> bool:
    token: str = settings.METRICS_BEARER_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return secrets.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    address = client_ip(request)
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(
        ip in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_IPS
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _metrics_allowed(request):
        response = HttpResponse(
            "metrics: present a valid bearer token or call from an allowed address\n",
            status=401 if settings.METRICS_BEARER_TOKEN else 403,
            content_type="text/plain",
        )
        if settings.METRICS_BEARER_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_latest(), content_type="text/plain; version=0.0.4; charset=utf-8")
