"""A Feishu bot end to end: encrypted and signed event pushes through the real callback URL,
the URL-verification challenge, exactly-once answers when Feishu redelivers a message under a
new event id, group mentions by open_id, and the answer streamed into a card while a real
worker runs the workflow against the vLLM double."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from connectors.feishu.adapter import forget_tokens
from connectors.models import Connector, Delivery, InboundEvent
from tests.connectors.conftest import echo_chat_graph, llm_chat_graph
from tests.doubles.feishu_server import FeishuDouble, event_request, mention
from tests.doubles.vllm_server import VllmDouble
from workflows import services as workflow_services
from workflows.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

ENCRYPT_KEY = "kJ8xFz2QmWn5Rt7Yv0Ab3Cd6Ef9Gh1Ij"
VERIFICATION_TOKEN = "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV"
CHAT = "oc_a0553eda9014c201e6969b478895c230"
GROUP = "oc_5ce6d572455d361153b7xx51da133945"


@pytest.fixture
def feishu(settings: Any) -> Iterator[FeishuDouble]:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    forget_tokens()
    with FeishuDouble() as double:
        yield double
    forget_tokens()


@pytest.fixture
def bot_factory(
    make_connector: Callable[..., Connector], feishu: FeishuDouble
) -> Callable[..., Connector]:
    def make(workflow: Any, **fields: Any) -> Connector:
        return make_connector(
            workflow,
            "feishu",
            api_base_url=feishu.base_url,
            config={"app_id": feishu.app_id, "bot_open_id": feishu.bot_open_id},
            secrets={
                "app_secret": feishu.app_secret,
                "verification_token": VERIFICATION_TOKEN,
                "encrypt_key": ENCRYPT_KEY,
            },
            **fields,
        )

    return make


@pytest.fixture
def bot(publish: Callable[..., Any], bot_factory: Callable[..., Connector]) -> Connector:
    return bot_factory(publish(echo_chat_graph()))


def push(connector: Connector, payload: dict[str, Any], **options: Any) -> Any:
    request = event_request(payload, encrypt_key=ENCRYPT_KEY, **options)
    return Client().post(
        f"/connectors/{connector.pk}/events",
        request.body,
        content_type="application/json",
        headers=request.headers,
    )


def with_token(payload: dict[str, Any]) -> dict[str, Any]:
    payload["header"]["token"] = VERIFICATION_TOKEN
    return payload


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_the_encrypted_url_verification_is_answered_in_clear(bot: Connector) -> None:
    challenge = {"challenge": "ajls384kdj", "token": VERIFICATION_TOKEN, "type": "url_verification"}
    response = push(bot, challenge)
    assert response.status_code == 200
    assert response.json() == {"challenge": "ajls384kdj"}
    assert not InboundEvent.objects.exists()


def test_a_message_redelivered_under_a_new_event_id_is_answered_once(
    bot: Connector, feishu: FeishuDouble, worker: None
) -> None:
    first = with_token(feishu.user_message(CHAT, "年假怎么申请？", event_id="e-1"))
    assert push(bot, first).status_code == 200
    wait_for(lambda: Delivery.objects.filter(status="sent").exists())
    again = json.loads(json.dumps(first))
    again["header"]["event_id"] = "e-2"  # Feishu's redelivery of the same message
    assert push(bot, again).status_code == 200
    time.sleep(1.0)
    assert feishu.bot_texts(CHAT) == ["re: 年假怎么申请？"]
    assert InboundEvent.objects.count() == 1
    reply = feishu.requests_to("reply")[0]
    assert reply.path.endswith(f"/{first['event']['message']['message_id']}/reply")
    assert reply.json["uuid"]  # Feishu drops a retried reply with the same uuid


@pytest.mark.parametrize(
    ("tamper", "field"),
    [
        ("signature", "X-Lark-Signature"),
        ("reserialized", "X-Lark-Signature"),
        ("stale", "X-Lark-Request-Timestamp"),
        ("token", "token"),
    ],
)
def test_forged_or_replayed_pushes_are_refused_and_not_stored(
    bot: Connector, feishu: FeishuDouble, tamper: str, field: str
) -> None:
    payload = with_token(feishu.user_message(CHAT, "hi"))
    if tamper == "token":
        payload["header"]["token"] = "not-the-token"
    request = event_request(
        payload,
        encrypt_key=ENCRYPT_KEY,
        timestamp=int(time.time()) - 3600 if tamper == "stale" else None,
    )
    body, headers = request.body, dict(request.headers)
    if tamper == "signature":
        headers["X-Lark-Signature"] = "0" * 64
    if tamper == "reserialized":
        # The same JSON, re-serialized: the signature covers the exact bytes received.
        body = json.dumps(json.loads(body), indent=1).encode()
    response = Client().post(
        f"/connectors/{bot.pk}/events", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 401
    assert response.json()["field"] == field
    assert not InboundEvent.objects.exists()


def test_in_groups_only_a_mention_of_the_bot_s_open_id_counts(
    bot: Connector, feishu: FeishuDouble
) -> None:
    by_name = feishu.user_message(
        GROUP,
        "@_user_1 在吗",
        chat_type="group",
        mentions=[mention("@_user_1", "ou_someone_else_with_the_same_name", feishu.bot_name)],
    )
    by_id = feishu.user_message(
        GROUP,
        "@_user_1 在吗",
        chat_type="group",
        mentions=[mention("@_user_1", feishu.bot_open_id, feishu.bot_name)],
    )
    push(bot, with_token(by_name))
    push(bot, with_token(by_id))
    ignored, accepted = InboundEvent.objects.order_by("received_at")
    assert ignored.status == "ignored"
    assert accepted.status in {"received", "processing", "started"}
    assert accepted.text == "在吗"


def test_an_unhandled_event_type_is_acknowledged(bot: Connector) -> None:
    payload = {
        "schema": "2.0",
        "header": {
            "event_id": "f7984f25108f8137722bb63cee927e66",
            "event_type": "im.message.message_read_v1",
            "create_time": "1608725989000",
            "token": VERIFICATION_TOKEN,
            "app_id": "cli_a5f3d2c1b0e90001",
            "tenant_key": "2ca1d211f64f6438",
        },
        "event": {"reader": {"reader_id": {"open_id": "ou_x"}}, "message_id_list": ["om_x"]},
    }
    assert push(bot, payload).status_code == 200
    assert InboundEvent.objects.get().status == "ignored"
    assert not Run.objects.exists()


def test_the_answer_streams_into_a_card_that_ends_with_exactly_the_answer(
    publish: Callable[..., Any],
    bot_factory: Callable[..., Connector],
    admin_user: Any,
    feishu: FeishuDouble,
    worker: None,
) -> None:
    answer = "年假申请：登录 HR 系统，选择“请假”，填写日期并提交给直属上级审批。"
    with VllmDouble(token_delay_s=0.1) as model:
        model.reply = answer
        workflow_services.model_endpoint_create(
            actor=admin_user,
            data={"name": "qwen", "base_url": model.base_url, "model": model.model},
        )
        bot = bot_factory(publish(llm_chat_graph()))
        push(bot, with_token(feishu.user_message(CHAT, "年假怎么申请？")))
        wait_for(lambda: Delivery.objects.filter(status="sent").exists(), timeout=60)
    assert feishu.bot_texts(CHAT) == [answer]
    assert [m.msg_type for m in feishu.bot_messages(CHAT)] == ["interactive"]
    assert len(feishu.requests_to("patch")) >= 2
