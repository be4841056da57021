"""FeishuAdapter.verify: decryption, URL verification, signature, token and timestamp checks
(protocols.md A.1-A.4), on requests built as Feishu sends them."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from connectors.base import InboundRequest, RequestRejected
from connectors.feishu.adapter import FeishuAdapter, decrypt, signature
from tests.connectors.feishu.conftest import (
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    connector_settings,
    fixture,
)
from tests.doubles.feishu_server import EventRequest, encrypt, event_request, sign

NOW = 1_700_000_000


def inbound(request: EventRequest, received_at: float = NOW) -> InboundRequest:
    return InboundRequest(body=request.body, headers=request.headers, received_at=received_at)


def rejected(adapter: FeishuAdapter, request: InboundRequest, **config: Any) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        adapter.verify(connector_settings(**config), request)
    return caught.value


# --- decryption ------------------------------------------------------------------------------


def test_decrypts_the_official_test_vector() -> None:
    assert decrypt("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=") == "hello world"


def test_decrypts_what_the_double_encrypts_and_so_does_the_sdk() -> None:
    from lark_oapi.core.utils import AESCipher  # type: ignore[import-untyped]

    text = json.dumps({"text": '飞书 🚀 "quotes" \\ end'}, ensure_ascii=False)
    encrypted = encrypt(ENCRYPT_KEY, text)
    assert decrypt(ENCRYPT_KEY, encrypted) == text
    assert AESCipher(ENCRYPT_KEY).decrypt_str(encrypted) == text


def test_encrypted_event_is_decrypted(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    request = inbound(event_request(payload, encrypt_key=ENCRYPT_KEY, timestamp=NOW))
    assert json.loads(request.body).keys() == {"encrypt"}
    verified = adapter.verify(connector_settings(encrypt_key=ENCRYPT_KEY), request)
    assert verified.payload == payload
    assert verified.immediate is None


@pytest.mark.parametrize(
    "encrypted",
    [
        "not base64 at all!",
        "aGVsbG8=",  # base64, but far shorter than an IV and a block
        "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=",  # "hello world" under another key
        12345,
    ],
)
def test_garbage_encrypt_is_a_400_on_encrypt(adapter: FeishuAdapter, encrypted: Any) -> None:
    body = json.dumps({"encrypt": encrypted}).encode()
    stamp, nonce = str(NOW), "n0nce"
    headers = {
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": sign(stamp, nonce, ENCRYPT_KEY, body),
    }
    error = rejected(
        adapter,
        InboundRequest(body=body, headers=headers, received_at=NOW),
        encrypt_key=ENCRYPT_KEY,
    )
    assert (error.status, error.field) == (400, "encrypt")


def test_encrypted_body_without_an_encrypt_key_is_a_400(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    request = inbound(event_request(payload, encrypt_key=ENCRYPT_KEY, timestamp=NOW))
    error = rejected(adapter, request, encrypt_key="")
    assert (error.status, error.field) == (400, "encrypt")
    assert "Encrypt Key" in error.message


def test_decrypted_payload_must_be_a_json_object(adapter: FeishuAdapter) -> None:
    request = inbound(event_request(b"[1, 2]", encrypt_key=ENCRYPT_KEY, timestamp=NOW))
    error = rejected(adapter, request, encrypt_key=ENCRYPT_KEY)
    assert (error.status, error.field) == (400, "encrypt")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2, 3]", b'"a string"', b"\xff\xfe"])
def test_body_that_is_not_a_json_object_is_a_400(adapter: FeishuAdapter, body: bytes) -> None:
    error = rejected(adapter, InboundRequest(body=body, headers={}, received_at=NOW))
    assert (error.status, error.field) == (400, "body")


# --- URL verification -----------------------------------------------------------------------


def test_answers_the_plain_challenge(adapter: FeishuAdapter) -> None:
    request = inbound(event_request(fixture("url_verification"), timestamp=NOW))
    verified = adapter.verify(connector_settings(), request)
    assert verified.immediate == {"challenge": "ajls384kdj"}
    assert verified.payload == {}


def test_answers_the_encrypted_challenge_unencrypted_without_signature(
    adapter: FeishuAdapter,
) -> None:
    sealed = event_request(fixture("url_verification"), encrypt_key=ENCRYPT_KEY)
    # Feishu does not sign URL verification: no signature headers at all.
    request = InboundRequest(body=sealed.body, headers={}, received_at=NOW)
    verified = adapter.verify(connector_settings(encrypt_key=ENCRYPT_KEY), request)
    assert verified.immediate == {"challenge": "ajls384kdj"}


def test_challenge_with_a_wrong_token_is_refused(adapter: FeishuAdapter) -> None:
    payload = {**fixture("url_verification"), "token": "forged"}
    error = rejected(adapter, inbound(event_request(payload)))
    assert (error.status, error.field, error.signature) == (401, "token", True)


# --- signature ------------------------------------------------------------------------------


def test_signature_is_sha256_of_timestamp_nonce_key_and_raw_body() -> None:
    body = b'{"encrypt":"abc"}'
    expected = hashlib.sha256(b"1700000000" + b"nonce" + b"key" + body).hexdigest()
    assert signature("1700000000", "nonce", "key", body) == expected
    assert sign("1700000000", "nonce", "key", body) == expected


def test_accepts_a_signed_plaintext_event_when_an_encrypt_key_is_set(
    adapter: FeishuAdapter,
) -> None:
    # Feishu encrypts when a key is set; the signature covers whatever body arrives.
    payload = fixture("im.message.receive_v1.p2p_text")
    stamp, nonce = str(NOW), "abc"
    body = json.dumps(payload).encode()
    headers = {
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": sign(stamp, nonce, ENCRYPT_KEY, body),
    }
    request = InboundRequest(body=body, headers=headers, received_at=NOW)
    assert adapter.verify(connector_settings(encrypt_key=ENCRYPT_KEY), request).payload == payload


def test_rejects_bad_signature(adapter: FeishuAdapter) -> None:
    sealed = event_request(fixture("im.message.receive_v1.p2p_text"), encrypt_key=ENCRYPT_KEY)
    headers = {**sealed.headers, "X-Lark-Signature": "0" * 64}
    request = InboundRequest(body=sealed.body, headers=headers, received_at=time.time())
    error = rejected(adapter, request, encrypt_key=ENCRYPT_KEY)
    assert (error.status, error.field, error.signature) == (401, "X-Lark-Signature", True)


def test_rejects_missing_signature(adapter: FeishuAdapter) -> None:
    sealed = event_request(fixture("im.message.receive_v1.p2p_text"), encrypt_key=ENCRYPT_KEY)
    headers = {k: v for k, v in sealed.headers.items() if k != "X-Lark-Signature"}
    request = InboundRequest(body=sealed.body, headers=headers, received_at=time.time())
    error = rejected(adapter, request, encrypt_key=ENCRYPT_KEY)
    assert (error.status, error.field) == (401, "X-Lark-Signature")


def test_rejects_signature_made_with_another_key(adapter: FeishuAdapter) -> None:
    sealed = event_request(fixture("im.message.receive_v1.p2p_text"), encrypt_key=ENCRYPT_KEY)
    stamp = sealed.headers["X-Lark-Request-Timestamp"]
    nonce = sealed.headers["X-Lark-Request-Nonce"]
    headers = {**sealed.headers, "X-Lark-Signature": sign(stamp, nonce, "other", sealed.body)}
    request = InboundRequest(body=sealed.body, headers=headers, received_at=time.time())
    assert rejected(adapter, request, encrypt_key=ENCRYPT_KEY).field == "X-Lark-Signature"


@pytest.mark.parametrize(
    "reserialize",
    [
        lambda body: json.dumps(json.loads(body)).encode(),
        lambda body: json.dumps(json.loads(body), separators=(",", ":")).encode(),
        lambda body: json.dumps(json.loads(body), ensure_ascii=False).encode(),
    ],
    ids=["default", "compact", "unescaped"],
)
def test_rejects_signature_computed_over_reserialized_json(
    adapter: FeishuAdapter, reserialize: Any
) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    stamp, nonce = str(int(time.time())), "8b1a9953c4611296"
    # Bytes as they might come on the wire, which no JSON library writes back alike.
    raw = b'{ "encrypt" :\n  "' + encrypt(ENCRYPT_KEY, json.dumps(payload)).encode() + b'" }\n'
    reserialized = reserialize(raw)
    assert reserialized != raw
    assert json.loads(reserialized) == json.loads(raw)
    settings = connector_settings(encrypt_key=ENCRYPT_KEY)
    base = {"X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": nonce}
    # The signature over the exact bytes received passes...
    exact = {**base, "X-Lark-Signature": sign(stamp, nonce, ENCRYPT_KEY, raw)}
    good = InboundRequest(body=raw, headers=exact, received_at=time.time())
    assert adapter.verify(settings, good).payload == payload
    # ...one over the same JSON written again does not.
    again = {**base, "X-Lark-Signature": sign(stamp, nonce, ENCRYPT_KEY, reserialized)}
    bad = InboundRequest(body=raw, headers=again, received_at=time.time())
    assert rejected(adapter, bad, encrypt_key=ENCRYPT_KEY).field == "X-Lark-Signature"


def test_header_names_are_case_insensitive(adapter: FeishuAdapter) -> None:
    sealed = event_request(fixture("im.message.receive_v1.p2p_text"), encrypt_key=ENCRYPT_KEY)
    headers = {name.lower(): value for name, value in sealed.headers.items()}
    request = InboundRequest(body=sealed.body, headers=headers, received_at=time.time())
    assert adapter.verify(connector_settings(encrypt_key=ENCRYPT_KEY), request).payload


# --- token ----------------------------------------------------------------------------------


def test_rejects_wrong_token_in_the_v2_header(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    payload["header"]["token"] = "forged-token"
    error = rejected(adapter, inbound(event_request(payload, timestamp=NOW)))
    assert (error.status, error.field, error.signature) == (401, "token", True)


def test_rejects_missing_token(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    del payload["header"]["token"]
    assert rejected(adapter, inbound(event_request(payload, timestamp=NOW))).field == "token"


def test_a_v2_event_with_the_token_only_on_top_is_refused(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    payload["header"]["token"] = "forged-token"
    payload["token"] = VERIFICATION_TOKEN  # the v1 place does not count for schema 2.0
    assert rejected(adapter, inbound(event_request(payload, timestamp=NOW))).field == "token"


def test_checks_the_top_level_token_of_v1_events(adapter: FeishuAdapter) -> None:
    v1: dict[str, Any] = {"uuid": "41d6", "token": "forged", "ts": "1700000000.0"}
    v1["type"] = "event_callback"
    v1["event"] = {"type": "message", "text": "hi"}
    assert rejected(adapter, inbound(event_request(v1, timestamp=NOW))).field == "token"
    v1["token"] = VERIFICATION_TOKEN
    assert adapter.verify(connector_settings(), inbound(event_request(v1, timestamp=NOW)))


def test_token_checked_in_encrypted_mode_too(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    payload["header"]["token"] = "forged-token"
    request = inbound(event_request(payload, encrypt_key=ENCRYPT_KEY, timestamp=NOW))
    assert rejected(adapter, request, encrypt_key=ENCRYPT_KEY).field == "token"


def test_refuses_events_when_no_secret_is_configured(adapter: FeishuAdapter) -> None:
    request = inbound(event_request(fixture("im.message.receive_v1.p2p_text"), timestamp=NOW))
    error = rejected(adapter, request, verification_token="", encrypt_key="")
    assert (error.status, error.field) == (401, "token")


def test_encrypt_key_alone_is_enough(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    request = inbound(event_request(payload, encrypt_key=ENCRYPT_KEY, timestamp=NOW))
    settings = connector_settings(verification_token="", encrypt_key=ENCRYPT_KEY)
    assert adapter.verify(settings, request).payload == payload


# --- timestamp window -----------------------------------------------------------------------


def test_rejects_a_replayed_stale_request(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    sealed = event_request(payload, encrypt_key=ENCRYPT_KEY, timestamp=NOW)
    settings = connector_settings(encrypt_key=ENCRYPT_KEY, max_age_s=300)
    # Within the window: accepted; the same bytes replayed ten minutes later: refused.
    assert adapter.verify(settings, inbound(sealed, received_at=NOW + 299)).payload == payload
    with pytest.raises(RequestRejected) as caught:
        adapter.verify(settings, inbound(sealed, received_at=NOW + 600))
    assert (caught.value.status, caught.value.field) == (401, "X-Lark-Request-Timestamp")


def test_rejects_a_request_from_the_future(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    request = inbound(event_request(payload, timestamp=NOW + 3600))
    assert rejected(adapter, request).field == "X-Lark-Request-Timestamp"


def test_rejects_a_timestamp_that_is_not_a_number(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    request = inbound(event_request(payload, timestamp="yesterday"))
    assert rejected(adapter, request).field == "X-Lark-Request-Timestamp"


def test_no_timestamp_header_no_window(adapter: FeishuAdapter) -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    request = InboundRequest(body=json.dumps(payload).encode(), headers={}, received_at=NOW)
    assert adapter.verify(connector_settings(), request).payload == payload
