from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes.webhook_trigger import (
    SignatureError,
    WebhookTrigger,
    WebhookTriggerConfig,
    signature_check,
    signature_for,
)

KEY = "whsec-测试-key"
BODY = b'{"text": "\xe4\xbd\xa0\xe5\xa5\xbd"}'


def _check(clock_skew_s: float = 0, **overrides: Any) -> None:
    now = time.time()
    timestamp = str(int(now - clock_skew_s))
    arguments: dict[str, Any] = {
        "key": KEY,
        "timestamp": timestamp,
        "signature": signature_for(KEY, timestamp, BODY),
        "body": BODY,
        "now": now,
        "max_age_s": 300,
    }
    arguments.update(overrides)
    signature_check(**arguments)


def test_accepts_a_fresh_request_signed_with_the_key() -> None:
    _check()


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
    assert signature_for("secret", "1700000000", b"{}") == (
        "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
    )


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"timestamp": None}, "X-Timestamp", "missing"),
        ({"timestamp": "yesterday"}, "X-Timestamp", "Unix time"),
        ({"clock_skew_s": 301}, "X-Timestamp", "more than 300 s"),
        ({"clock_skew_s": -301}, "X-Timestamp", "more than 300 s"),
        ({"signature": None}, "X-Signature", "missing"),
        ({"signature": "sha256=00"}, "X-Signature", "does not match"),
        ({"key": "another key"}, "X-Signature", "does not match"),
        ({"body": b'{"text": "tampered"}'}, "X-Signature", "does not match"),
    ],
)
def test_refuses_unsigned_stale_or_tampered_requests(
    overrides: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(SignatureError, match=message) as refused:
        _check(**overrides)
    assert refused.value.field == field


def test_outputs_the_text_and_the_document() -> None:
    trigger = {"text": "你好", "payload": {"text": "你好", "order": 7}, "received_at": "2026-01-01"}
    result = run_node("webhook_trigger", {"credential": "hook-key"}, trigger=trigger)
    assert not result.failed
    assert result.outputs == {
        "text": "你好",
        "payload": {"text": "你好", "order": 7},
        "received_at": "2026-01-01",
    }


def test_declares_its_signing_key_so_publishing_checks_it() -> None:
    config = WebhookTriggerConfig.model_validate({"credential": "hook-key"})
    assert WebhookTrigger.required_resources(config) == [("credential", "hook-key")]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "credential"),
        ({"credential": ""}, "at least 1"),
        ({"credential": "k", "max_age_s": 5}, "greater than or equal to 30"),
        ({"credential": "k", "secret": "x"}, "secret"),
    ],
)
def test_rejects_bad_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WebhookTriggerConfig.model_validate(config)
