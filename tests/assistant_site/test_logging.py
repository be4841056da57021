from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from assistant_site import request_context
from assistant_site.logging import RedactingJsonFormatter, RequestIdFilter
from assistant_site.redaction import redact


@pytest.mark.parametrize(
    ("text", "leaked", "marker"),
    [
        ("mail zhang.san@example.com.cn now", "zhang.san@example.com.cn", "[EMAIL]"),
        ("手机 13812345678 请回电", "13812345678", "[PHONE]"),
        ("call +86 138-1234-5678", "1234-5678", "[PHONE]"),
        ("intl +44 20 7946 0958 office", "7946 0958", "[PHONE]"),
        ("身份证 11010519491231002X 已登记", "11010519491231002X", "[ID-CARD]"),
        ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9-x_y=", "eyJhbGciOi", "Bearer [REDACTED]"),
    ],
)
def test_personal_data_and_tokens_are_redacted(text: str, leaked: str, marker: str) -> None:
    cleaned = redact(text)
    assert leaked not in cleaned
    assert marker in cleaned


def test_ordinary_numbers_survive_redaction() -> None:
    text = "run 1234 took 350 ms at 2026-11-22 10:00:00, order 20261122"
    assert redact(text) == text


def _format(message: str, *args: object) -> dict[str, object]:
    formatter = RedactingJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
    )
    record = logging.LogRecord("assistant", logging.INFO, __file__, 1, message, args, None)
    RequestIdFilter().filter(record)
    parsed: dict[str, object] = json.loads(formatter.format(record))
    return parsed


def test_json_lines_carry_the_request_id_and_are_redacted_after_formatting() -> None:
    token = request_context.set_context(request_context.RequestContext(request_id="req-42"))
    try:
        line = _format("user %s wrote from %s", "li.si@example.org", "13900001111")
    finally:
        request_context.reset_context(token)
    assert line["request_id"] == "req-42"
    assert line["message"] == "user [EMAIL] wrote from [PHONE]"
    assert line["levelname"] == "INFO" or line.get("level") == "INFO"


def test_chinese_text_is_written_as_text_not_escapes() -> None:
    line = RedactingJsonFormatter("%(message)s").format(
        logging.LogRecord("a", logging.INFO, __file__, 1, "知识库已更新", None, None)
    )
    assert "知识库已更新" in line


def test_each_response_carries_a_request_id(client: Client) -> None:
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert first
    assert second
    assert first != second
    assert client.get("/healthz", HTTP_X_REQUEST_ID="trace-abc.1")["X-Request-ID"] == "trace-abc.1"
    # A malformed incoming id is replaced, never echoed.
    assert client.get("/healthz", HTTP_X_REQUEST_ID="bad id\n<x>")["X-Request-ID"] != "bad id\n<x>"
