from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys

import pytest
from django.test import Client, override_settings

from tests.conftest import REPO

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "assistant_site.settings.base",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "studio.example.com",
    "SECRETS_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
    "METRICS_BEARER_TOKEN": secrets.token_urlsafe(24),
}


def test_check_deploy_passes_with_production_settings() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_HTTPS", "CI"}}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env={**env, **PRODUCTION_ENV},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_a_missing_secrets_key() -> None:
    env = {**os.environ, **PRODUCTION_ENV, "SECRETS_KEYS": ""}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "assistant.W001" in result.stdout + result.stderr


def test_responses_carry_browser_security_headers(client: Client) -> None:
    response = client.get("/healthz")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_https_mode_sends_hsts_and_secure_cookies() -> None:
    with override_settings(
        SECURE_SSL_REDIRECT=True,
        SECURE_HSTS_SECONDS=31_536_000,
        SESSION_COOKIE_SECURE=True,
        CSRF_COOKIE_SECURE=True,
    ):
        client = Client()
        assert client.get("/admin/login/").status_code == 301  # plain http is redirected
        response = client.get("/admin/login/", secure=True)
        assert "max-age=31536000" in response["Strict-Transport-Security"]
        assert response.cookies["csrftoken"]["secure"]


@pytest.mark.django_db
def test_admin_forms_require_a_csrf_token(make_user: object) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403


@pytest.mark.django_db
def test_repeated_failed_logins_lock_the_account_out(settings: object, make_user: object) -> None:
    make_user("dora", is_staff=True)  # type: ignore[operator]
    client = Client(REMOTE_ADDR="198.51.100.7")
    limit = settings.AXES_FAILURE_LIMIT  # type: ignore[attr-defined]
    for _ in range(limit):
        client.post("/admin/login/", {"username": "dora", "password": "wrong password"})
    locked = client.post("/admin/login/", {"username": "dora", "password": "correct horse battery"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another address is not locked out for this user name.
    other = Client(REMOTE_ADDR="198.51.100.8")
    ok = other.post("/admin/login/", {"username": "dora", "password": "correct horse battery"})
    assert ok.status_code == 302
