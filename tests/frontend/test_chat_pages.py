"""The pages behind the web chat, through Django's test client: the full chat page and its
boot data, the widget's loader script, and what both answer without a built bundle or for
a connector that is not an enabled web chat."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from connectors.models import Connector
from tests.connectors import conftest as connector_fixtures
from tests.connectors.conftest import echo_chat_graph

pytestmark = pytest.mark.django_db

# Fixtures of tests/connectors/conftest.py, which pytest shows only to that folder.
admin_user = connector_fixtures.admin_user
publish = connector_fixtures.publish
make_connector = connector_fixtures.make_connector

MANIFEST = {
    "src/chat/page.tsx": {
        "file": "assets/chat-abc123.js",
        "isEntry": True,
        "imports": ["_shared-def456.js"],
        "css": ["assets/chat-abc123.css"],
    },
    "src/chat/widget.tsx": {
        "file": "assets/widget-789xyz.js",
        "isEntry": True,
        "imports": ["_shared-def456.js"],
    },
    "_shared-def456.js": {"file": "assets/shared-def456.js"},
}


@pytest.fixture
def bundle(tmp_path: Path, settings: Settings) -> Path:
    """A built bundle's manifest (the files themselves are not needed to render pages)."""
    (tmp_path / ".vite").mkdir()
    (tmp_path / ".vite" / "manifest.json").write_text(json.dumps(MANIFEST), encoding="utf-8")
    settings.FRONTEND_DIST = tmp_path
    return tmp_path


@pytest.fixture
def no_bundle(tmp_path: Path, settings: Settings) -> None:
    settings.FRONTEND_DIST = tmp_path / "never-built"


@pytest.fixture
def webchat(publish: Callable[..., Any], make_connector: Callable[..., Connector]) -> Connector:
    return make_connector(
        publish(echo_chat_graph()), "webchat", config={"title": "Shop helper 小助手"}
    )


def _boot(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="chat-boot" type="application/json">(.*?)</script>', html)
    assert match, html
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_the_chat_page_boots_the_chat_bundle_for_its_connector(
    client: Client, bundle: Path, webchat: Connector
) -> None:
    response = client.get(f"/chat/{webchat.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert _boot(html) == {
        "connector": webchat.pk,
        "title": "Shop helper 小助手",
        "session_url": f"/connectors/{webchat.pk}/webchat/session",
        "language": "en",
    }
    assert "<title>Shop helper 小助手</title>" in html
    assert '<script type="module" src="/static/assets/chat-abc123.js"></script>' in html
    assert '<link rel="stylesheet" href="/static/assets/chat-abc123.css">' in html


def test_the_chat_page_follows_the_browser_s_language(
    client: Client, bundle: Path, webchat: Connector
) -> None:
    response = client.get(f"/chat/{webchat.pk}/", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert _boot(response.content.decode())["language"] == "zh-hans"


def test_the_chat_page_falls_back_to_the_connector_name_without_a_title(
    client: Client, bundle: Path, webchat: Connector
) -> None:
    webchat.config = {"title": ""}
    webchat.save()
    response = client.get(f"/chat/{webchat.pk}/")
    assert _boot(response.content.decode())["title"] == webchat.name


def test_no_chat_page_for_unknown_disabled_or_other_connectors(
    client: Client,
    bundle: Path,
    webchat: Connector,
    publish: Callable[..., Any],
    make_connector: Callable[..., Connector],
) -> None:
    telegram = make_connector(
        publish(echo_chat_graph()),
        "telegram",
        config={"bot_username": "shop_bot"},
        secrets={"bot_token": "123456789:AAtest-token_0123456789", "webhook_secret": "s" * 32},
    )
    disabled = make_connector(publish(echo_chat_graph()), "webchat", enabled=False)
    for pk in (webchat.pk + 1000, disabled.pk, telegram.pk):
        response = client.get(f"/chat/{pk}/")
        assert response.status_code == 404, pk
        assert "This chat is not available" in response.content.decode()
        assert "chat-boot" not in response.content.decode()


def test_the_widget_loader_queues_the_tag_s_config_and_loads_the_current_bundle(
    client: Client, bundle: Path
) -> None:
    response = client.get("/chat/widget.js")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert "max-age=300" in response["Cache-Control"]
    assert "public" in response["Cache-Control"]
    script = response.content.decode()
    # The hashed bundle, absolute: the loader runs in other sites' pages.
    assert '"http://testserver/static/assets/widget-789xyz.js"' in script
    assert "m.type='module'" in script
    for attribute in ("data-connector", "data-title", "data-language"):
        assert f"s.getAttribute('{attribute}')" in script
    assert 'session:"/connectors/{id}/webchat/session"' in script
    assert "window.AssistantStudioChat=window.AssistantStudioChat||[]" in script
    assert "origin:new URL(s.src,location.href).origin" in script


def test_without_a_built_bundle_both_answer_503_saying_how_to_build_it(
    client: Client, no_bundle: None, webchat: Connector
) -> None:
    for path in ("/chat/widget.js", f"/chat/{webchat.pk}/"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response["Content-Type"] == "text/plain; charset=utf-8"
        text = response.content.decode()
        assert "not built" in text
        assert "npm ci && npm run build" in text
