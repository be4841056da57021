"""Feishu adapter tests: fixture payloads, connector settings, and the Feishu double."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from connectors.base import ConnectorSettings
from connectors.feishu.adapter import FeishuAdapter, FeishuConfig, FeishuSecrets, forget_tokens
from tests.doubles.feishu_server import FeishuDouble

FIXTURES = Path(__file__).parent / "fixtures"

# The values in the fixtures (Feishu's documentation examples; no real tenant).
APP_ID = "cli_9f5343c580712544"
VERIFICATION_TOKEN = "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV"
ENCRYPT_KEY = "kJ8xFz2QmWn5Rt7Yv0Ab3Cd6Ef9Gh1Ij"
BOT_OPEN_ID = "ou_7d8a6e6df7621556ce0d21922b676706"
ALICE = "ou_84aad35d084aa403a838cf73ee18467"
BOB = "ou_e6c0a9a85d3b7c1f2d4a6b8c0e2f4a6b"
P2P_CHAT = "oc_a0553eda9014c201e6969b478895c230"
GROUP_CHAT = "oc_5ce6d572455d361153b7xx51da133945"
CONNECTOR_ID = 42

MESSAGE_FIXTURES = [
    "im.message.receive_v1.p2p_text",
    "im.message.receive_v1.group_mention_bot",
    "im.message.receive_v1.group_mention_namesake",
    "im.message.receive_v1.post",
    "im.message.receive_v1.image",
    "im.message.receive_v1.file",
]


def fixture(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return value


def connector_settings(
    *,
    api_base_url: str = "https://open.feishu.cn",
    app_id: str = APP_ID,
    app_secret: str = "app-secret-for-tests",  # noqa: S107  (a test value)
    verification_token: str = VERIFICATION_TOKEN,
    encrypt_key: str = "",
    bot_open_id: str = BOT_OPEN_ID,
    **config: Any,
) -> ConnectorSettings:
    return ConnectorSettings(
        connector_id=CONNECTOR_ID,
        config=FeishuConfig(app_id=app_id, bot_open_id=bot_open_id, **config),
        secrets=FeishuSecrets(
            app_secret=app_secret,
            verification_token=verification_token,
            encrypt_key=encrypt_key,
        ),
        api_base_url=api_base_url,
    )


def double_settings(double: FeishuDouble, **overrides: Any) -> ConnectorSettings:
    """Settings of a connector talking to ``double`` (its app and its address)."""
    values: dict[str, Any] = {
        "api_base_url": double.base_url,
        "app_id": double.app_id,
        "app_secret": double.app_secret,
        "bot_open_id": double.bot_open_id,
    }
    return connector_settings(**{**values, **overrides})


@pytest.fixture
def adapter() -> FeishuAdapter:
    return FeishuAdapter()


@pytest.fixture(autouse=True)
def _no_cached_tokens() -> Iterator[None]:
    forget_tokens()
    yield
    forget_tokens()


@pytest.fixture
def feishu(settings: Settings) -> Iterator[FeishuDouble]:
    """A started Feishu double on a free loopback port, which the SSRF guard lets through."""
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with FeishuDouble(app_id=APP_ID, bot_open_id=BOT_OPEN_ID) as double:
        yield double
