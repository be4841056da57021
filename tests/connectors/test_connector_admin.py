"""The connector pages of the admin: adding a connector with write-only credentials, the
callback URL it shows, bad input as form errors, the Telegram webhook action, inbound events
and dead letters with their retry action."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from connectors.models import Connector, Delivery
from connectors.registry import secrets_dict
from tests.connectors.conftest import echo_chat_graph
from tests.doubles.telegram_server import DEFAULT_TOKEN, DEFAULT_USERNAME, TelegramDouble

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(admin_user: Any) -> Client:
    admin_user.is_staff = True
    admin_user.save()
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def workflow(publish: Callable[..., Any]) -> Any:
    return publish(echo_chat_graph())


def form(workflow: Any, **changes: Any) -> dict[str, Any]:
    return {
        "name": "help-desk",
        "platform": "telegram",
        "workflow": str(workflow.pk),
        "enabled": "on",
        "api_base_url": "",
        "config": json.dumps({"bot_username": DEFAULT_USERNAME}),
        "secrets": json.dumps({"bot_token": DEFAULT_TOKEN, "webhook_secret": "hook-secret"}),
        "group_policy": "mentioned",
        "streaming": "on",
        "welcome_text": "你好",
        "error_text": "出错了",
        **changes,
    }


def test_adding_a_connector_stores_credentials_encrypted_and_shows_the_callback_url(
    browser: Client, workflow: Any, settings: Any
) -> None:
    settings.SITE_URL = "https://assistant.example.com"
    response = browser.post("/admin/connectors/connector/add/", form(workflow))
    assert response.status_code == 302, response.content.decode()[:2000]
    connector = Connector.objects.get()
    assert secrets_dict(connector) == {"bot_token": DEFAULT_TOKEN, "webhook_secret": "hook-secret"}
    page = browser.get(f"/admin/connectors/connector/{connector.pk}/change/").content.decode()
    assert f"https://assistant.example.com/connectors/{connector.pk}/events" in page
    assert "bot_token, webhook_secret" in page
    assert DEFAULT_TOKEN not in page
    assert "hook-secret" not in page


def test_saving_with_empty_credentials_keeps_them_and_a_partial_json_merges(
    browser: Client, workflow: Any
) -> None:
    browser.post("/admin/connectors/connector/add/", form(workflow))
    connector = Connector.objects.get()
    url = f"/admin/connectors/connector/{connector.pk}/change/"
    assert browser.post(url, form(workflow, secrets="", name="renamed")).status_code == 302
    assert secrets_dict(Connector.objects.get())["bot_token"] == DEFAULT_TOKEN
    rotated = form(workflow, secrets=json.dumps({"webhook_secret": "rotated"}))
    assert browser.post(url, rotated).status_code == 302
    assert secrets_dict(Connector.objects.get()) == {
        "bot_token": DEFAULT_TOKEN,
        "webhook_secret": "rotated",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"secrets": "{not json"}, "Not valid JSON"),
        ({"secrets": json.dumps({"bot_token": 5})}, "names to text values"),
        ({"secrets": json.dumps({"bot_token": "nope"})}, "bot token looks like"),
        ({"config": json.dumps({"bot_username": "a b"})}, "letters, digits and underscores"),
        ({"platform": "fax"}, "Select a valid choice"),
    ],
)
def test_bad_input_is_a_form_error_and_nothing_is_saved(
    browser: Client, workflow: Any, changes: dict[str, Any], message: str
) -> None:
    response = browser.post("/admin/connectors/connector/add/", form(workflow, **changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Connector.objects.exists()


def test_the_webhook_action_registers_with_telegram(
    browser: Client, workflow: Any, settings: Any
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.SITE_URL = "https://assistant.example.com"
    with TelegramDouble() as telegram:
        browser.post("/admin/connectors/connector/add/", form(workflow, api_base_url=telegram.url))
        connector = Connector.objects.get()
        response = browser.post(
            "/admin/connectors/connector/",
            {"action": "register_webhook", "_selected_action": [connector.pk]},
            follow=True,
        )
        assert "Telegram now posts to" in response.content.decode()
        assert telegram.webhook()["url"].endswith(f"/connectors/{connector.pk}/events")


def test_dead_letters_are_listed_and_retried_from_the_admin(
    browser: Client, workflow: Any, django_capture_on_commit_callbacks: Any
) -> None:
    browser.post("/admin/connectors/connector/add/", form(workflow))
    connector = Connector.objects.get()
    dead = Delivery.objects.create(
        connector=connector,
        idempotency_key="run:x:0",
        chat_id="42",
        text="答案",
        status="dead",
        attempts=8,
        last_error="Telegram sendMessage: Forbidden: bot was blocked by the user",
    )
    listing = browser.get("/admin/connectors/delivery/?status__exact=dead").content.decode()
    assert "bot was blocked by the user" in listing
    response = browser.post(
        "/admin/connectors/delivery/",
        {"action": "retry", "_selected_action": [dead.pk]},
        follow=True,
    )
    assert "1 dead letter(s) queued again" in response.content.decode()
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == ("pending", 0)
    assert browser.get("/admin/connectors/inboundevent/").status_code == 200


def test_a_run_s_page_links_to_the_event_that_started_it_and_its_replies(
    browser: Client, workflow: Any
) -> None:
    from connectors.models import InboundEvent
    from workflows.models import Run

    browser.post("/admin/connectors/connector/add/", form(workflow))
    connector = Connector.objects.get()
    run = Run.objects.create(workflow=workflow, graph={}, input={}, trigger_kind="message")
    event = InboundEvent.objects.create(
        connector=connector, dedupe_key="update:77", kind="message", chat_id="-100123", run=run
    )
    Delivery.objects.create(
        connector=connector,
        event=event,
        run=run,
        idempotency_key="run:1:0",
        chat_id="-100123",
        text="答",
    )
    page = browser.get(f"/admin/workflows/run/{run.pk}/change/").content.decode()
    assert f"/admin/connectors/inboundevent/{event.pk}/change/" in page
    assert "-100123" in page
