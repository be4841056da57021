"""Driving the node editor in a browser as a person does: palette, handles, side panel."""

from __future__ import annotations

from playwright.sync_api import Locator, Page


def canvas_node(page: Page, node_id: str) -> Locator:
    return page.locator(f'.react-flow__node[data-id="{node_id}"]')


def add_from_palette(page: Page, title: str) -> None:
    """Click a palette entry (the keyboard's Enter does the same)."""
    page.get_by_role("button", name=f"Add {title}", exact=True).click()


def connect(page: Page, source: str, target: str, handle: str = "out") -> None:
    """Drag from a node's output handle to another node's input handle with the mouse."""
    start = canvas_node(page, source).locator(
        f'.react-flow__handle.source[data-handleid="{handle}"]'
    )
    end = canvas_node(page, target).locator('.react-flow__handle.target[data-handleid="in"]')
    start_box, end_box = start.bounding_box(), end.bounding_box()
    assert start_box is not None
    assert end_box is not None
    page.mouse.move(
        start_box["x"] + start_box["width"] / 2, start_box["y"] + start_box["height"] / 2
    )
    page.mouse.down()
    page.mouse.move(
        end_box["x"] + end_box["width"] / 2, end_box["y"] + end_box["height"] / 2, steps=8
    )
    page.mouse.up()


def select_node(page: Page, node_id: str) -> None:
    canvas_node(page, node_id).locator(".flow-node-header").click()


def drag_node_by(page: Page, node_id: str, dx: float, dy: float) -> None:
    box = canvas_node(page, node_id).locator(".flow-node-header").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=10)
    page.mouse.up()
