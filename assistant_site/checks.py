"""Checks of the installation: Django system checks for `manage.py check --deploy`, and the
service checks that `/readyz` and `manage.py check_env` share.

A service check answers a short detail when the service answers, or raises with the reason.
"""

from __future__ import annotations

import re
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.db import connection
from kombu import Connection


@register(Tags.security, deploy=True)
def secrets_and_metrics_configured(app_configs: Any, **kwargs: Any) -> list[Warning]:
    problems = []
    if not settings.SECRETS_KEYS:
        problems.append(
            Warning(
                "SECRETS_KEYS is not set: API keys and bot tokens cannot be stored.",
                hint="Run `manage.py generate_secrets_key` and add the line to the environment.",
                id="assistant.W001",
            )
        )
    if not settings.METRICS_BEARER_TOKEN and not settings.METRICS_ALLOWED_IPS:
        problems.append(
            Warning(
                "/metrics accepts nobody: set METRICS_BEARER_TOKEN or METRICS_ALLOWED_IPS.",
                id="assistant.W002",
            )
        )
    return problems


# --- service checks ----------------------------------------------------------------------

NOT_CONFIGURED = "not configured"

# scheme://user:password@ -> scheme://user:***@ (also redis://:password@).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """The text with every password inside a URL replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def service_address(url: str) -> str:
    """Where a service URL points, without credentials: ``host:port/path``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path}" if host else mask_secrets(url)


def database_check(timeout: float) -> str:
    # The connection's own connect timeout applies; callers bound the wait (readyz runs in a
    # request, check_env in a thread it stops waiting for).
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return f"{connection.vendor} reachable"


def redis_check(timeout: float) -> str:
    if not settings.REDIS_URL:
        return f"{NOT_CONFIGURED} (local-memory cache, in-memory channel layer)"
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        client.ping()
    finally:
        client.close()
    return "reachable"


def broker_check(timeout: float) -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return f"{NOT_CONFIGURED} (tasks run eagerly in-process)"
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=max(1, int(timeout)))
    return "reachable"


def chroma_check(timeout: float) -> str:
    if not settings.CHROMA_URL:
        return NOT_CONFIGURED
    url = settings.CHROMA_URL.rstrip("/") + "/api/v2/heartbeat"
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        response.read()
    return "reachable"
