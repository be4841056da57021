from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_admin_login_page_speaks_simplified_chinese(client: Client) -> None:
    page = client.get("/admin/login/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert "Assistant Studio 管理后台" in page  # our own catalogue
    assert "用户名" in page  # Django's admin catalogue
    assert 'lang="zh-hans"' in page


@pytest.mark.django_db
def test_admin_login_page_speaks_english(client: Client) -> None:
    page = client.get("/admin/login/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert "Assistant Studio administration" in page
    assert "Username" in page


@pytest.mark.django_db
def test_admin_index_lists_our_apps_in_chinese(admin_client: Client) -> None:
    page = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    for label in ("审计日志", "工作流", "模型端点", "知识库"):
        assert label in page


@pytest.mark.django_db
def test_language_choice_persists_across_requests(client: Client) -> None:
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/login/"})
    page = client.get("/admin/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "用户名" in page


def test_every_string_of_ours_has_a_chinese_translation() -> None:
    import re

    from tests.conftest import REPO

    catalogue = (REPO / "locale/zh_Hans/LC_MESSAGES/django.po").read_text(encoding="utf-8")
    entries = catalogue.split("\n\n")[1:]  # the first block is the header
    untranslated = [
        entry
        for entry in entries
        if re.search(r'^msgstr ""(?!\n")', entry, re.MULTILINE) or "#, fuzzy" in entry
    ]
    assert untranslated == []
