"""Browser tests: the real ASGI application (HTTP and WebSockets) served by uvicorn on a
loopback port, driven by Playwright in Debian's chromium. Every test gets a screenshot under
``test-output/browser/`` so a person can look at what the browser showed."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from frontend.assets import manifest_path
from tests.conftest import REPO, close_sessions_since, database_now, free_port, require_service

SCREENSHOTS = REPO / "test-output" / "browser"
PASSWORD = "correct horse battery"  # tests/conftest.py make_user's password


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


@pytest.fixture(scope="session")
def live_url(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """The site on a free loopback port: the project's ASGI router (HTTP, sockets) with the
    built bundle served from frontend/dist by the static files handler."""
    import uvicorn

    from assistant_site.asgi import application

    require_service(
        manifest_path().exists(), "the built frontend bundle (npm run build in frontend/)"
    )
    static = ASGIStaticFilesHandler(get_asgi_application())

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/static/"):
            await static(scope, receive, with_cors(send))
        else:
            await application(scope, receive, send)

    def with_cors(send: Any) -> Any:
        # As WhiteNoise does in production: the widget's bundle loads on other sites.
        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"access-control-allow-origin", b"*")]
                message = {**message, "headers": headers}
            await send(message)

        return send_with_cors

    port = free_port()
    with django_db_blocker.unblock():
        since = database_now()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="live-asgi", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    with django_db_blocker.unblock():
        close_sessions_since(since)


@pytest.fixture(scope="module")
def playwright_instance(live_url: str) -> Iterator[Playwright]:
    """Per module, not per session: Playwright's sync API keeps an event loop running in
    this thread while it lives, which Django takes for an async context; the tests' own
    ORM calls (factories, checks) are sync, so they are allowed while it runs, and only
    here (the test database exists before it starts)."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            yield playwright
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    executable = chromium_path()
    require_service(executable is not None, "chromium (apt-get install chromium)")
    browser = playwright_instance.chromium.launch(
        executable_path=executable,
        headless=True,
        # No background networking: this machine's closed network refuses Google's hosts.
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    yield browser
    browser.close()


def _screenshot_name(nodeid: str, suffix: str = "") -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1]).strip("_")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}{suffix}.png"


@pytest.fixture
def new_context(
    browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BrowserContext]]:
    """Contexts (separate cookie jars: two users side by side) closed after the test; the
    last page of each gets a screenshot."""
    contexts: list[BrowserContext] = []
    # Uncaught exceptions and Content-Security-Policy refusals fail the test: a page can
    # look right in a screenshot while a script it needs was blocked.
    page_errors: list[str] = []

    def watch(page: Page) -> None:
        page.on("pageerror", lambda error: page_errors.append(f"{page.url}: {error}"))
        page.on(
            "console",
            lambda message: (
                page_errors.append(f"{page.url}: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )

    def make(locale: str = "en-US", **options: Any) -> BrowserContext:
        context = browser.new_context(
            locale=locale, viewport={"width": 1440, "height": 900}, **options
        )
        context.set_default_timeout(15_000)
        context.on("page", watch)
        contexts.append(context)
        return context

    yield make
    for number, context in enumerate(contexts):
        for page in context.pages[-1:]:
            suffix = "" if number == 0 else f"-{number + 1}"
            # A page that crashed or closed has nothing to show: the test's failure says why.
            with contextlib.suppress(Exception):
                page.screenshot(path=str(_screenshot_name(request.node.nodeid, suffix)))
        context.close()
    assert page_errors == [], "the pages reported errors"


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    return new_context().new_page()


def screenshot(page: Page, request: pytest.FixtureRequest, step: str) -> None:
    """A named screenshot of one step of a journey."""
    page.screenshot(path=str(_screenshot_name(request.node.nodeid, f"-{step}")))


def sign_in(page: Page, live_url: str, username: str, next_path: str = "/studio/") -> None:
    """Sign in through the studio's sign-in form, as a person does."""
    page.goto(f"{live_url}/login/?next={next_path}")
    page.get_by_label(re.compile("Username|用户名")).fill(username)
    page.get_by_label(re.compile("Password|密码")).fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Sign in|登录")).click()
    page.wait_for_url(f"{live_url}{next_path}*")
