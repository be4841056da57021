"""The designer's journey in the node editor, a save conflict, and the read-only viewer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import LazySettings
from playwright.sync_api import BrowserContext, Page, expect

from assistant_site.roles import DESIGNER, VIEWER
from knowledge import services as knowledge_services
from knowledge.models import KnowledgeBase
from tests.connectors.conftest import worker  # noqa: F401  (a real Celery worker fixture)
from tests.doubles.vllm_server import VllmDouble
from tests.frontend.conftest import screenshot, sign_in
from tests.frontend.editor_helpers import (
    add_from_palette,
    canvas_node,
    connect,
    drag_node_by,
    select_node,
)
from tests.workflows.graphs import echo_graph
from workflows import services as workflow_services
from workflows.models import Run, Workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def designer(make_user: Callable[..., Any]) -> Any:
    return make_user("designer", roles=(DESIGNER,))


@pytest.fixture
def knowledge_base(designer: Any, settings: LazySettings, chroma_url: str) -> KnowledgeBase:
    settings.CHROMA_URL = chroma_url
    return knowledge_services.knowledge_base_create(
        actor=designer, data={"name": "产品手册", "description": "FAQ"}
    )


@pytest.fixture
def model(designer: Any, make_user: Callable[..., Any]) -> Iterator[VllmDouble]:
    admin = make_user("root", is_superuser=True, is_staff=True)
    with VllmDouble(token_delay_s=0.05) as double:
        double.reply = "您好！退货请在订单页申请。"
        workflow_services.model_endpoint_create(
            actor=admin, data={"name": "qwen", "base_url": double.base_url, "model": double.model}
        )
        yield double


def test_a_designer_builds_validates_saves_publishes_runs_and_rolls_back(
    page: Page,
    live_url: str,
    designer: Any,
    knowledge_base: KnowledgeBase,
    model: VllmDouble,
    worker: None,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    sign_in(page, live_url, "designer")
    page.get_by_label("Name").fill("退货助手")
    page.get_by_role("button", name="New workflow").click()
    expect(page.get_by_role("heading", name="退货助手")).to_be_visible()
    workflow = Workflow.objects.get(name="退货助手")

    for title in ("Message", "Knowledge retrieval", "LLM", "Reply"):
        add_from_palette(page, title)
    page.get_by_role("button", name="Auto-layout").click()
    for node_id in ("message_trigger", "knowledge_retrieval", "llm", "reply"):
        expect(canvas_node(page, node_id)).to_be_visible()
    connect(page, "message_trigger", "knowledge_retrieval")
    connect(page, "knowledge_retrieval", "llm")
    connect(page, "llm", "reply")
    page.get_by_role("button", name="Auto-layout").click()
    expect(page.locator(".react-flow__edge")).to_have_count(3)
    screenshot(page, request, "1-built")

    # The validator's problems appear on the nodes they concern and on their fields.
    retrieval = canvas_node(page, "knowledge_retrieval")
    expect(retrieval.locator(".flow-node-problems")).to_be_visible()
    select_node(page, "knowledge_retrieval")
    panel = page.get_by_role("region", name="Settings")
    expect(panel.get_by_role("heading", name="Knowledge retrieval")).to_be_visible()
    expect(panel.locator(".error-detail").first).to_be_visible()
    screenshot(page, request, "2-problem")
    panel.get_by_role("button", name="Add").first.click()
    panel.locator("input[type=number]").first.fill(str(knowledge_base.pk))
    expect(retrieval.locator(".flow-node-problems")).to_have_count(0)

    select_node(page, "llm")
    panel.get_by_role("button", name="Add").first.click()
    panel.locator('input[id*="endpoints"]').first.fill("qwen")
    prompt = panel.get_by_label("User prompt", exact=True)
    prompt.fill("资料：")
    panel.get_by_label("Insert a variable: User prompt").select_option(
        "nodes.knowledge_retrieval.context"
    )
    expect(prompt).to_have_value("资料：{{ nodes.knowledge_retrieval.context }}")
    prompt.press("End")
    prompt.type(" 问题：{{ trigger.text }}")

    select_node(page, "reply")
    panel.get_by_label("Insert a variable: Text").select_option("nodes.llm.text")
    expect(page.locator(".problem-count")).to_have_text("No problems")

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".save-state")).to_have_text("Saved")
    workflow.refresh_from_db()
    assert [n["id"] for n in workflow.draft["nodes"]] == [
        "message_trigger",
        "knowledge_retrieval",
        "llm",
        "reply",
    ]
    assert workflow.draft["nodes"][1]["config"]["knowledge_base_ids"] == [knowledge_base.pk]
    assert (
        "{{ nodes.knowledge_retrieval.context }}" in workflow.draft["nodes"][2]["config"]["prompt"]
    )

    # Publish version 1 with a changelog.
    page.get_by_role("button", name="Publish").click()
    page.get_by_label("What changed").fill("第一版：检索 + 回答")
    page.get_by_role("dialog").get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Published version 1")

    # A test run: each node lights up with status, latency and tokens over the socket.
    page.get_by_role("button", name="Test run").click()
    page.get_by_role("textbox", name="Message").fill("怎么退货？")
    page.get_by_role("button", name="Run", exact=True).click()
    run_panel = page.get_by_role("region", name="Test run of the draft")
    expect(run_panel.locator(".run-status")).to_have_text("Status: succeeded", timeout=30_000)
    reply_trace = run_panel.locator('.run-nodes li[data-node-id="reply"]')
    reply_trace.locator("summary").click()
    expect(reply_trace).to_contain_text("您好！退货请在订单页申请。")
    for node_id in ("message_trigger", "knowledge_retrieval", "llm", "reply"):
        expect(canvas_node(page, node_id).locator(".flow-node")).to_have_attribute(
            "data-status", "succeeded"
        )
    expect(canvas_node(page, "llm").locator(".flow-node-trace")).to_contain_text("tokens")
    expect(canvas_node(page, "llm").locator(".flow-node-trace")).to_contain_text("ms")
    screenshot(page, request, "3-run")
    run = Run.objects.get(workflow=workflow)
    assert run.status == "succeeded"

    # Version 2 drops the knowledge step; rolling back restores version 1's graph.
    run_panel.get_by_role("button", name="Close").click()
    select_node(page, "knowledge_retrieval")
    page.keyboard.press("Delete")
    expect(canvas_node(page, "knowledge_retrieval")).to_have_count(0)
    connect(page, "message_trigger", "llm")
    select_node(page, "llm")
    page.get_by_role("region", name="Settings").get_by_label("User prompt", exact=True).fill(
        "{{ trigger.text }}"
    )
    page.get_by_role("button", name="Publish").click()
    page.get_by_label("What changed").fill("去掉检索")
    page.get_by_role("dialog").get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Published version 2")

    page.get_by_role("button", name="Versions").click()
    versions = page.get_by_role("region", name="Version history")
    expect(versions.get_by_text("去掉检索")).to_be_visible()
    versions.get_by_label("From").select_option("1")
    versions.get_by_label("To").select_option("2")
    versions.get_by_role("button", name="Compare").click()
    expect(versions.locator(".diff-removed").first).to_contain_text("knowledge_retrieval")
    screenshot(page, request, "4-diff")
    page.once("dialog", lambda dialog: dialog.accept())
    versions.locator("li").filter(has_text="第一版").get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("status")).to_contain_text("Version 1 is live again as version 3")
    expect(canvas_node(page, "knowledge_retrieval")).to_be_visible()
    workflow.refresh_from_db()
    assert workflow.versions.count() == 3
    assert any(n["id"] == "knowledge_retrieval" for n in workflow.draft["nodes"])


def _laid_out(graph: dict[str, Any]) -> dict[str, Any]:
    for index, node in enumerate(graph["nodes"]):
        node["position"] = {"x": index * 280, "y": 0}
        node["name"] = node["id"]
    return graph


@pytest.fixture
def shared_workflow(designer: Any) -> Workflow:
    workflow = workflow_services.workflow_create(actor=designer, name="共享流程")
    workflow_services.workflow_draft_save(
        workflow=workflow, graph=_laid_out(echo_graph()), base_revision=0
    )
    workflow.refresh_from_db()
    return workflow


def test_a_conflicting_save_is_shown_and_overwrites_nothing(
    new_context: Callable[..., BrowserContext],
    live_url: str,
    designer: Any,
    make_user: Callable[..., Any],
    shared_workflow: Workflow,
    request: pytest.FixtureRequest,
) -> None:
    from guardian.shortcuts import assign_perm

    colleague = make_user("colleague", roles=(DESIGNER,))
    for action in ("view_workflow", "change_workflow"):
        assign_perm(f"workflows.{action}", colleague, shared_workflow)
    url = f"/studio/workflows/{shared_workflow.pk}"
    mine = new_context().new_page()
    sign_in(mine, live_url, "designer", next_path=url)
    theirs = new_context().new_page()
    sign_in(theirs, live_url, "colleague", next_path=url)
    for page in (mine, theirs):
        expect(canvas_node(page, "greet")).to_be_visible()

    select_node(theirs, "greet")
    theirs.get_by_label("Name shown on the canvas").fill("同事的改动")
    theirs.locator(".react-flow__pane").click(position={"x": 20, "y": 20})
    theirs.keyboard.press("Control+s")
    expect(theirs.locator(".save-state")).to_have_text("Saved")

    select_node(mine, "greet")
    mine.get_by_label("Name shown on the canvas").fill("我的改动")
    mine.get_by_role("button", name="Save", exact=True).click()
    conflict = mine.get_by_role("alert").filter(has_text="Someone else saved")
    expect(conflict).to_be_visible()
    expect(mine.locator(".save-state")).to_have_text("Unsaved changes")
    screenshot(mine, request, "conflict")
    shared_workflow.refresh_from_db()
    assert shared_workflow.draft["nodes"][1]["name"] == "同事的改动"

    conflict.get_by_role("button", name="Load their version").click()
    expect(canvas_node(mine, "greet")).to_contain_text("同事的改动")
    expect(mine.locator(".save-state")).to_have_text("Saved")


def test_a_viewer_sees_the_canvas_read_only_and_replays_a_past_run(
    page: Page,
    live_url: str,
    make_user: Callable[..., Any],
    shared_workflow: Workflow,
    designer: Any,
    worker: None,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    run = workflow_services.run_start(
        workflow=shared_workflow,
        actor=designer,
        version=None,
        use_draft=True,
        trigger_input={"text": "世界", "payload": {}},
    )
    deadline = time.monotonic() + 30
    while Run.objects.get(pk=run.pk).status not in {"succeeded", "failed"}:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    make_user("viewer", roles=(VIEWER,))
    sign_in(page, live_url, "viewer", next_path=f"/studio/workflows/{shared_workflow.pk}")
    expect(page.get_by_text("Read-only: you may view this workflow")).to_be_visible()
    expect(page.get_by_role("navigation", name="Nodes")).to_have_count(0)
    expect(page.get_by_role("button", name="Save", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Publish")).to_have_count(0)

    def offset() -> tuple[float, float]:
        # Dragging a fixed node pans the canvas: compare the node with its neighbour.
        greet, start = (
            canvas_node(page, "greet").bounding_box(),
            canvas_node(page, "start").bounding_box(),
        )
        assert greet is not None
        assert start is not None
        return greet["x"] - start["x"], greet["y"] - start["y"]

    before = offset()
    drag_node_by(page, "greet", 120, 80)
    assert offset() == before
    select_node(page, "greet")
    expect(page.get_by_label("Name shown on the canvas")).to_have_attribute("readonly", "")
    expect(page.locator(".template-input")).to_be_disabled()
    page.keyboard.press("Delete")
    expect(canvas_node(page, "greet")).to_be_visible()

    page.get_by_role("button", name="Test run").click()
    panel = page.get_by_role("region", name="Test run of the draft")
    expect(panel.get_by_role("button", name="Run", exact=True)).to_have_count(0)
    panel.get_by_role("button", name="Show on canvas").click()
    for node_id in ("start", "greet", "done"):
        expect(canvas_node(page, node_id).locator(".flow-node")).to_have_attribute(
            "data-status", "succeeded"
        )
    expect(panel.locator(".run-output").first).to_have_text("你好，世界")
    screenshot(page, request, "replay")


def test_editing_shortcuts_undo_redo_copy_paste_delete_and_drop_from_the_palette(
    page: Page,
    live_url: str,
    shared_workflow: Workflow,
    request: pytest.FixtureRequest,
) -> None:
    sign_in(page, live_url, "designer", next_path=f"/studio/workflows/{shared_workflow.pk}")
    expect(canvas_node(page, "greet")).to_be_visible()
    nodes = page.locator(".react-flow__node")
    expect(nodes).to_have_count(3)
    expect(page.locator(".react-flow__minimap")).to_be_visible()

    # Drag a palette entry onto the canvas.
    page.get_by_role("button", name="Add LLM", exact=True).drag_to(
        page.locator(".react-flow__pane"), target_position={"x": 300, "y": 380}
    )
    expect(canvas_node(page, "llm")).to_be_visible()
    expect(nodes).to_have_count(4)

    # Copy two connected nodes and paste them: new ids, the edge between them copied too.
    select_node(page, "greet")
    canvas_node(page, "done").locator(".flow-node-header").click(modifiers=["Control"])
    edges = page.locator(".react-flow__edge")
    expect(edges).to_have_count(2)
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    expect(canvas_node(page, "greet_2")).to_be_visible()
    expect(canvas_node(page, "done_2")).to_be_visible()
    expect(edges).to_have_count(3)

    # Delete the pasted pair, undo, redo.
    page.keyboard.press("Delete")
    expect(canvas_node(page, "greet_2")).to_have_count(0)
    expect(edges).to_have_count(2)
    page.keyboard.press("Control+z")
    expect(canvas_node(page, "greet_2")).to_be_visible()
    expect(edges).to_have_count(3)
    page.keyboard.press("Control+Shift+z")
    expect(canvas_node(page, "greet_2")).to_have_count(0)
    page.get_by_role("button", name="Undo").click()
    page.get_by_role("button", name="Undo").click()
    page.get_by_role("button", name="Undo").click()
    expect(nodes).to_have_count(3)  # back to the saved graph
    expect(page.locator(".save-state")).to_have_text("Saved")

    # A drag is one undo step.
    before = canvas_node(page, "greet").bounding_box()
    drag_node_by(page, "greet", 100, 120)
    assert canvas_node(page, "greet").bounding_box() != before
    page.keyboard.press("Control+z")
    expect(page.locator(".save-state")).to_have_text("Saved")
    screenshot(page, request, "shortcuts")

    # A config with a choice of shapes (text or JSON body) renders under the site's CSP.
    add_from_palette(page, "HTTP request")
    select_node(page, "http_request")
    settings = page.get_by_role("region", name="Settings")
    expect(settings.get_by_role("heading", name="HTTP request")).to_be_visible()
    expect(settings.get_by_label("URL", exact=False).first).to_be_visible()


def test_the_editor_speaks_chinese_down_to_the_node_settings(
    new_context: Callable[..., BrowserContext],
    live_url: str,
    shared_workflow: Workflow,
    request: pytest.FixtureRequest,
) -> None:
    page = new_context(locale="zh-CN").new_page()
    sign_in(page, live_url, "designer", next_path=f"/studio/workflows/{shared_workflow.pk}")
    expect(page.get_by_role("button", name="保存", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="触发器")).to_be_visible()
    select_node(page, "greet")
    panel = page.get_by_role("region", name="设置")
    expect(panel.get_by_role("heading", name="模板")).to_be_visible()
    expect(panel.get_by_label("插入变量: 模板", exact=False).first).to_be_visible()
    screenshot(page, request, "zh")


def test_the_list_shows_only_the_workflows_one_may_view(
    page: Page, live_url: str, designer: Any, make_user: Callable[..., Any]
) -> None:
    other = make_user("other", roles=(DESIGNER,))
    workflow_services.workflow_create(actor=designer, name="我的流程")
    workflow_services.workflow_create(actor=other, name="别人的流程")
    sign_in(page, live_url, "designer")
    table = page.get_by_role("table")
    expect(table.get_by_role("link", name="我的流程")).to_be_visible()
    expect(table.get_by_role("link", name="别人的流程")).to_have_count(0)
