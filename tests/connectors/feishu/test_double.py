"""The Feishu double speaks the Open API's wire format (protocols.md A.7), checked with raw
httpx so that nothing of the adapter is involved."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.doubles.feishu_server import FeishuDouble

CHAT = "oc_double_chat"


@pytest.fixture
def double() -> Iterator[FeishuDouble]:
    with FeishuDouble() as started:
        yield started


def token_of(double: FeishuDouble) -> str:
    answer = httpx.post(
        double.base_url + "/open-apis/auth/v3/tenant_access_token/internal",
        json={"app_id": double.app_id, "app_secret": double.app_secret},
        trust_env=False,
    )
    token: str = answer.json()["tenant_access_token"]
    return token


def call(
    double: FeishuDouble, method: str, path: str, token: str | None, body: Any = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        method, double.base_url + path, headers=headers, json=body, trust_env=False
    )


def text_body(text: str, uuid: str = "") -> dict[str, Any]:
    body = {"msg_type": "text", "content": json.dumps({"text": text})}
    return {**body, "uuid": uuid} if uuid else body


def test_token_endpoint(double: FeishuDouble) -> None:
    path = "/open-apis/auth/v3/tenant_access_token/internal"
    answer = httpx.post(
        double.base_url + path,
        json={"app_id": double.app_id, "app_secret": double.app_secret},
        trust_env=False,
    )
    assert answer.status_code == 200
    assert answer.headers["X-Tt-Logid"]
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"code", "msg", "tenant_access_token", "expire"}
    assert (body["code"], body["msg"]) == (0, "ok")
    assert body["tenant_access_token"].startswith("t-")
    assert 7190 <= body["expire"] <= 7200
    assert token_of(double) == body["tenant_access_token"]  # the same until < 30 min left
    wrong = httpx.post(
        double.base_url + path,
        json={"app_id": double.app_id, "app_secret": "x"},
        trust_env=False,
    )
    assert wrong.status_code == 400
    assert wrong.json()["code"] == 10014


def test_new_token_below_thirty_minutes_and_both_valid() -> None:
    with FeishuDouble(token_ttl_s=1000) as double:
        double.add_chat(CHAT)
        first, second = token_of(double), token_of(double)
        assert first != second
        body = {**text_body("hi"), "receive_id": CHAT}
        for token in (first, second):
            answer = call(
                double, "POST", "/open-apis/im/v1/messages?receive_id_type=chat_id", token, body
            )
            assert answer.json()["code"] == 0


def test_expired_token_is_invalid() -> None:
    with FeishuDouble(token_ttl_s=0.3) as double:
        token = token_of(double)
        time.sleep(0.4)
        answer = call(double, "GET", "/open-apis/bot/v3/info", token)
        assert answer.status_code == 400
        assert answer.json()["code"] == 99991663


def test_token_errors(double: FeishuDouble) -> None:
    missing = call(double, "GET", "/open-apis/bot/v3/info", None)
    assert (missing.status_code, missing.json()["code"]) == (400, 99991661)
    invalid = call(double, "GET", "/open-apis/bot/v3/info", "t-forged")
    assert (invalid.status_code, invalid.json()["code"]) == (400, 99991663)
    body = invalid.json()
    assert body["msg"].startswith("Invalid access token")
    assert body["error"]["log_id"] == invalid.headers["X-Tt-Logid"]


def test_bot_info(double: FeishuDouble) -> None:
    answer = call(double, "GET", "/open-apis/bot/v3/info", token_of(double))
    assert answer.json() == {
        "code": 0,
        "msg": "ok",
        "bot": {
            "activate_status": 2,
            "app_name": double.bot_name,
            "avatar_url": answer.json()["bot"]["avatar_url"],
            "ip_white_list": [],
            "open_id": double.bot_open_id,
        },
    }


def test_reply_envelope_and_uuid(double: FeishuDouble) -> None:
    payload = double.user_message(CHAT, "question")
    asked = payload["event"]["message"]["message_id"]
    token = token_of(double)
    path = f"/open-apis/im/v1/messages/{asked}/reply"
    answer = call(double, "POST", path, token, text_body('答案 "q"', uuid="u-1"))
    body = answer.json()
    assert (answer.status_code, body["code"], body["msg"]) == (200, 0, "success")
    data = body["data"]
    assert data["message_id"].startswith("om_")
    assert (data["msg_type"], data["chat_id"], data["parent_id"]) == ("text", CHAT, asked)
    assert data["sender"]["sender_type"] == "app"
    assert json.loads(data["body"]["content"]) == {"text": '答案 "q"'}
    again = call(double, "POST", path, token, text_body('答案 "q"', uuid="u-1")).json()
    assert again["data"]["message_id"] == data["message_id"]
    assert double.bot_texts(CHAT) == ['答案 "q"']
    assert [m.sender for m in double.messages(CHAT)] == ["user", "app"]


def test_content_rules(double: FeishuDouble) -> None:
    double.add_chat(CHAT)
    token = token_of(double)
    path = "/open-apis/im/v1/messages?receive_id_type=chat_id"
    too_long = {**text_body("x" * (150 * 1024)), "receive_id": CHAT}
    assert call(double, "POST", path, token, too_long).json()["code"] == 230025
    not_json = {"msg_type": "text", "content": "{oops", "receive_id": CHAT}
    assert call(double, "POST", path, token, not_json).json()["code"] == 230001
    long_uuid = {**text_body("x", uuid="u" * 51), "receive_id": CHAT}
    assert call(double, "POST", path, token, long_uuid).json()["code"] == 99992402
    bad_type = call(double, "POST", path.replace("chat_id", "chat"), token, too_long)
    assert bad_type.json()["code"] == 99992402
    assert double.bot_texts(CHAT) == []


def test_patch_rules(double: FeishuDouble) -> None:
    double.add_chat(CHAT)
    token = token_of(double)
    create = "/open-apis/im/v1/messages?receive_id_type=chat_id"
    text = call(double, "POST", create, token, {**text_body("t"), "receive_id": CHAT}).json()
    text_id = text["data"]["message_id"]
    new_card = json.dumps({"config": {"update_multi": True}, "elements": []})
    patched = call(
        double, "PATCH", f"/open-apis/im/v1/messages/{text_id}", token, {"content": new_card}
    )
    assert patched.json()["code"] == 230001  # only cards can be updated
    fixed = json.dumps({"elements": [{"tag": "markdown", "content": "fixed"}]})
    body = {"msg_type": "interactive", "content": fixed, "receive_id": CHAT}
    card_id = call(double, "POST", create, token, body).json()["data"]["message_id"]
    refused = call(
        double, "PATCH", f"/open-apis/im/v1/messages/{card_id}", token, {"content": new_card}
    )
    assert refused.json()["code"] == 230001  # not sent with update_multi
    assert double.bot_texts(CHAT) == ["t", "fixed"]


def test_rate_limit_fault_is_feishus_429(double: FeishuDouble) -> None:
    double.inject("429", reset_s=12, limit=50)
    answer = call(double, "GET", "/open-apis/bot/v3/info", token_of(double))
    assert answer.status_code == 429
    assert answer.headers["x-ogw-ratelimit-limit"] == "50"
    assert answer.headers["x-ogw-ratelimit-reset"] == "12"
    body = answer.json()
    assert (body["code"], body["msg"]) == (99991400, "request trigger frequency limit")
    # One call only, and the token endpoint was not counted.
    assert call(double, "GET", "/open-apis/bot/v3/info", token_of(double)).status_code == 200


def test_faults_are_validated(double: FeishuDouble) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        double.inject("418")
    with pytest.raises(ValueError, match="unknown endpoint"):
        double.inject("500", on="nowhere")
    with pytest.raises(ValueError, match="code="):
        double.inject("code")


def test_requests_are_recorded(double: FeishuDouble) -> None:
    token = token_of(double)
    call(double, "GET", "/open-apis/bot/v3/info", token)
    recorded = double.requests
    assert [(r.method, r.path) for r in recorded] == [
        ("POST", "/open-apis/auth/v3/tenant_access_token/internal"),
        ("GET", "/open-apis/bot/v3/info"),
    ]
    assert recorded[1].headers["Authorization"] == f"Bearer {token}"
    assert recorded[0].json == {"app_id": double.app_id, "app_secret": double.app_secret}
