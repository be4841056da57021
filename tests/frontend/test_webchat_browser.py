"""The end users' web chat in a real browser: the widget embedded in a site on another origin
with an answer streaming in, a network that drops mid-conversation (nothing lost, nothing
twice), and the full chat page in Chinese. A real Celery worker runs the workflows; the
model is the vLLM protocol double, streaming token by token."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from connectors.models import Connector, Delivery, InboundEvent
from tests.connectors import conftest as connector_fixtures
from tests.connectors.conftest import echo_chat_graph, llm_chat_graph
from tests.doubles.vllm_server import VllmDouble
from tests.frontend.conftest import screenshot
from tests.frontend.webchat_helpers import (
    BUBBLE_RECORDER,
    CuttableProxy,
    HostSite,
)
from workflows import services as workflow_services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Fixtures of tests/connectors/conftest.py, which pytest shows only to that folder.
admin_user = connector_fixtures.admin_user
publish = connector_fixtures.publish
make_connector = connector_fixtures.make_connector
worker = connector_fixtures.worker

TITLE = "Acme helper"
WIDGET = "assistant-studio-chat"
# Generous limits for waits on a worker and a model (not timing assertions).
WAIT_MS = 30_000
RECONNECT_WAIT_MS = 45_000  # the backoff may have grown to 16 s while the network was away


def _answer(body: dict[str, Any]) -> str:
    question = body["messages"][-1]["content"]
    return f"关于「{question}」：春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"


@pytest.fixture
def streaming_model(vllm_double: VllmDouble, admin_user: Any) -> VllmDouble:
    """The "qwen" endpoint: the double answering every question with its own poem, one
    character every 0.1 s."""
    vllm_double.reply = _answer
    vllm_double.token_delay_s = 0.1
    workflow_services.model_endpoint_create(
        actor=admin_user,
        data={"name": "qwen", "base_url": vllm_double.base_url, "model": vllm_double.model},
    )
    return vllm_double


@pytest.fixture
def embedded(
    *,
    new_context: Callable[..., BrowserContext],
    live_url: str,
    streaming_model: VllmDouble,
    publish: Callable[..., Any],
    make_connector: Callable[..., Connector],
    worker: None,
) -> Iterator[Callable[[str], tuple[Page, Connector]]]:
    """Open a host site that embeds the widget of a new connector, loaded from ``studio``
    (the live server, or a proxy in front of it)."""
    workflow = publish(llm_chat_graph())
    sites: list[HostSite] = []

    def open_site(studio: str) -> tuple[Page, Connector]:
        connector = make_connector(workflow, "webchat", config={"title": TITLE})
        site = HostSite(f"{studio}/chat/widget.js", connector.pk, TITLE).__enter__()
        sites.append(site)
        connector.config = {"title": TITLE, "allowed_origins": [site.url]}
        connector.save()
        page = new_context().new_page()
        page.goto(site.url)
        return page, connector

    yield open_site
    for site in sites:
        site.__exit__(None, None, None)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen in time")
        time.sleep(0.1)


def _replies(panel: Locator) -> Locator:
    return panel.locator('li[data-role="assistant"] .asc-bubble')


def _questions(panel: Locator) -> Locator:
    return panel.locator('li[data-role="user"]')


def _open_widget(page: Page) -> Locator:
    launcher = page.get_by_role("button", name=TITLE)
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.click()
    expect(launcher).to_have_attribute("aria-expanded", "true")
    panel = page.get_by_role("dialog", name=TITLE)
    expect(panel.get_by_role("status")).to_have_text("Connected", timeout=WAIT_MS)
    expect(panel.get_by_label("Your message")).to_be_focused()
    return panel


def _ask(panel: Locator, question: str) -> None:
    field = panel.get_by_label("Your message")
    field.fill(question)
    field.press("Enter")
    expect(field).to_have_value("")


def test_the_widget_on_another_site_streams_the_answer_in(
    embedded: Callable[[str], tuple[Page, Connector]],
    live_url: str,
    request: pytest.FixtureRequest,
) -> None:
    page, connector = embedded(live_url)
    launcher = page.get_by_role("button", name=TITLE)
    expect(launcher).to_be_visible()
    # The host site's stylesheet stops at the shadow root: neither its button rules nor its
    # inherited italic serif reach the widget.
    styles = launcher.evaluate(
        "el => { const s = getComputedStyle(el); "
        "return [s.backgroundColor, s.fontSize, s.fontStyle, s.fontFamily]; }"
    )
    assert styles[0] == "rgb(37, 99, 235)"
    assert styles[1] == "15px"
    assert styles[2] == "normal"
    assert "serif" not in styles[3].replace("sans-serif", "")
    box = launcher.bounding_box()
    viewport = page.viewport_size
    assert box is not None
    assert viewport is not None
    assert box["x"] + box["width"] > viewport["width"] - 40  # bottom right
    assert box["y"] + box["height"] > viewport["height"] - 40
    screenshot(page, request, "1-launcher")

    panel = _open_widget(page)
    expect(panel.get_by_text("Ask a question to start the conversation.")).to_be_visible()
    page.evaluate(BUBBLE_RECORDER, WIDGET)
    _ask(panel, "背一首诗")
    expect(_questions(panel)).to_have_count(1)
    expect(_questions(panel).first).to_contain_text("背一首诗")
    final = _answer({"messages": [{"content": "背一首诗"}]})
    reply = panel.locator('li[data-role="assistant"]')
    expect(reply).to_have_attribute("data-status", "streaming", timeout=WAIT_MS)
    screenshot(page, request, "2-streaming")
    expect(reply).to_have_attribute("data-status", "final", timeout=WAIT_MS)
    expect(_replies(panel)).to_have_text([final])
    screenshot(page, request, "3-answered")

    shown: list[dict[str, Any]] = page.evaluate("window.__bubbles")
    partial = [entry["text"] for entry in shown if entry["status"] == "streaming"]
    # The answer grew in front of the visitor before it was complete.
    assert any(text and text != final and final.startswith(text) for text in partial), shown
    assert len(set(partial)) >= 3, shown
    assert shown[-1] == {"index": 0, "text": final, "status": "final"}
    # The bubble's text does not inherit the host page's letter spacing or italic font.
    bubble_style = _replies(panel).first.evaluate(
        "el => [getComputedStyle(el).fontStyle, getComputedStyle(el).letterSpacing]"
    )
    assert bubble_style == ["normal", "normal"]

    # Escape closes the panel and gives the focus back to the launcher; the keyboard opens it.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.press("Enter")
    expect(panel.get_by_label("Your message")).to_be_focused()

    # Another page of the site (here: the same one again) keeps the conversation, once.
    page.reload()
    panel = page.get_by_role("dialog", name=TITLE)
    expect(panel.get_by_role("status")).to_have_text("Connected", timeout=WAIT_MS)
    expect(_questions(panel)).to_have_count(1)
    expect(_replies(panel)).to_have_text([final])
    assert InboundEvent.objects.filter(connector=connector).count() == 1


def test_a_dropped_connection_loses_and_duplicates_nothing(
    embedded: Callable[[str], tuple[Page, Connector]],
    live_url: str,
    request: pytest.FixtureRequest,
) -> None:
    port = urlsplit(live_url).port
    assert port is not None
    with CuttableProxy(port) as network:
        page, connector = embedded(network.url)
        panel = _open_widget(page)
        status = panel.get_by_role("status")
        answers = [_answer({"messages": [{"content": q}]}) for q in ("一", "二", "三")]

        # 1. The network goes away while the first answer is streaming in.
        _ask(panel, "一")
        streaming = panel.locator('li[data-role="assistant"][data-status="streaming"]')
        expect(streaming).to_have_count(1, timeout=WAIT_MS)
        network.cut()
        expect(status).to_contain_text("Reconnecting", timeout=WAIT_MS)
        expect(panel.get_by_role("button", name="Retry now")).to_be_visible()
        # The server finishes the answer while the visitor cannot hear it.
        _wait(
            lambda: Delivery.objects.filter(connector=connector, status="sent").count() == 1,
            "the first answer sent while the network was away",
        )
        expect(streaming).to_have_count(1)
        assert _replies(panel).first.inner_text() != answers[0]

        # 2. A question typed while offline waits, marked as sending.
        _ask(panel, "二")
        expect(_questions(panel).nth(1)).to_contain_text("Sending…")
        expect(
            panel.get_by_text("Messages you send now go out when the connection is back.")
        ).to_be_visible()
        screenshot(page, request, "1-offline")

        # 3. The network comes back: the widget reconnects by itself, resumes (the first
        # answer, completed) and sends the waiting question exactly once.
        network.restore()
        expect(status).to_have_text("Connected", timeout=RECONNECT_WAIT_MS)
        expect(_replies(panel)).to_have_text(answers[:2], timeout=WAIT_MS)
        expect(panel.get_by_text("Sending…")).to_have_count(0)
        screenshot(page, request, "2-reconnected")
        assert InboundEvent.objects.filter(connector=connector, text="二").count() == 1

        # 4. The server's answers stop reaching the browser: the third question arrives,
        # but its acknowledgement and answer are lost; then the connection drops.
        network.deafen()
        _ask(panel, "三")
        _wait(
            lambda: Delivery.objects.filter(connector=connector, status="sent").count() == 3,
            "the third answer sent into the void",
        )
        expect(_questions(panel).nth(2)).to_contain_text("Sending…")
        expect(_replies(panel)).to_have_count(2)
        network.cut()
        expect(status).to_contain_text("Reconnecting", timeout=WAIT_MS)
        network.restore()

        # 5. After reconnecting the widget resends the third question with its id (the
        # server knows it: no second run) and shows the missed answer once.
        expect(status).to_have_text("Connected", timeout=RECONNECT_WAIT_MS)
        expect(_replies(panel)).to_have_text(answers, timeout=WAIT_MS)
        expect(_questions(panel)).to_have_count(3)
        expect(panel.get_by_text("Sending…")).to_have_count(0)
        screenshot(page, request, "3-complete")

    events = InboundEvent.objects.filter(connector=connector)
    assert sorted(events.values_list("text", flat=True)) == sorted(["一", "二", "三"])
    assert Delivery.objects.filter(connector=connector).count() == 3
    # Nothing arrived twice while the page stayed open either.
    expect(panel.locator('li[data-role="assistant"]')).to_have_count(3)


def test_the_full_chat_page_speaks_chinese(
    *,
    new_context: Callable[..., BrowserContext],
    live_url: str,
    publish: Callable[..., Any],
    make_connector: Callable[..., Connector],
    worker: None,
    request: pytest.FixtureRequest,
) -> None:
    connector = make_connector(
        publish(echo_chat_graph()),
        "webchat",
        # No allowed_origins: the studio's own page (on any port) may always chat.
        config={"title": "小助手"},
    )
    page = new_context(locale="zh-CN").new_page()
    page.goto(f"{live_url}/chat/{connector.pk}/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    expect(page.get_by_role("heading", level=1, name="小助手")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("已连接", timeout=WAIT_MS)
    expect(page.get_by_text("提一个问题，开始对话。")).to_be_visible()
    field = page.get_by_label("你的消息")
    expect(field).to_be_focused()
    field.fill("你好")
    page.get_by_role("button", name="发送").click()
    expect(page.locator('li[data-role="assistant"] .asc-bubble')).to_have_text(
        ["re: 你好"], timeout=WAIT_MS
    )
    expect(page.locator('li[data-role="user"]')).to_have_count(1)
    expect(page.get_by_text("发送中…")).to_have_count(0)
    # Shift+Enter starts a new line instead of sending.
    field.press("Shift+Enter")
    expect(field).to_have_value("\n")
    expect(page.locator('li[data-role="user"]')).to_have_count(1)
    screenshot(page, request, "answered")
