"""Webhook requests: the secret token header decides, compared in constant time; the body
must be an Update."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.base import InboundRequest, RequestRejected
from connectors.telegram.adapter import TelegramAdapter, TelegramConfig, TelegramSecrets
from tests.connectors.telegram.conftest import WEBHOOK_SECRET, fixture, make_settings
from tests.doubles.telegram_server import TelegramDouble

HEADER = "X-Telegram-Bot-Api-Secret-Token"


def request_for(update: dict[str, Any], secret: str | None) -> InboundRequest:
    """The request Telegram makes (the double builds it) as the view hands it over."""
    body, headers = TelegramDouble.webhook_request(update, secret)
    return InboundRequest(body=body, headers=headers, remote_addr="149.154.167.220")


def test_accepts_the_right_secret(adapter: TelegramAdapter) -> None:
    update = fixture("private_text")
    verified = adapter.verify(make_settings(), request_for(update, WEBHOOK_SECRET))
    assert verified.payload == update
    assert verified.immediate is None


def test_header_name_is_case_insensitive(adapter: TelegramAdapter) -> None:
    body = json.dumps(fixture("private_text")).encode()
    request = InboundRequest(body=body, headers={HEADER.lower(): WEBHOOK_SECRET})
    assert adapter.verify(make_settings(), request).payload["update_id"] == 725000001


def test_rejects_a_missing_secret_header(adapter: TelegramAdapter) -> None:
    with pytest.raises(RequestRejected) as caught:
        adapter.verify(make_settings(), request_for(fixture("private_text"), None))
    assert caught.value.status == 401
    assert caught.value.field == HEADER
    assert caught.value.signature is True
    assert "missing" in caught.value.message


@pytest.mark.parametrize(
    "wrong", ["", "wh-secret_0123456789abcdeF", WEBHOOK_SECRET + "x", "wh-secret", "é"]
)
def test_rejects_a_wrong_secret(adapter: TelegramAdapter, wrong: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        adapter.verify(make_settings(), request_for(fixture("private_text"), wrong))
    assert (caught.value.status, caught.value.field, caught.value.signature) == (401, HEADER, True)
    assert WEBHOOK_SECRET not in caught.value.message


def test_refuses_every_request_without_a_configured_secret(adapter: TelegramAdapter) -> None:
    settings = make_settings(webhook_secret="")
    for secret in (None, "", "anything"):
        with pytest.raises(RequestRejected) as caught:
            adapter.verify(settings, request_for(fixture("private_text"), secret))
        assert caught.value.status == 503
        assert "webhook secret" in caught.value.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1, 2]", "body"),
        (b'"update"', "body"),
        (b"{}", "update_id"),
        (b'{"update_id": "12"}', "update_id"),
        (b'{"update_id": true}', "update_id"),
        (b'{"update_id": 1.5}', "update_id"),
    ],
)
def test_rejects_bodies_that_are_not_updates(
    adapter: TelegramAdapter, body: bytes, field: str
) -> None:
    request = InboundRequest(body=body, headers={HEADER: WEBHOOK_SECRET})
    with pytest.raises(RequestRejected) as caught:
        adapter.verify(make_settings(), request)
    assert (caught.value.status, caught.value.field, caught.value.signature) == (400, field, False)


def test_checks_the_secret_before_reading_the_body(adapter: TelegramAdapter) -> None:
    request = InboundRequest(body=b"not json", headers={HEADER: "wrong"})
    with pytest.raises(RequestRejected) as caught:
        adapter.verify(make_settings(), request)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "token", ["", "123456", "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "123:short", "123:AA ZZ"]
)
def test_secrets_validate_the_token_shape_without_echoing_it(token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TelegramSecrets(bot_token=token)
    if len(token) > 6:
        assert token not in str(caught.value)


@pytest.mark.parametrize("secret", ["has space", "x" * 257, "slash/", "ünï"])
def test_secrets_validate_the_webhook_secret(secret: str) -> None:
    with pytest.raises(ValidationError):
        TelegramSecrets(
            bot_token="123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", webhook_secret=secret
        )


def test_secrets_stay_out_of_reprs() -> None:
    secrets = TelegramSecrets(
        bot_token="123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", webhook_secret="abc_DEF-123"
    )
    assert "AAHdq" not in repr(secrets)
    assert "abc_DEF" not in repr(secrets)


def test_config_takes_the_username_with_or_without_at() -> None:
    assert TelegramConfig(bot_username="@studio_helper_bot").bot_username == "studio_helper_bot"
    assert TelegramConfig(bot_username="studio_helper_bot").mode == "webhook"
    with pytest.raises(ValidationError):
        TelegramConfig(bot_username="not a name")
    with pytest.raises(ValidationError):
        TelegramConfig(bot_username="bot", unknown=1)  # type: ignore[call-arg]
