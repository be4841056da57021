"""A Telegram bot end to end: the platform's webhook request through the real URL, the event
store, a real worker running the workflow, and the reply sent to a protocol double of the Bot
API, exactly once; duplicates, refusals, commands, groups, retries, dead letters, the
sweeper, streaming while a slow model answers."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.test import Client
from django.utils import timezone

from connectors import services, streaming
from connectors.models import Connector, Delivery, InboundEvent
from tests.connectors.conftest import echo_chat_graph, llm_chat_graph
from tests.doubles.telegram_server import DEFAULT_TOKEN, DEFAULT_USERNAME, TelegramDouble
from tests.doubles.vllm_server import VllmDouble
from workflows import services as workflow_services
from workflows.engine.executor import TraceEvent
from workflows.models import ConversationMessage, Run

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURES = Path(__file__).parent / "telegram" / "fixtures"
SECRET = "hook-secret_0123456789"
ALICE = 111111111


def update(name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    data = copy.deepcopy(data)
    for key, value in changes.items():
        if key == "update_id":
            data["update_id"] = value
        else:
            data["message"][key] = value
    return data


@pytest.fixture
def telegram(settings: Any) -> Iterator[TelegramDouble]:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with TelegramDouble() as double:
        yield double


@pytest.fixture
def bot_factory(
    make_connector: Callable[..., Connector], telegram: TelegramDouble
) -> Callable[..., Connector]:
    def make(workflow: Any, **fields: Any) -> Connector:
        return make_connector(
            workflow,
            "telegram",
            api_base_url=telegram.url,
            config={"bot_username": DEFAULT_USERNAME, "bot_id": int(DEFAULT_TOKEN.split(":")[0])},
            secrets={"bot_token": DEFAULT_TOKEN, "webhook_secret": SECRET},
            **fields,
        )

    return make


@pytest.fixture
def bot(publish: Callable[..., Any], bot_factory: Callable[..., Connector]) -> Connector:
    return bot_factory(publish(echo_chat_graph()))


def post(connector: Connector, data: dict[str, Any], secret: str | None = SECRET) -> Any:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return Client().post(
        f"/connectors/{connector.pk}/events",
        json.dumps(data),
        content_type="application/json",
        headers=headers,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_a_private_message_is_answered_once_even_when_telegram_redelivers_it(
    bot: Connector, telegram: TelegramDouble, worker: None
) -> None:
    message = update("private_text")
    assert post(bot, message).status_code == 200
    wait_for(lambda: Delivery.objects.filter(status="sent").exists())
    assert post(bot, message).status_code == 200  # Telegram did not see our 200 in time
    time.sleep(1.0)  # time for a second answer to appear, were there one
    assert telegram.messages(ALICE) == ["re: What is our refund policy for annual plans?"]
    event = InboundEvent.objects.get()
    assert event.dedupe_key == "update:725000001"
    assert event.run is not None
    assert event.run.status == "succeeded"
    sent = telegram.calls_to("sendMessage")[0].params
    assert sent["reply_parameters"]["message_id"] == 42
    assert "parse_mode" not in sent  # model output goes out as plain text


def test_a_quick_answer_takes_one_task_and_one_bot_api_call(
    bot: Connector, telegram: TelegramDouble, worker: None
) -> None:
    # The run executes in the event's task, on its thread (no second task), and a run
    # answered before "typing" would show sends no chat action.
    published: list[str] = []

    def record(sender: str | None = None, **_kwargs: Any) -> None:
        published.append(str(sender))

    before = len(telegram.calls)
    before_task_publish.connect(record, weak=False)
    try:
        assert post(bot, update("private_text")).status_code == 200
        wait_for(lambda: Delivery.objects.filter(status="sent").exists())
        time.sleep(1.0)  # time for a late task or chat action to show, were there one
    finally:
        before_task_publish.disconnect(record)
    assert published == ["connectors.event_process"]
    assert [call.method for call in telegram.calls[before:]] == ["sendMessage"]
    run = Run.objects.get()
    assert run.status == "succeeded"
    assert run.node_runs.count() == 3
    assert InboundEvent.objects.get().status == "replied"


@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("wrong", 401)])
def test_requests_without_the_webhook_secret_are_refused_and_not_stored(
    bot: Connector, secret: str | None, status: int
) -> None:
    response = post(bot, update("private_text"), secret=secret)
    assert response.status_code == status
    assert response.json()["field"] == "X-Telegram-Bot-Api-Secret-Token"
    assert not InboundEvent.objects.exists()


def test_unknown_or_disabled_connectors_answer_404(bot: Connector) -> None:
    assert (
        Client().post("/connectors/9999/events", b"{}", content_type="application/json").status_code
        == 404
    )
    bot.enabled = False
    bot.save()
    assert post(bot, update("private_text")).status_code == 404


def test_group_messages_not_addressed_to_the_bot_are_stored_as_ignored(
    bot: Connector, telegram: TelegramDouble
) -> None:
    assert post(bot, update("group_not_addressed")).status_code == 200
    event = InboundEvent.objects.get()
    assert event.status == "ignored"
    assert "does not address the bot" in event.reason
    assert not Run.objects.exists()


def test_start_answers_the_welcome_text_and_reset_forgets_the_conversation(
    bot: Connector, telegram: TelegramDouble, worker: None
) -> None:
    bot.welcome_text = "您好！我是客服助手。"
    bot.save()
    post(bot, update("private_start"))
    wait_for(lambda: telegram.messages(ALICE) == ["您好！我是客服助手。"])
    post(bot, update("private_text", update_id=725000101))
    wait_for(lambda: len(telegram.messages(ALICE)) == 2)
    assert ConversationMessage.objects.count() == 2
    reset = update("private_text", update_id=725000102, text="/reset", message_id=50)
    reset["message"]["entities"] = [{"offset": 0, "length": 6, "type": "bot_command"}]
    post(bot, reset)
    wait_for(lambda: len(telegram.messages(ALICE)) == 3)
    assert "forgotten" in telegram.messages(ALICE)[-1]
    assert ConversationMessage.objects.count() == 0


def test_a_429_is_retried_after_retry_after_and_replies_keep_their_order(
    bot: Connector, telegram: TelegramDouble, worker: None
) -> None:
    telegram.inject("429", method="sendMessage", retry_after=1)
    post(bot, update("private_text", update_id=1, text="one", message_id=1))
    wait_for(lambda: Delivery.objects.filter(attempts=1).exists())
    post(bot, update("private_text", update_id=2, text="two", message_id=2))
    wait_for(lambda: Delivery.objects.filter(status="sent").count() == 2)
    assert telegram.messages(ALICE) == ["re: one", "re: two"]
    first = Delivery.objects.order_by("created_at").first()
    assert first is not None
    assert first.attempts == 2
    assert "Too Many Requests" in first.last_error


def test_a_bad_token_is_shown_on_the_connector(
    bot: Connector, telegram: TelegramDouble, worker: None
) -> None:
    bot.secrets = json.dumps(
        {"bot_token": "5555555555:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "webhook_secret": SECRET}
    )
    bot.save()  # a token the Bot API does not know: 401 Unauthorized
    post(bot, update("private_text"))
    wait_for(lambda: Delivery.objects.filter(status="dead").exists())
    bot.refresh_from_db()
    assert "token was refused" in bot.last_error
    assert bot.last_error_at is not None


def test_a_blocked_bot_makes_a_dead_letter_that_can_be_retried(
    bot: Connector, telegram: TelegramDouble, worker: None, admin_user: Any
) -> None:
    telegram.inject(
        "403", method="sendMessage", description="Forbidden: bot was blocked by the user"
    )
    post(bot, update("private_text"))
    wait_for(lambda: Delivery.objects.filter(status="dead").exists())
    dead = Delivery.objects.get()
    assert "blocked" in dead.last_error
    bot.refresh_from_db()
    assert bot.last_error == ""  # one user's choice, not a fault of the connector's setup
    assert telegram.messages(ALICE) == []
    services.delivery_retry(delivery=dead, actor=admin_user)
    wait_for(
        lambda: telegram.messages(ALICE) == ["re: What is our refund policy for annual plans?"]
    )


def test_the_sweeper_processes_events_a_lost_task_left_behind(
    bot: Connector, telegram: TelegramDouble, monkeypatch: pytest.MonkeyPatch, worker: None
) -> None:
    monkeypatch.setattr(services, "_enqueue_event", lambda event_id: None)  # the broker lost it
    post(bot, update("private_text"))
    event = InboundEvent.objects.get()
    assert event.status == "received"
    monkeypatch.undo()
    counts = services.connectors_sweep(now=timezone.now() + timedelta(minutes=2))
    assert counts["events"] == 1
    wait_for(lambda: len(telegram.messages(ALICE)) == 1)


def test_tokens_arriving_while_typing_looks_up_the_chat_still_stream(
    bot: Connector, telegram: TelegramDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The streamer looks its chat up once, when "typing" is due or the first tokens come,
    # whichever is first. Here "typing" starts the lookup, which is slow, and the first
    # tokens arrive meanwhile: they wait for the same lookup and are shown.
    monkeypatch.setattr(services, "_enqueue_event", lambda event_id: None)
    monkeypatch.setattr(workflow_services, "_run_dispatch", lambda run_id, here: None)
    post(bot, update("private_text"))
    event = services.event_process(event_id=InboundEvent.objects.get().pk)
    assert event is not None
    assert event.run is not None
    looked_up = streaming.stream_chat_of

    def slow_lookup(run_id: str) -> Any:
        time.sleep(0.3)
        return looked_up(run_id)

    monkeypatch.setattr(streaming, "stream_chat_of", slow_lookup)
    monkeypatch.setattr(streaming, "TYPING_AFTER_S", 0.0)
    streamer = streaming.chat_streamer_for(event.run)
    assert streamer is not None

    async def run() -> None:
        streamer.on_event(TraceEvent(kind="run_started"))
        await asyncio.sleep(0.05)  # typing's lookup is under way
        delta = TraceEvent(kind="node_delta", node_id="think", outputs={"delta": "退款政策"})
        streamer.on_event(delta)
        await asyncio.sleep(1.0)
        await streamer.close()

    asyncio.run(run())
    assert telegram.messages(ALICE) == ["退款政策"]
    assert any(action == "typing" for _chat, action in telegram.actions())
    event.refresh_from_db()
    assert event.item["stream"]["text"] == "退款政策"


def test_the_answer_streams_into_one_message_while_a_slow_model_writes_it(
    publish: Callable[..., Any],
    bot_factory: Callable[..., Connector],
    admin_user: Any,
    telegram: TelegramDouble,
    worker: None,
) -> None:
    answer = "退款政策：年度套餐在购买后三十天内可以全额退款，之后按剩余月份比例退款。"
    with VllmDouble(ttft_s=10.0, token_delay_s=0.12) as model:
        model.reply = answer
        workflow_services.model_endpoint_create(
            actor=admin_user,
            data={
                "name": "qwen",
                "base_url": model.base_url,
                "model": model.model,
                "timeout_s": 60,
            },
        )
        bot = bot_factory(publish(llm_chat_graph()))
        message = update("private_text")
        assert post(bot, message).status_code == 200
        event = InboundEvent.objects.get()
        # Answered while the model had not even started writing.
        assert (
            Run.objects.filter(status__in=["queued", "running"]).exists()
            or event.status == "received"
        )
        time.sleep(3)
        assert post(bot, message).status_code == 200  # a redelivery during the wait
        wait_for(lambda: Delivery.objects.filter(status="sent").exists(), timeout=60)
    assert telegram.messages(ALICE) == [answer]
    assert len(telegram.calls_to("sendMessage")) == 1
    assert len(telegram.calls_to("editMessageText")) >= 2
    assert any(action == "typing" for _chat, action in telegram.actions())
    assert InboundEvent.objects.count() == 1
    assert Run.objects.count() == 1


def test_a_polling_bot_fetches_updates_stores_them_once_and_answers(
    bot: Connector, telegram: TelegramDouble, worker: None
) -> None:
    from django.core.management import call_command

    bot.config = {**bot.config, "mode": "polling"}
    bot.save()
    telegram.enqueue(update("private_text", update_id=900))
    telegram.enqueue(update("private_text", update_id=901, text="second", message_id=43))
    call_command("connectors_poll", "--once")
    bot.refresh_from_db()
    assert bot.poll_offset == 902  # confirmed: Telegram forgets them at the next poll
    assert sorted(InboundEvent.objects.values_list("dedupe_key", flat=True)) == [
        "update:900",
        "update:901",
    ]
    wait_for(lambda: len(telegram.messages(ALICE)) == 2)
    call_command("connectors_poll", "--once")  # nothing new
    assert InboundEvent.objects.count() == 2
    assert telegram.calls_to("getUpdates")[-1].params["offset"] == 902


def test_a_long_reply_that_fails_part_way_is_finished_without_repeating_a_part(
    bot: Connector, telegram: TelegramDouble, worker: None
) -> None:
    question = "退款。" * 1500 + "\n\n" + ("Refund? " * 400).strip()  # two messages
    telegram.inject("429", method="sendMessage", after=1, retry_after=1)
    post(bot, update("private_text", text=question))
    wait_for(lambda: Delivery.objects.filter(status="sent").exists())
    shown = telegram.messages(ALICE)
    assert len(shown) == 2
    assert "".join(shown) == "re: " + question
    delivery = Delivery.objects.get()
    assert delivery.attempts == 2
    assert len(delivery.message_ids) == 2


def test_a_group_upgraded_to_a_supergroup_is_answered_at_its_new_id_and_keeps_its_memory(
    bot: Connector, telegram: TelegramDouble, worker: None
) -> None:
    from workflows.models import Conversation

    old, new = -1001234567890, -1009876543210
    telegram.migrate_chat(old, new)
    post(bot, update("group_mention"))
    wait_for(lambda: Delivery.objects.filter(status="sent").exists())
    assert telegram.messages(new) == ["re: what is vLLM?"]
    assert telegram.messages(old) == []
    assert list(Conversation.objects.values_list("chat_id", flat=True)) == [str(new)]


def test_over_the_rate_limit_the_sender_gets_the_workflow_s_polite_reply(
    publish: Callable[..., Any],
    bot_factory: Callable[..., Connector],
    telegram: TelegramDouble,
    worker: None,
) -> None:
    graph = echo_chat_graph()
    graph["settings"] = {
        "rate_limit": {
            "enabled": True,
            "burst": 1,
            "per_minute": 1,
            "message": "慢一点，请稍后再试",
        }
    }
    bot = bot_factory(publish(graph))
    post(bot, update("private_text", update_id=1, text="one", message_id=1))
    post(bot, update("private_text", update_id=2, text="two", message_id=2))
    wait_for(lambda: Delivery.objects.filter(status="sent").count() == 2)
    assert sorted(telegram.messages(ALICE)) == sorted(["re: one", "慢一点，请稍后再试"])
    assert Run.objects.count() == 1
    assert InboundEvent.objects.filter(status="rate_limited").count() == 1
