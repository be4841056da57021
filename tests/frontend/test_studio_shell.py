"""The studio's shell: sign-in, navigation, language."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.frontend.conftest import sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_anonymous_visitor_is_sent_to_sign_in_and_lands_back_in_the_studio(
    page: Page, live_url: str, make_user: Callable[..., Any]
) -> None:
    make_user("designer", roles=("Designer",))
    page.goto(f"{live_url}/studio/knowledge")
    expect(page).to_have_url(f"{live_url}/login/?next=/studio/knowledge")
    page.get_by_label("Username").fill("designer")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    sign_in(page, live_url, "designer", next_path="/studio/knowledge")
    expect(page.get_by_role("link", name="Knowledge")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("link", name="Administration")).to_have_count(0)


def test_chinese_browser_gets_the_studio_in_chinese(
    new_context: Callable[..., BrowserContext], live_url: str, make_user: Callable[..., Any]
) -> None:
    make_user("designer", roles=("Designer",))
    page = new_context(locale="zh-CN").new_page()
    sign_in(page, live_url, "designer")
    expect(page.get_by_role("link", name="工作流")).to_be_visible()
    expect(page.get_by_role("link", name="知识库")).to_be_visible()
