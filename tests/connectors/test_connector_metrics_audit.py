"""What operators and auditors see of connectors: event and delivery metrics by platform and
outcome, refused signatures logged with the source address, and audited connector changes
with the credentials masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from prometheus_client import REGISTRY

from audit.models import AuditEntry
from connectors import services
from connectors.models import Connector
from tests.connectors.conftest import echo_chat_graph
from tests.doubles.telegram_server import DEFAULT_TOKEN, DEFAULT_USERNAME

pytestmark = pytest.mark.django_db

SECRET = "metrics-secret"


def _count(connector: Connector, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "assistant_connector_events_total",
        {"connector": str(connector.pk), "platform": "telegram", "outcome": outcome},
    )
    return value or 0.0


@pytest.fixture
def bot(publish: Callable[..., Any], make_connector: Callable[..., Connector]) -> Connector:
    return make_connector(
        publish(echo_chat_graph()),
        "telegram",
        config={"bot_username": DEFAULT_USERNAME},
        secrets={"bot_token": DEFAULT_TOKEN, "webhook_secret": SECRET},
    )


def _post(bot: Connector, update_id: int, secret: str) -> Any:
    update = {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": 1700000000,
            "from": {"id": 7, "is_bot": False, "first_name": "A"},
            "chat": {"id": 7, "type": "private"},
            "text": "hi",
        },
    }
    return Client().post(
        f"/connectors/{bot.pk}/events",
        json.dumps(update),
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        REMOTE_ADDR="203.0.113.9",
    )


def test_events_are_counted_by_outcome_and_refusals_logged_with_the_address(
    bot: Connector, caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    before = {o: _count(bot, o) for o in ("accepted", "duplicate", "rejected_signature")}
    with caplog.at_level(logging.WARNING, logger="connectors.services"):
        _post(bot, 1, SECRET)
        _post(bot, 1, SECRET)
        _post(bot, 2, "forged")
    assert _count(bot, "accepted") - before["accepted"] == 1
    assert _count(bot, "duplicate") - before["duplicate"] == 1
    assert _count(bot, "rejected_signature") - before["rejected_signature"] == 1
    refusal = next(r for r in caplog.records if "refused a request" in r.getMessage())
    assert "203.0.113.9" in refusal.getMessage()


def test_connector_changes_are_audited_with_credentials_masked(
    bot: Connector, admin_user: Any
) -> None:
    services.connector_update(connector=bot, data={"secrets": {"webhook_secret": "rotated"}})
    entries = AuditEntry.objects.filter(target_type__icontains="connector")
    assert entries.count() >= 2  # created, changed
    trail = json.dumps(list(entries.values("changes", "extra")))
    assert DEFAULT_TOKEN not in trail
    assert "rotated" not in trail
    assert SECRET not in trail
    assert "secrets" in trail  # the change is visible, its value is not
