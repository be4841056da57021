from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from assistant_site.settings.env import env_bool, env_int, env_list, env_str
from tests.conftest import REPO

_SHOW = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DATABASES['default']['ENGINE'], s.CELERY_TASK_ALWAYS_EAGER, "
    "s.CHANNEL_LAYERS['default']['BACKEND'], s.CACHES['default']['BACKEND'])"
)


def _start(env: dict[str, str], code: str = _SHOW) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "DJANGO_SETTINGS_MODULE": "assistant_site.settings.base", **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_malformed_values_stop_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG='maybe' is not a boolean"):
        env_bool("SOME_FLAG", default=False)
    monkeypatch.setenv("SOME_COUNT", "ten")
    with pytest.raises(ImproperlyConfigured, match="SOME_COUNT='ten' is not an integer"):
        env_int("SOME_COUNT", 1)
    monkeypatch.setenv("SOME_COUNT", "0")
    with pytest.raises(ImproperlyConfigured, match="must be at least 1"):
        env_int("SOME_COUNT", 1, minimum=1)


def test_values_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n", encoding="utf-8")
    monkeypatch.setenv("A_TOKEN_FILE", str(secret))
    assert env_str("A_TOKEN") == "from-a-file"
    monkeypatch.setenv("HOSTS", "a.example, b.example,,")
    assert env_list("HOSTS") == ["a.example", "b.example"]
    monkeypatch.setenv("A_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="A_TOKEN_FILE"):
        env_str("A_TOKEN")


def test_without_service_urls_the_embedded_defaults_are_used_with_warnings() -> None:
    result = _start({"DJANGO_SECRET_KEY": "k" * 50, "LOG_FORMAT": "text"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "True",
        "channels.layers.InMemoryChannelLayer",
        "django.core.cache.backends.locmem.LocMemCache",
    ]
    assert "DATABASE_URL is not set" in result.stderr
    assert "REDIS_URL is not set" in result.stderr


def test_service_urls_select_postgresql_redis_and_a_worker_queue() -> None:
    result = _start(
        {
            "DJANGO_SECRET_KEY": "k" * 50,
            "DATABASE_URL": "postgres://u@db.internal:5432/studio",
            "REDIS_URL": "redis://cache.internal:6379/0",
        }
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "False",
        "channels_redis.core.RedisChannelLayer",
        "django.core.cache.backends.redis.RedisCache",
    ]


def test_the_channel_layer_disables_the_redis_socket_timeout() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0])"
    )
    result = _start({"DJANGO_SECRET_KEY": "k" * 50, "REDIS_URL": "redis://127.0.0.1:6379/0"}, code)
    assert "'socket_timeout': None" in result.stdout, result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        ({"DJANGO_SECRET_KEY": "k" * 50, "SECRETS_KEYS": "k1:not-base64!"}, "not valid base64"),
        ({"DJANGO_SECRET_KEY": "k" * 50, "SECRETS_KEYS": "k1:c2hvcnQ="}, "base64-of-32-bytes"),
        ({"DJANGO_SECRET_KEY": "k" * 50, "LOG_FORMAT": "xml"}, "LOG_FORMAT='xml'"),
    ],
)
def test_bad_configuration_fails_at_start_up(env: dict[str, str], message: str) -> None:
    result = _start(env)
    assert result.returncode != 0
    assert message in result.stderr
