from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tests.workflows.nodes.helpers import run_node
from workflows.nodes.schedule_trigger import ScheduleTriggerConfig


@pytest.mark.parametrize(
    "cron", ["*/15 * * * *", "0 9 * * mon-fri", "30 8 1,15 jan-jun *", "0 0 * * 0"]
)
def test_accepts_standard_five_field_cron_expressions(cron: str) -> None:
    config = ScheduleTriggerConfig.model_validate({"cron": cron})
    assert config.cron == cron
    assert config.timezone == "UTC"
    assert config.message == ""


def test_splits_the_expression_into_crontab_fields() -> None:
    config = ScheduleTriggerConfig.model_validate({"cron": " 0  9 *  * mon-fri "})
    assert config.cron == "0 9 * * mon-fri"
    assert config.crontab_fields() == {
        "minute": "0",
        "hour": "9",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "mon-fri",
    }


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("99 * * * *", r"the minute field '99' is invalid \(allowed: 0-59\)"),
        ("0 24 * * *", r"the hour field '24' is invalid"),
        ("0 0 0 * *", r"the day-of-month field '0' is invalid"),
        ("0 0 * 13 *", r"the month field '13' is invalid"),
        ("0 0 * * funday", r"the day-of-week field 'funday' is invalid"),
        ("*/0 * * * *", r"the minute field '\*/0' is invalid"),
        ("0,,5 * * * *", r"the minute field '0,,5' is invalid"),
        ("0 9 * *", r"5 fields .* this one has 4"),
        ("@daily", r"5 fields .* this one has 1"),
        ("0 0 31 2 *", r"never fires"),
    ],
)
def test_rejects_a_bad_cron_expression_naming_what_is_wrong(cron: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScheduleTriggerConfig.model_validate({"cron": cron})


def test_requires_a_cron_expression() -> None:
    with pytest.raises(ValidationError, match="cron"):
        ScheduleTriggerConfig.model_validate({})


def test_accepts_an_iana_time_zone() -> None:
    config = ScheduleTriggerConfig.model_validate(
        {"cron": "0 9 * * *", "timezone": "Asia/Shanghai"}
    )
    assert config.timezone == "Asia/Shanghai"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "CST+8", "../etc/passwd", ""])
def test_rejects_an_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        ScheduleTriggerConfig.model_validate({"cron": "0 9 * * *", "timezone": zone})


def test_rejects_a_message_over_4000_characters() -> None:
    with pytest.raises(ValidationError, match="message"):
        ScheduleTriggerConfig.model_validate({"cron": "0 9 * * *", "message": "x" * 4001})


def test_rejects_unknown_config_fields() -> None:
    with pytest.raises(ValidationError, match="every"):
        ScheduleTriggerConfig.model_validate({"cron": "0 9 * * *", "every": "day"})


def test_a_firing_gives_its_message_time_and_schedule() -> None:
    config = ScheduleTriggerConfig.model_validate(
        {"cron": "0 9 * * *", "timezone": "Asia/Shanghai", "message": "日报"}
    )
    fired = config.trigger_input(datetime(2026, 5, 1, 1, 0, tzinfo=UTC))
    assert fired == {
        "text": "日报",
        "fired_at": "2026-05-01T09:00:00+08:00",
        "payload": {"cron": "0 9 * * *", "timezone": "Asia/Shanghai"},
    }


def test_passes_the_firing_on() -> None:
    trigger = {
        "text": "日报",
        "fired_at": "2026-05-01T09:00:00+08:00",
        "payload": {"cron": "0 9 * * *", "timezone": "Asia/Shanghai"},
    }
    result = run_node("schedule_trigger", {"cron": "0 9 * * *"}, trigger=trigger)
    assert not result.failed
    assert result.outputs == trigger


def test_a_run_by_hand_behaves_as_a_firing_now() -> None:
    before = datetime.now(UTC)
    result = run_node("schedule_trigger", {"cron": "*/5 * * * *", "message": "ping"})
    assert result.outputs["text"] == "ping"
    assert result.outputs["payload"] == {"cron": "*/5 * * * *", "timezone": "UTC"}
    fired_at = datetime.fromisoformat(result.outputs["fired_at"])
    assert before <= fired_at <= datetime.now(UTC)
