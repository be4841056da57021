"""Test settings: the base settings pointed at the local services, made faster.

PostgreSQL and Redis are used when reachable at their standard loopback ports (or wherever
DATABASE_URL / REDIS_URL point). Without them the suite falls back to SQLite and the embedded
stand-ins, except under CI=true, where a missing service is an error rather than a skip.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

ON_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def _service_url(name: str, default: str, port: int) -> str:
    url = os.environ.get(name) or default
    if _reachable(url, port):
        return url
    if ON_CI:
        raise ImproperlyConfigured(f"CI=true and {name} ({url}) is not reachable")
    return ""


os.environ["DATABASE_URL"] = _service_url(
    "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres", 5432
)
# Database 15 keeps test keys away from a development instance on database 0.
os.environ["REDIS_URL"] = _service_url("REDIS_URL", "redis://127.0.0.1:6379/15", 6379)
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-" + "x" * 40)
os.environ.setdefault("DJANGO_HTTPS", "false")
os.environ.setdefault("DB_POOL", "false")
# Threads of the ASGI and channels helpers would otherwise keep sessions to the test database
# open past its teardown.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault(
    # Test-only keys; never used outside the suite.
    "SECRETS_KEYS",
    "test2026:" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
)

from assistant_site.settings.base import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Static files come from the app folders; nothing is collected for tests.
STATIC_ROOT = None  # type: ignore[assignment]
WHITENOISE_USE_FINDERS = True
