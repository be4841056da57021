"""The connector API: who may create, see, change and use connectors, their events and
deliveries; validation naming the field; credentials that never come back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from assistant_site.roles import DESIGNER, OPERATOR
from connectors import services
from connectors.base import InboundItem, ReplyTarget
from connectors.models import Connector, Delivery
from connectors.registry import secrets_dict
from tests.connectors.conftest import echo_chat_graph
from tests.doubles.telegram_server import DEFAULT_TOKEN, DEFAULT_USERNAME, TelegramDouble
from workflows.models import Run
from workflows.nodes.message_trigger import ChatMessage

TOKEN = DEFAULT_TOKEN


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def telegram_body(workflow: Any, **changes: Any) -> dict[str, Any]:
    return {
        "name": "help-desk",
        "platform": "telegram",
        "workflow": str(workflow.pk),
        "config": {"bot_username": DEFAULT_USERNAME},
        "secrets": {"bot_token": TOKEN, "webhook_secret": "s3cret-value"},
        **changes,
    }


@pytest.fixture
def workflow(publish: Callable[..., Any]) -> Any:
    return publish(echo_chat_graph())


@pytest.fixture
def admin_api(admin_user: Any) -> Client:
    return client_for(admin_user)


def create(api: Client, body: dict[str, Any]) -> Any:
    return api.post("/api/connectors/create/", body, content_type="application/json")


@pytest.mark.django_db
def test_an_administrator_creates_a_connector_and_sees_its_callback_url_not_its_secrets(
    admin_api: Client, workflow: Any, settings: Any
) -> None:
    settings.SITE_URL = "https://assistant.example.com"
    response = create(admin_api, telegram_body(workflow))
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["callback_url"] == f"https://assistant.example.com/connectors/{data['id']}/events"
    assert "setWebhook" in data["callback_hint"]
    assert data["secrets_set"] == ["bot_token", "webhook_secret"]
    assert TOKEN not in json.dumps(data)
    assert "s3cret-value" not in json.dumps(data)
    listed = admin_api.get("/api/connectors/").json()
    assert TOKEN not in json.dumps(listed)
    connector = Connector.objects.get()
    assert secrets_dict(connector)["bot_token"] == TOKEN  # stored encrypted, readable here
    raw = Connector.objects.values_list("secrets", flat=True).get()
    assert TOKEN not in str(raw)


@pytest.mark.django_db
def test_updating_one_secret_keeps_the_others(admin_api: Client, workflow: Any) -> None:
    pk = create(admin_api, telegram_body(workflow)).json()["id"]
    response = admin_api.patch(
        f"/api/connectors/{pk}/update/",
        {"secrets": {"webhook_secret": "rotated-secret"}},
        content_type="application/json",
    )
    assert response.status_code == 200
    stored = secrets_dict(Connector.objects.get(pk=pk))
    assert stored == {"bot_token": TOKEN, "webhook_secret": "rotated-secret"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"platform": "whatsapp"}, "platform", "not a valid choice"),
        ({"config": {"bot_username": "no spaces allowed"}}, "config", "bot_username"),
        ({"config": {"bot_username": "ok_bot", "colour": "red"}}, "config", "colour"),
        ({"secrets": {"bot_token": "not-a-token"}}, "secrets", "bot_token"),
        ({"api_base_url": "ftp://example.com"}, "api_base_url", ""),
        ({"group_policy": "sometimes"}, "group_policy", ""),
    ],
)
def test_bad_settings_are_refused_naming_the_field_and_nothing_is_stored(
    admin_api: Client, workflow: Any, changes: dict[str, Any], field: str, words: str
) -> None:
    response = create(admin_api, telegram_body(workflow, **changes))
    assert response.status_code == 400
    errors = response.json()
    assert field in errors, errors
    assert words in json.dumps(errors)
    assert "not-a-token" not in json.dumps(errors)  # a refused secret is not echoed
    assert not Connector.objects.exists()


@pytest.mark.django_db
def test_a_bad_update_leaves_the_stored_connector_as_it_was(
    admin_api: Client, workflow: Any
) -> None:
    pk = create(admin_api, telegram_body(workflow)).json()["id"]
    response = admin_api.patch(
        f"/api/connectors/{pk}/update/",
        {"name": "renamed", "secrets": {"bot_token": "broken"}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "secrets" in response.json()
    connector = Connector.objects.get(pk=pk)
    assert connector.name == "help-desk"
    assert secrets_dict(connector)["bot_token"] == TOKEN


@pytest.mark.django_db
def test_binding_a_workflow_needs_the_run_permission_on_it(
    make_user: Callable[..., Any], workflow: Any
) -> None:
    # An administrator of connectors who may not run this particular workflow.
    user = make_user("connector-only")
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="add_connector"))
    response = create(client_for(user), telegram_body(workflow))
    assert response.status_code == 400
    assert "workflow" in response.json()


@pytest.mark.django_db
def test_who_may_do_what_with_connectors_events_and_deliveries(
    admin_api: Client, make_user: Callable[..., Any], workflow: Any
) -> None:
    pk = create(admin_api, telegram_body(workflow)).json()["id"]
    connector = Connector.objects.get(pk=pk)
    event = services._event_store(
        connector,
        InboundItem(
            dedupe_key="update:1",
            kind="message",
            message=ChatMessage(text="hi", chat_id="1", user_id="1", channel=f"connector:{pk}"),
            target=ReplyTarget(chat_id="1", message_id="5"),
        ),
        {"update_id": 1},
        "",
    )
    assert event is not None
    dead = Delivery.objects.create(
        connector=connector, event=event, idempotency_key="k", chat_id="1", text="x", status="dead"
    )
    designer = client_for(make_user("designer", roles=(DESIGNER,)))
    operator = client_for(make_user("operator", roles=(OPERATOR,)))
    anonymous = Client()

    assert anonymous.get("/api/connectors/").status_code in {401, 403}
    assert create(designer, telegram_body(workflow, name="x")).status_code == 403
    assert designer.get("/api/connectors/").json()["results"] == []
    assert designer.get(f"/api/connectors/{pk}/").status_code == 404
    assert designer.get("/api/connector-events/").json()["results"] == []
    assert designer.get(f"/api/connector-events/{event.pk}/").status_code == 404
    assert designer.post(f"/api/deliveries/{dead.pk}/retry/").status_code == 404

    assert operator.get(f"/api/connectors/{pk}/").status_code == 200
    assert [e["id"] for e in operator.get("/api/connector-events/").json()["results"]] == [event.pk]
    detail = operator.get(f"/api/connector-events/{event.pk}/").json()
    assert detail["payload"] == {"update_id": 1}
    assert (
        operator.patch(
            f"/api/connectors/{pk}/update/", {"enabled": False}, content_type="application/json"
        ).status_code
        == 200
    )
    assert operator.delete(f"/api/connectors/{pk}/delete/").status_code == 403
    assert operator.post(f"/api/deliveries/{dead.pk}/retry/").status_code == 202
    assert Delivery.objects.get(pk=dead.pk).status == "pending"
    again = operator.post(f"/api/deliveries/{dead.pk}/retry/")
    assert again.status_code == 400
    assert "status" in again.json()


@pytest.mark.django_db
def test_replaying_a_message_runs_the_current_draft_without_sending_anything(
    admin_api: Client, workflow: Any, django_capture_on_commit_callbacks: Any
) -> None:
    pk = create(admin_api, telegram_body(workflow)).json()["id"]
    connector = Connector.objects.get(pk=pk)
    event = services._event_store(
        connector,
        InboundItem(
            dedupe_key="update:9",
            kind="message",
            message=ChatMessage(text="退款", chat_id="1", user_id="1", channel=f"connector:{pk}"),
            target=ReplyTarget(chat_id="1"),
        ),
        {},
        "",
    )
    assert event is not None
    response = admin_api.post(f"/api/connector-events/{event.pk}/replay/")
    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["run"])
    assert (run.trigger_kind, run.version_id, run.input["text"]) == ("replay", None, "退款")
    from workflows import services as workflow_services

    workflow_services.run_execute(run_id=str(run.pk))
    assert not Delivery.objects.filter(run=run).exists()
    # Filtered by run, the events list answers which event a run came from.
    assert admin_api.get(f"/api/connector-events/?connector={pk}").json()["count"] == 1


@pytest.mark.django_db
def test_registering_the_webhook_calls_set_webhook_with_the_url_and_secret(
    admin_api: Client, workflow: Any, settings: Any
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.SITE_URL = "https://assistant.example.com"
    with TelegramDouble() as telegram:
        pk = create(admin_api, telegram_body(workflow, api_base_url=telegram.url)).json()["id"]
        response = admin_api.post(
            f"/api/connectors/{pk}/webhook/", {}, content_type="application/json"
        )
        assert response.status_code == 200, response.json()
        assert telegram.webhook()["url"] == f"https://assistant.example.com/connectors/{pk}/events"
        assert telegram.webhook()["secret_token"] == "s3cret-value"
        assert response.json()["webhook_url"].endswith(f"/connectors/{pk}/events")
        removed = admin_api.post(
            f"/api/connectors/{pk}/webhook/", {"remove": True}, content_type="application/json"
        )
        assert removed.status_code == 200
        assert telegram.webhook()["url"] == ""
    from audit.models import AuditEntry

    actions = list(AuditEntry.objects.values_list("action", flat=True))
    assert "connector.webhook_set" in actions
    assert "connector.webhook_delete" in actions


@pytest.mark.django_db
def test_a_refused_webhook_registration_says_why(
    admin_api: Client, workflow: Any, settings: Any
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with TelegramDouble() as telegram:
        telegram.inject(
            "400",
            method="setWebhook",
            description="Bad Request: bad webhook: HTTPS url must be provided for webhook",
        )
        pk = create(admin_api, telegram_body(workflow, api_base_url=telegram.url)).json()["id"]
        response = admin_api.post(
            f"/api/connectors/{pk}/webhook/", {}, content_type="application/json"
        )
    assert response.status_code == 502
    assert "HTTPS url must be provided" in response.json()["detail"]
    assert Connector.objects.get(pk=pk).webhook_url == ""


@pytest.mark.django_db
def test_the_telegram_webhook_command_sets_shows_and_removes_the_webhook(
    admin_api: Client, workflow: Any, settings: Any
) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.SITE_URL = "https://assistant.example.com"
    with TelegramDouble() as telegram:
        pk = create(admin_api, telegram_body(workflow, api_base_url=telegram.url)).json()["id"]
        out = StringIO()
        call_command("telegram_webhook", "help-desk", stdout=out)
        assert f"/connectors/{pk}/events" in out.getvalue()
        assert telegram.webhook()["secret_token"] == "s3cret-value"
        info = StringIO()
        call_command("telegram_webhook", str(pk), "--info", stdout=info)
        assert f"url: https://assistant.example.com/connectors/{pk}/events" in info.getvalue()
        call_command("telegram_webhook", str(pk), "--remove", stdout=StringIO())
        assert telegram.webhook()["url"] == ""
    with pytest.raises(CommandError, match="no connector"):
        call_command("telegram_webhook", "nobody")


@pytest.mark.django_db
def test_identify_reads_the_bot_s_username_and_id_from_telegram(
    admin_api: Client, workflow: Any, settings: Any
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    with TelegramDouble() as telegram:
        body = telegram_body(
            workflow, api_base_url=telegram.url, config={"bot_username": "placeholder_bot"}
        )
        pk = create(admin_api, body).json()["id"]
        response = admin_api.post(f"/api/connectors/{pk}/identify/")
    assert response.status_code == 200, response.json()
    assert response.json()["config"]["bot_username"] == DEFAULT_USERNAME
    assert response.json()["config"]["bot_id"] == int(TOKEN.split(":")[0])


@pytest.mark.django_db
def test_identify_reads_the_feishu_bot_s_open_id(
    admin_api: Client, workflow: Any, settings: Any
) -> None:
    from connectors.feishu.adapter import forget_tokens
    from tests.doubles.feishu_server import FeishuDouble

    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    forget_tokens()
    with FeishuDouble() as feishu:
        body = {
            "name": "feishu-bot",
            "platform": "feishu",
            "workflow": str(workflow.pk),
            "api_base_url": feishu.base_url,
            "config": {"app_id": feishu.app_id, "bot_open_id": ""},
            "secrets": {"app_secret": feishu.app_secret, "verification_token": "t"},
        }
        pk = create(admin_api, body).json()["id"]
        response = admin_api.post(f"/api/connectors/{pk}/identify/")
        wrong = create(
            admin_api,
            {**body, "name": "wrong", "config": {"app_id": "cli_unknownapp", "bot_open_id": ""}},
        )
        refused = admin_api.post(f"/api/connectors/{wrong.json()['id']}/identify/")
    forget_tokens()
    assert response.status_code == 200, response.json()
    assert response.json()["config"]["bot_open_id"] == feishu.bot_open_id
    assert refused.status_code == 502
    assert refused.json()["field"] == "secrets"


@pytest.mark.django_db
def test_a_workflow_a_connector_uses_cannot_be_deleted_and_the_answer_says_why(
    admin_api: Client, workflow: Any
) -> None:
    create(admin_api, telegram_body(workflow))
    response = admin_api.delete(f"/api/workflows/{workflow.pk}/delete/")
    assert response.status_code == 409
    assert "help-desk" in response.json()["detail"]
    assert response.json()["field"] == "workflow"
    assert Connector.objects.filter(workflow=workflow).exists()
