"""Shared pieces of the Telegram connector tests: the connector's settings, fixture files,
and a started Bot API double."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from connectors.base import ConnectorSettings
from connectors.telegram.adapter import TelegramAdapter, TelegramConfig, TelegramSecrets
from tests.doubles.telegram_server import DEFAULT_TOKEN, DEFAULT_USERNAME, TelegramDouble

FIXTURES = Path(__file__).parent / "fixtures"
BOT_TOKEN = DEFAULT_TOKEN
BOT_ID = int(BOT_TOKEN.split(":")[0])
BOT_USERNAME = DEFAULT_USERNAME
WEBHOOK_SECRET = "wh-secret_0123456789abcdef"
CONNECTOR_ID = 7


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def fixture_names() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def make_settings(
    api_base_url: str = "https://api.telegram.org",
    *,
    webhook_secret: str = WEBHOOK_SECRET,
    mode: Literal["webhook", "polling"] = "webhook",
    bot_id: int | None = BOT_ID,
    bot_token: str = BOT_TOKEN,
) -> ConnectorSettings:
    return ConnectorSettings(
        connector_id=CONNECTOR_ID,
        config=TelegramConfig(bot_username=BOT_USERNAME, bot_id=bot_id, mode=mode),
        secrets=TelegramSecrets(bot_token=bot_token, webhook_secret=webhook_secret),
        api_base_url=api_base_url,
    )


@pytest.fixture
def adapter() -> TelegramAdapter:
    return TelegramAdapter()


@pytest.fixture
def double() -> Iterator[TelegramDouble]:
    with TelegramDouble() as started:
        yield started


@pytest.fixture
def tg(double: TelegramDouble, settings: Any) -> ConnectorSettings:
    """The connector's settings pointed at the double (loopback, so allowed explicitly)."""
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    return make_settings(double.url)
