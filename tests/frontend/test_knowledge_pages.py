"""The studio's knowledge pages in a real browser: a curator's journey from a new knowledge base
to a hit test (a real Celery worker on the `ingest` queue, Redis, PostgreSQL and Chroma; the
statuses arrive over the knowledge WebSocket), a viewer's read-only page in Chinese and a
stranger's not-found message."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import BrowserContext, FilePayload, Page, expect
from pytest_django.fixtures import Settings

from assistant_site.celery import app
from assistant_site.roles import CURATOR, VIEWER
from knowledge import services
from knowledge.models import Document, KnowledgeBase
from knowledge.tasks import document_ingest_task
from tests.conftest import close_sessions_since, database_now
from tests.frontend.conftest import screenshot, sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Chinese and English in one Markdown file: the hit test asks in Chinese.
HANDBOOK = """# Remote work 远程办公

## VPN

在家办公时请先连接公司 VPN，再访问内部系统。
Connect to the company VPN before you open internal systems from home.

## Equipment 设备

公司为每位员工配备一台笔记本电脑。Every employee gets a company laptop.
"""

# Ingestion can take a while the first time (the worker loads the embedding model): these are
# waits for what the user waits for, not claims about speed.
INGESTED = 180_000


@pytest.fixture
def ingest_worker(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    postgres: None,
    chroma_url: str,
) -> Iterator[None]:
    """The site uses the session's Chroma server, and a Celery worker in this process (so it
    shares the tests' in-memory file storage) ingests the uploads. They go to a queue of this
    test's own: other test runs sharing the Redis broker neither take nor purge them."""
    settings.CHROMA_URL = chroma_url
    services._store = None  # a client for this server, made on first use
    queue = f"ingest-test-{uuid.uuid4().hex[:12]}"

    def enqueue(document_id: Any) -> None:
        document_ingest_task.apply_async(args=(str(document_id),), queue=queue)

    monkeypatch.setattr(services, "_enqueue_ingest", enqueue)
    since = database_now()
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=30
    ):
        yield
    close_sessions_since(since)
    services._store = None


def _upload(base: KnowledgeBase, actor: Any, name: str, text: str) -> Document:
    """A stored document that is not queued: the test sets its status itself."""
    upload = SimpleUploadedFile(name, text.encode())
    return services.document_upload(base=base, upload=upload, actor=actor, queue=False)


@pytest.mark.usefixtures("ingest_worker")
def test_a_curator_creates_a_base_uploads_files_watches_them_live_and_tests_a_question(
    page: Page,
    live_url: str,
    make_user: Callable[..., Any],
    settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    settings.KNOWLEDGE_MAX_UPLOAD_MB = 1
    make_user("curator", roles=(CURATOR,))
    sign_in(page, live_url, "curator", next_path="/studio/knowledge")

    expect(page.get_by_role("heading", name="Knowledge bases", level=1)).to_be_visible()
    expect(page.get_by_text("There are no knowledge bases yet")).to_be_visible()
    create = page.get_by_role("region", name="New knowledge base")
    create.get_by_label("Name").fill("Employee handbook")
    create.get_by_label("Description").fill("HR and IT rules for everyone")
    overlap = create.get_by_label("Passage overlap (characters)")
    overlap.fill("300")
    create.get_by_role("button", name="Create knowledge base").click()
    # The API's field error, next to (and describing) its field.
    expect(overlap).to_have_attribute("aria-invalid", "true")
    expect(overlap).to_have_accessible_description(
        re.compile("must be less than half the chunk size")
    )
    screenshot(page, request, "field-error")
    overlap.fill("50")
    create.get_by_role("button", name="Create knowledge base").click()

    expect(page.get_by_role("heading", name="Employee handbook", level=1)).to_be_visible()
    base = KnowledgeBase.objects.get(name="Employee handbook")
    expect(page).to_have_url(f"{live_url}/studio/knowledge/{base.pk}")
    expect(page.get_by_text("No documents yet: upload some above.")).to_be_visible()
    expect(page.get_by_text("Live updates", exact=True)).to_be_visible()

    # Four files at once: a good one, one that fails ingestion (text named .pdf), one the
    # server refuses (over the 1 MB limit) and one the page refuses before uploading.
    page.get_by_label("Choose files to upload").set_input_files(
        [
            FilePayload(name="handbook.md", mimeType="text/markdown", buffer=HANDBOOK.encode()),
            FilePayload(name="broken.pdf", mimeType="application/pdf", buffer=b"not a pdf"),
            FilePayload(name="big.txt", mimeType="text/plain", buffer=b"x" * (1536 * 1024)),
            FilePayload(name="setup.exe", mimeType="application/octet-stream", buffer=b"MZ"),
        ]
    )
    uploads = page.get_by_role("list").filter(has=page.get_by_role("progressbar"))
    for name in ("handbook.md", "broken.pdf"):
        expect(page.get_by_role("progressbar", name=name)).to_have_attribute("value", "100")
        expect(uploads.get_by_role("listitem").filter(has_text=name)).to_contain_text("Uploaded")
    refused = uploads.get_by_role("listitem").filter(has_text="big.txt")
    expect(page.get_by_role("progressbar", name="big.txt")).to_be_visible()
    expect(refused).to_contain_text("Refused")
    expect(refused).to_contain_text("big.txt: file larger than 1 MB")
    invalid = uploads.get_by_role("listitem").filter(has_text="setup.exe")
    expect(invalid).to_contain_text("“.exe” files cannot be read")
    expect(page.get_by_role("progressbar", name="setup.exe")).to_have_count(0)
    expect(
        page.get_by_role("heading", name=re.compile("Uploads: 0 in progress, 2 done"))
    ).to_be_visible()
    screenshot(page, request, "uploaded")

    documents = page.get_by_role("table", name="Documents of Employee handbook")
    handbook = documents.get_by_role("row", name=re.compile("handbook.md"))
    broken = documents.get_by_role("row", name=re.compile("broken.pdf"))
    expect(handbook.get_by_role("cell").nth(0)).to_have_text("Ready", timeout=INGESTED)
    expect(broken).to_contain_text("Failed", timeout=INGESTED)
    expect(broken).to_contain_text("not a PDF file (it looks like plain text)")
    expect(broken.get_by_role("button", name="Retry broken.pdf")).to_be_visible()
    expect(documents.get_by_role("row")).to_have_count(3)  # the header and two documents
    chunks = Document.objects.get(filename="handbook.md").chunk_count
    assert chunks > 0
    expect(handbook.get_by_role("cell").nth(1)).to_have_text(str(chunks))
    expect(page.get_by_text("Live updates", exact=True)).to_be_visible()
    expect(page.get_by_text("2 documents: 1 ready, 0 in progress, 1 failed.")).to_be_visible()
    screenshot(page, request, "ready")

    hits = page.get_by_role("region", name="Hit testing")
    hits.get_by_label("Question or keywords").fill("在家怎么访问内部系统")
    expect(hits.get_by_label("Search mode")).to_have_value("hybrid")
    hits.get_by_label("Passages to show").fill("3")
    hits.get_by_role("button", name="Search").click()
    first = hits.get_by_role("listitem").first
    expect(first).to_contain_text("连接公司 VPN")
    expect(first).to_contain_text("handbook.md")
    expect(first).to_contain_text(re.compile(r"Score \d\.\d{3}"))
    expect(first).to_contain_text("Remote work 远程办公 > VPN")  # its heading path
    first.scroll_into_view_if_needed()
    screenshot(page, request, "hit-test")

    # Disable the good document; delete the failed one after a confirmation.
    switch = handbook.get_by_role("switch", name="Use handbook.md in searches")
    expect(switch).to_be_checked()
    switch.focus()  # by keyboard
    page.keyboard.press("Space")
    expect(switch).not_to_be_checked()
    assert Document.objects.get(filename="handbook.md").enabled is False

    broken.get_by_role("button", name="Delete broken.pdf").click()
    dialog = page.get_by_role("dialog", name="Delete this document?")
    expect(dialog).to_contain_text("broken.pdf and its passages will be removed")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(broken).to_be_visible()
    broken.get_by_role("button", name="Delete broken.pdf").click()
    dialog.get_by_role("button", name="Delete document").click()
    expect(page.get_by_role("status").filter(has_text="broken.pdf was deleted.")).to_be_visible()
    expect(broken).to_have_count(0)
    expect(page.get_by_role("heading", name="Documents", exact=True)).to_be_focused()
    assert not Document.objects.filter(filename="broken.pdf").exists()


def test_a_viewer_sees_a_base_read_only_in_chinese(
    new_context: Callable[..., BrowserContext],
    live_url: str,
    make_user: Callable[..., Any],
    request: pytest.FixtureRequest,
) -> None:
    curator = make_user("curator", roles=(CURATOR,))
    make_user("viewer", roles=(VIEWER,))
    base = services.knowledge_base_create(
        actor=curator, data={"name": "员工手册", "description": "人事与 IT 制度"}
    )
    ready = _upload(base, curator, "handbook.md", HANDBOOK)
    Document.objects.filter(pk=ready.pk).update(status="indexed", chunk_count=3)
    failed = _upload(base, curator, "scan.pdf", "not a pdf")
    Document.objects.filter(pk=failed.pk).update(
        status="failed", error="not a PDF file (it looks like plain text)"
    )

    page = new_context(locale="zh-CN").new_page()
    sign_in(page, live_url, "viewer", next_path="/studio/knowledge")
    expect(page.get_by_role("heading", name="知识库", level=1)).to_be_visible()
    expect(page.get_by_role("region", name="新建知识库")).to_have_count(0)
    row = page.get_by_role("row", name=re.compile("员工手册"))
    expect(row).to_contain_text("人事与 IT 制度")
    expect(row.get_by_role("cell").nth(2)).to_have_text("2")
    row.get_by_role("link", name="员工手册").click()

    expect(page.get_by_role("heading", name="员工手册", level=1)).to_be_visible()
    expect(
        page.get_by_text("您可以查看和检索此知识库，但不能上传、修改或删除其中的文档。")
    ).to_be_visible()
    documents = page.get_by_role("table", name="员工手册 的文档")
    expect(documents.get_by_role("row", name=re.compile("handbook.md"))).to_contain_text("就绪")
    scan = documents.get_by_role("row", name=re.compile("scan.pdf"))
    expect(scan).to_contain_text("失败")
    expect(scan).to_contain_text("not a PDF file (it looks like plain text)")
    expect(page.get_by_text("共 2 个文档：1 个就绪，0 个处理中，1 个失败。")).to_be_visible()
    # Read-only: no upload, switch, retry or delete controls.
    expect(page.get_by_label("选择要上传的文件")).to_have_count(0)
    expect(page.get_by_role("switch")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("重试|删除"))).to_have_count(0)
    expect(page.get_by_role("region", name="命中测试")).to_be_visible()
    screenshot(page, request, "read-only")

    with page.expect_download() as download:
        page.get_by_role("link", name="下载 handbook.md").click()
    assert download.value.suggested_filename == "handbook.md"


def test_a_stranger_is_told_the_base_is_not_there(
    page: Page,
    live_url: str,
    make_user: Callable[..., Any],
    request: pytest.FixtureRequest,
) -> None:
    curator = make_user("curator", roles=(CURATOR,))
    make_user("stranger")
    base = services.knowledge_base_create(actor=curator, data={"name": "Secret plans"})

    sign_in(page, live_url, "stranger", next_path="/studio/knowledge")
    expect(page.get_by_text("There are no knowledge bases you may view.")).to_be_visible()
    expect(page.get_by_text("Secret plans")).to_have_count(0)

    page.goto(f"{live_url}/studio/knowledge/{base.pk}")
    expect(page.get_by_role("alert")).to_have_text(
        "This knowledge base does not exist, or you do not have access to it. "
        "Ask its owner to share it with you."
    )
    expect(page.get_by_text("Secret plans")).to_have_count(0)
    expect(page.get_by_role("region", name="Hit testing")).to_have_count(0)
    screenshot(page, request, "not-found")
    page.get_by_role("link", name="← All knowledge bases").click()
    expect(page.get_by_text("There are no knowledge bases you may view.")).to_be_visible()


def test_without_the_socket_the_page_says_so_and_keeps_statuses_current(
    page: Page,
    live_url: str,
    make_user: Callable[..., Any],
    request: pytest.FixtureRequest,
) -> None:
    curator = make_user("curator", roles=(CURATOR,))
    base = services.knowledge_base_create(actor=curator, data={"name": "Policies"})
    document = _upload(base, curator, "leave.md", "# Leave\n\nTen days a year.")
    # A proxy that refuses WebSockets: every connection to the knowledge socket is dropped.
    page.route_web_socket(re.compile(r"/ws/knowledge/"), lambda socket: socket.close(code=1011))

    sign_in(page, live_url, "curator", next_path=f"/studio/knowledge/{base.pk}")
    row = page.get_by_role("row", name=re.compile("leave.md"))
    expect(row).to_contain_text("Queued")
    expect(page.get_by_text("Live updates unavailable: checking every few seconds")).to_be_visible()

    Document.objects.filter(pk=document.pk).update(status="indexed", chunk_count=1)
    expect(row.get_by_role("cell").nth(0)).to_have_text("Ready")
    screenshot(page, request, "polling")
