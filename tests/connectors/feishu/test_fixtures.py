"""The fixtures have Feishu's real shape, checked with the official SDK (lark-oapi): its event
models know every field, and its event dispatcher accepts them as the double encrypts and
signs them, which also checks the double's ``event_request`` against the SDK's verifier."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import lark_oapi as lark  # type: ignore[import-untyped]
import pytest
from lark_oapi.api.im.v1 import (  # type: ignore[import-untyped]
    P2ImMessageMessageReadV1,
    P2ImMessageReceiveV1,
)
from lark_oapi.core.model import RawRequest  # type: ignore[import-untyped]

from connectors.base import InboundRequest
from connectors.feishu.adapter import FeishuAdapter
from tests.connectors.feishu.conftest import (
    APP_ID,
    ENCRYPT_KEY,
    FIXTURES,
    MESSAGE_FIXTURES,
    VERIFICATION_TOKEN,
    connector_settings,
    fixture,
)
from tests.doubles.feishu_server import EventRequest, event_request


def raw_request(sealed: EventRequest) -> Any:
    raw = RawRequest()
    raw.uri = "/connectors/42/events"
    raw.headers = dict(sealed.headers)
    raw.body = sealed.body
    return raw


def sdk_handler(register: Callable[[Any], Any] | None = None) -> Any:
    builder = lark.EventDispatcherHandler.builder(ENCRYPT_KEY, VERIFICATION_TOKEN)
    if register is not None:
        builder = register(builder)
    return builder.build()


def assert_known_to_sdk(data: dict[str, Any], model: Any, where: str = "") -> None:
    """Every key of ``data`` is a field of the SDK's ``model`` (which silently drops unknown
    keys), recursively."""
    for key, value in data.items():
        assert hasattr(model, key), f"{where}{key} is not a field of {type(model).__name__}"
        attribute = getattr(model, key)
        if isinstance(value, dict) and not isinstance(attribute, dict):
            assert_known_to_sdk(value, attribute, f"{where}{key}.")
        elif isinstance(value, list) and isinstance(attribute, list):
            for index, (item, parsed) in enumerate(zip(value, attribute, strict=True)):
                if isinstance(item, dict) and not isinstance(parsed, dict):
                    assert_known_to_sdk(item, parsed, f"{where}{key}[{index}].")


def test_every_fixture_is_listed() -> None:
    names = {path.stem for path in FIXTURES.glob("*.json")}
    assert names == {
        *MESSAGE_FIXTURES,
        "url_verification",
        "im.message.message_read_v1",
        "unknown_event",
    }


@pytest.mark.parametrize("name", MESSAGE_FIXTURES)
def test_message_fixture_matches_the_sdk_model(name: str) -> None:
    payload = fixture(name)
    event = lark.JSON.unmarshal(json.dumps(payload), P2ImMessageReceiveV1)
    assert_known_to_sdk(payload, event)
    message = event.event.message
    assert message.message_id.startswith("om_")
    assert message.chat_id.startswith("oc_")
    assert message.chat_type in ("p2p", "group")
    assert isinstance(json.loads(message.content), dict)  # a JSON document in a string
    assert event.event.sender.sender_id.open_id.startswith("ou_")
    assert event.event.sender.sender_type == "user"
    assert event.header.event_type == "im.message.receive_v1"
    assert event.header.token == VERIFICATION_TOKEN
    assert event.header.app_id == APP_ID
    for mention in message.mentions or []:
        assert mention.key.startswith("@_user_")
        assert mention.id.open_id.startswith("ou_")


@pytest.mark.parametrize("name", MESSAGE_FIXTURES)
def test_sdk_dispatcher_and_adapter_accept_the_same_sealed_fixture(name: str) -> None:
    payload = fixture(name)
    received: list[Any] = []
    handler = sdk_handler(lambda b: b.register_p2_im_message_receive_v1(received.append))
    sealed = event_request(payload, encrypt_key=ENCRYPT_KEY)
    response = handler.do(raw_request(sealed))
    assert response.status_code == 200, response.content
    assert len(received) == 1
    message_id = payload["event"]["message"]["message_id"]
    assert received[0].event.message.message_id == message_id

    adapter = FeishuAdapter()
    settings = connector_settings(encrypt_key=ENCRYPT_KEY)
    verified = adapter.verify(settings, InboundRequest(body=sealed.body, headers=sealed.headers))
    assert verified.payload == payload
    items = adapter.parse(settings, verified.payload)
    assert [item.dedupe_key for item in items] == [f"message:{message_id}"]
    assert items[0].kind == "message"


def test_sdk_refuses_what_our_adapter_refuses() -> None:
    payload = fixture("im.message.receive_v1.p2p_text")
    sealed = event_request(payload, encrypt_key=ENCRYPT_KEY)
    forged = EventRequest(sealed.body, {**sealed.headers, "X-Lark-Signature": "0" * 64})
    handler = sdk_handler(lambda b: b.register_p2_im_message_receive_v1(lambda _e: None))
    assert handler.do(raw_request(forged)).status_code == 500  # the SDK's answer to a forgery


def test_message_read_fixture_matches_the_sdk_model() -> None:
    payload = fixture("im.message.message_read_v1")
    event = lark.JSON.unmarshal(json.dumps(payload), P2ImMessageMessageReadV1)
    assert_known_to_sdk(payload, event)
    assert event.event.message_id_list == ["om_dc13264520392913993dd051dba21dcf"]
    received: list[Any] = []
    handler = sdk_handler(lambda b: b.register_p2_im_message_message_read_v1(received.append))
    response = handler.do(raw_request(event_request(payload, encrypt_key=ENCRYPT_KEY)))
    assert response.status_code == 200
    assert received[0].event.reader.reader_id.open_id.startswith("ou_")


def test_url_verification_fixture_is_answered_alike() -> None:
    payload = fixture("url_verification")
    for key in ("", ENCRYPT_KEY):
        sealed = event_request(payload, encrypt_key=key)
        response = sdk_handler().do(raw_request(sealed))
        assert json.loads(response.content) == {"challenge": "ajls384kdj"}
        settings = connector_settings(encrypt_key=key)
        verified = FeishuAdapter().verify(
            settings, InboundRequest(body=sealed.body, headers=sealed.headers)
        )
        assert verified.immediate == {"challenge": "ajls384kdj"}


def test_unknown_event_fails_in_the_sdk_but_is_acknowledged_by_us() -> None:
    payload = fixture("unknown_event")
    sealed = event_request(payload, encrypt_key=ENCRYPT_KEY)
    # The SDK answers 500 "processor not found", which makes Feishu redeliver four times...
    response = sdk_handler().do(raw_request(sealed))
    assert response.status_code == 500
    assert b"processor not found" in response.content
    # ...where the adapter verifies it and acknowledges it as ignored.
    adapter = FeishuAdapter()
    settings = connector_settings(encrypt_key=ENCRYPT_KEY)
    verified = adapter.verify(settings, InboundRequest(body=sealed.body, headers=sealed.headers))
    [item] = adapter.parse(settings, verified.payload)
    assert item.kind == "ignored"
