"""Knowledge bases through the API, end to end: upload -> ingest (parse, split, embed with the
built-in model, index in a real Chroma server) -> hit testing, enable/disable/delete at once,
no re-embedding of unchanged content, clear failures, permissions and the audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from pytest_django.fixtures import Settings

from assistant_site.celery import app
from assistant_site.roles import CURATOR, DESIGNER, VIEWER
from audit.models import AuditEntry
from knowledge import services
from knowledge.models import Document, EmbeddingCache, KnowledgeBase
from knowledge.vectorstores.base import collection_name

POLICY = """# 员工手册

## 年假
员工入职满一年后，每年享有十天带薪年假。年假需提前两周在系统中申请。

## 报销
差旅费用需在出差结束后三十天内提交报销单，并附上发票原件。

## Remote work
Employees may work from home up to two days per week with their manager's approval.
"""


@pytest.fixture
def eager() -> Iterator[None]:
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


@pytest.fixture
def ingesting(index: None, eager: None, django_capture_on_commit_callbacks: Any) -> Any:
    """Uploads ingest at once, in the test, into the real Chroma server."""
    return django_capture_on_commit_callbacks


@pytest.fixture
def curator(make_user: Callable[..., Any]) -> Any:
    return make_user("curator", roles=(CURATOR,))


@pytest.fixture
def api(curator: Any) -> Client:
    client = Client()
    client.force_login(curator)
    return client


@pytest.fixture
def base(api: Client) -> KnowledgeBase:
    response = api.post(
        "/api/knowledge-bases/create/",
        {"name": "制度", "chunk_size": 200, "chunk_overlap": 20},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return KnowledgeBase.objects.get(pk=response.json()["id"])


def _upload(api: Client, base: KnowledgeBase, *files: tuple[str, bytes], capture: Any) -> Any:
    uploads = [SimpleUploadedFile(name, data) for name, data in files]
    with capture(execute=True):
        return api.post(f"/api/knowledge-bases/{base.pk}/documents/upload/", {"files": uploads})


def _search(api: Client, base: KnowledgeBase, query: str, **extra: Any) -> list[dict[str, Any]]:
    response = api.post(
        f"/api/knowledge-bases/{base.pk}/search/",
        {"query": query, **extra},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["reranked"], body["rerank_error"]) == (False, "")
    result: list[dict[str, Any]] = body["passages"]
    return result


def test_an_uploaded_document_is_indexed_and_answers_questions(
    api: Client,
    base: KnowledgeBase,
    ingesting: Any,
) -> None:
    response = _upload(api, base, ("handbook.md", POLICY.encode()), capture=ingesting)
    assert response.status_code == 201, response.content
    document = Document.objects.get(pk=response.json()[0]["id"])
    assert document.status == Document.Status.INDEXED, document.error
    assert document.title == "员工手册"
    assert document.chunk_count >= 3
    hits = _search(api, base, "一年能休几天假？")
    assert hits[0]["document_title"] == "员工手册"
    assert "十天带薪年假" in hits[0]["text"]
    assert "年假" in hits[0]["location"]
    assert 0 < hits[0]["score"] <= 1
    english = _search(api, base, "how many days can I work from home", mode="vector")
    assert "work from home" in english[0]["text"]
    keyword = _search(api, base, "报销 发票", mode="keyword")
    assert "发票" in keyword[0]["text"]


def test_disable_and_enable_take_effect_at_once(
    api: Client,
    base: KnowledgeBase,
    ingesting: Any,
) -> None:
    doc_id = _upload(api, base, ("handbook.md", POLICY.encode()), capture=ingesting).json()[0]["id"]
    assert api.post(f"/api/documents/{doc_id}/disable/").status_code == 200
    for mode in ("vector", "keyword", "hybrid"):
        assert _search(api, base, "年假", mode=mode) == []
    assert api.post(f"/api/documents/{doc_id}/enable/").status_code == 200
    assert _search(api, base, "年假")


def test_a_deleted_document_leaves_the_index(
    api: Client,
    base: KnowledgeBase,
    ingesting: Any,
) -> None:
    doc_id = _upload(api, base, ("handbook.md", POLICY.encode()), capture=ingesting).json()[0]["id"]
    collection = collection_name(base.pk, services.embedder_for(base).key)
    assert services.vector_store().count(collection) > 0
    assert api.delete(f"/api/documents/{doc_id}/delete/").status_code == 204
    assert services.vector_store().count(collection) == 0
    assert _search(api, base, "年假") == []
    assert not Document.objects.filter(pk=doc_id).exists()


def test_unchanged_content_is_not_embedded_again(
    api: Client, base: KnowledgeBase, ingesting: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload(api, base, ("a.md", POLICY.encode()), capture=ingesting)
    cached = EmbeddingCache.objects.count()
    embedder = services.embedder_for(base)
    calls: list[int] = []
    original = type(embedder).embed_documents

    def counting(self: Any, texts: Any) -> Any:
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(type(embedder), "embed_documents", counting)
    response = _upload(api, base, ("copy.md", POLICY.encode()), capture=ingesting)
    assert Document.objects.get(pk=response.json()[0]["id"]).status == Document.Status.INDEXED
    assert calls == []
    assert EmbeddingCache.objects.count() == cached


def test_a_bad_file_fails_with_a_message_and_the_next_one_is_ingested(
    api: Client,
    base: KnowledgeBase,
    ingesting: Any,
) -> None:
    response = _upload(
        api,
        base,
        ("report.docx", b"%PDF-1.4 not really a docx"),
        ("ok.txt", "出差报销需要发票。".encode("gb18030")),
        capture=ingesting,
    )
    bad, good = (Document.objects.get(pk=item["id"]) for item in response.json())
    assert bad.status == Document.Status.FAILED
    assert "DOCX" in bad.error
    assert good.status == Document.Status.INDEXED, good.error


def test_an_oversized_upload_is_refused_naming_the_field(
    api: Client, base: KnowledgeBase, settings: Settings
) -> None:
    settings.KNOWLEDGE_MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("big.txt", b"x" * (1024 * 1024 + 1))
    response = api.post(f"/api/knowledge-bases/{base.pk}/documents/upload/", {"files": [big]})
    assert response.status_code == 400
    assert "larger than 1 MB" in response.json()["files"][0]
    assert not Document.objects.exists()


def test_uploads_deletions_and_downloads_are_audited(
    api: Client,
    base: KnowledgeBase,
    ingesting: Any,
) -> None:
    doc_id = _upload(api, base, ("handbook.md", POLICY.encode()), capture=ingesting).json()[0]["id"]
    download = api.get(f"/api/documents/{doc_id}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == POLICY.encode()  # type: ignore[attr-defined]
    api.post(f"/api/documents/{doc_id}/disable/")
    api.delete(f"/api/documents/{doc_id}/delete/")
    actions = list(
        AuditEntry.objects.filter(action__startswith="document.")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == [
        "document.upload",
        "document.download",
        "document.disable",
        "document.delete",
    ]


def test_viewers_may_search_but_not_manage_and_strangers_see_nothing(
    base: KnowledgeBase, make_user: Callable[..., Any], index: None
) -> None:
    viewer, stranger = Client(), Client()
    viewer.force_login(make_user("viewer", roles=(VIEWER,)))
    stranger.force_login(make_user("stranger", roles=(DESIGNER,)))
    upload = SimpleUploadedFile("a.txt", b"text")
    assert viewer.post(f"/api/knowledge-bases/{base.pk}/search/", {"query": "x"}).status_code == 200
    assert (
        viewer.post(
            f"/api/knowledge-bases/{base.pk}/documents/upload/", {"files": [upload]}
        ).status_code
        == 403
    )
    assert stranger.get(f"/api/knowledge-bases/{base.pk}/").status_code == 200  # designers view all
    outsider = Client()
    outsider.force_login(make_user("outsider"))
    assert outsider.get(f"/api/knowledge-bases/{base.pk}/").status_code == 404
    assert (
        outsider.post(f"/api/knowledge-bases/{base.pk}/search/", {"query": "x"}).status_code == 404
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "chunk_size": 50}, "chunk_size"),
        ({"name": "x", "chunk_size": 200, "chunk_overlap": 150}, "chunk_overlap"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    api: Client, body: dict[str, Any], field: str
) -> None:
    response = api.post("/api/knowledge-bases/create/", body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.django_db(transaction=True)  # the retriever reads on a thread of its own
def test_a_workflow_retrieves_from_the_base(
    api: Client, base: KnowledgeBase, ingesting: Any
) -> None:
    from knowledge.retrieval import KnowledgeBaseRetriever

    _upload(api, base, ("handbook.md", POLICY.encode()), capture=ingesting)
    passages = asyncio.run(
        KnowledgeBaseRetriever(base).search("差旅报销有什么要求", top_k=2, min_score=0.0)
    )
    assert passages
    assert "发票" in passages[0].text
    assert passages[0].document_title == "员工手册"


def test_deleting_a_base_drops_its_index(
    api: Client, base: KnowledgeBase, ingesting: Any, chroma_url: str
) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    host, port = chroma_url.removeprefix("http://").split(":")
    chroma = chromadb.HttpClient(
        host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False)
    )
    _upload(api, base, ("handbook.md", POLICY.encode()), capture=ingesting)
    collection = collection_name(base.pk, services.embedder_for(base).key)
    assert collection in {c.name for c in chroma.list_collections()}
    assert api.delete(f"/api/knowledge-bases/{base.pk}/delete/").status_code == 204
    assert collection not in {c.name for c in chroma.list_collections()}
