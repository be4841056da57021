"""Starts the workflow on a cron schedule.

The node only describes the schedule and passes the firing on: publishing a version that
contains it makes ``services.workflow_schedules_sync`` write a django-celery-beat entry, and
beat then calls ``services.run_scheduled`` at each firing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from celery.schedules import ParseException, crontab
from pydantic import Field, field_validator

from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register

# The five cron fields in their standard order: (crontab keyword, label, allowed values,
# longest text django-celery-beat's CrontabSchedule column holds).
CRON_FIELDS: tuple[tuple[str, str, str, int], ...] = (
    ("minute", "minute", "0-59", 240),
    ("hour", "hour", "0-23", 96),
    ("day_of_month", "day-of-month", "1-31", 124),
    ("month_of_year", "month", "1-12 or jan-dec", 64),
    ("day_of_week", "day-of-week", "0-6 or sun-sat, Sunday is 0", 64),
)


@cache
def _timezone_names() -> frozenset[str]:
    # The names the tz database lists: ZoneInfo alone also opens any file under the zoneinfo
    # folder ("posixrules"), which other tools (the admin's timezone field) would refuse.
    return frozenset(available_timezones())


def cron_fields(cron: str) -> dict[str, str]:
    """A 5-field cron expression as celery's crontab keywords (no checking)."""
    return dict(zip((name for name, *_rest in CRON_FIELDS), cron.split(), strict=True))


class ScheduleTriggerConfig(NodeConfig):
    cron: str = Field(
        max_length=200,
        title="Schedule (cron)",
        description="Five fields: minute hour day-of-month month day-of-week, e.g. "
        "'0 9 * * mon-fri' for 09:00 on weekdays.",
        examples=["0 9 * * mon-fri", "*/15 * * * *"],
    )
    timezone: str = Field(
        default="UTC",
        max_length=63,
        title="Time zone",
        description="IANA time zone the schedule is read in, e.g. 'Asia/Shanghai'.",
    )
    message: str = Field(
        default="",
        max_length=4000,
        title="Message",
        description="Given to the run as its message (trigger.text).",
    )

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        parts = value.split()
        if len(parts) != len(CRON_FIELDS):
            raise ValueError(
                f"a cron expression has 5 fields (minute hour day-of-month month "
                f"day-of-week), this one has {len(parts)}"
            )
        for (name, label, allowed, longest), part in zip(CRON_FIELDS, parts, strict=True):
            if len(part) > longest:
                raise ValueError(f"the {label} field is longer than {longest} characters")
            try:
                crontab(**{name: part})
            except (ValueError, ParseException) as exc:
                raise ValueError(
                    f"the {label} field {part!r} is invalid (allowed: {allowed}): {exc}"
                ) from exc
        try:
            crontab(**cron_fields(value))  # fields valid alone may still never occur together
        except (ValueError, ParseException) as exc:
            raise ValueError(f"the schedule never fires: {exc}") from exc
        return " ".join(parts)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name") from exc
        if value not in _timezone_names():
            raise ValueError(f"unknown time zone {value!r}: use an IANA name")
        return value

    def crontab_fields(self) -> dict[str, str]:
        """The schedule as crontab keywords (minute, hour, ...), as beat stores them."""
        return cron_fields(self.cron)

    def trigger_input(self, fired_at: datetime) -> dict[str, Any]:
        """What a firing at ``fired_at`` (aware) gives the run: its message, the firing time
        in the schedule's time zone (ISO 8601) and the schedule."""
        return {
            "text": self.message,
            "fired_at": fired_at.astimezone(ZoneInfo(self.timezone)).isoformat(),
            "payload": {"cron": self.cron, "timezone": self.timezone},
        }


@register
class ScheduleTrigger(Node[ScheduleTriggerConfig]):
    type_id = "schedule_trigger"
    category = NodeCategory.TRIGGER
    title = "Schedule"
    description = (
        "Starts the published workflow on a cron schedule, in a time zone, with a fixed message."
    )
    Config = ScheduleTriggerConfig
    outputs = {"text": "string", "fired_at": "string", "payload": "object"}

    async def run(self, context: NodeContext) -> NodeResult:
        trigger: dict[str, Any] = context.variables.get("trigger", {})
        # A run started by hand (a test run of the draft) has no firing: it behaves as if the
        # schedule fired now, with any text or payload the person gave.
        fired = self.config.trigger_input(datetime.now(UTC))
        return NodeResult(
            outputs={
                "text": trigger.get("text") or fired["text"],
                "fired_at": trigger.get("fired_at") or fired["fired_at"],
                "payload": trigger.get("payload") or fired["payload"],
            }
        )
