"""knowledge_search and knowledge_search_reranked over a real index: metadata filters applied
before the best passages are picked, and the optional rerank step with its fallback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from knowledge.models import Chunk, Document
from knowledge.retrieval import (
    KnowledgeBaseRetriever,
    Mode,
    knowledge_search,
    knowledge_search_reranked,
)
from tests.doubles.rerank_server import RerankDouble
from tests.knowledge.conftest import Library
from workflows.llm.endpoints import EndpointConfig
from workflows.nodes.knowledge_retrieval import RERANK_CANDIDATES, Passage, SearchFilters

MODES: tuple[Mode, ...] = ("keyword", "vector", "hybrid")
LEAVE = ("leave-policy.md", "contractors.txt", "benefits.html")


def _search(library: Library, mode: Mode, top_k: int = 10, **filters: Any) -> list[Passage]:
    return knowledge_search(
        bases=[library.base],
        query="annual leave",
        top_k=top_k,
        mode=mode,
        filters=SearchFilters.model_validate(filters) if filters else None,
    )


def _chunk_ids(passages: list[Passage]) -> set[str]:
    return {passage.chunk_id for passage in passages}


def _headings(passages: list[Passage]) -> list[str]:
    return sorted(Chunk.objects.get(pk=p.chunk_id).heading_path for p in passages)


# --- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_filter_applies_before_top_k(library: Library, mode: Mode) -> None:
    guide = library.documents["office-guide.md"]
    unfiltered = _search(library, mode, top_k=3)
    # Without the filter the office guide does not make the top 3: filtering those three
    # afterwards would leave nothing.
    assert len(unfiltered) == 3
    assert not _chunk_ids(unfiltered) & library.chunk_ids("office-guide.md")
    filtered = _search(library, mode, top_k=3, document_ids=[str(guide.pk)])
    assert _chunk_ids(filtered) == library.chunk_ids("office-guide.md")
    assert {p.document_id for p in filtered} == {str(guide.pk)}
    scores = [p.score for p in filtered]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_each_filter_admits_only_its_passages(library: Library, mode: Mode) -> None:
    by_title = _search(library, mode, title_contains="GUIDE")
    assert _chunk_ids(by_title) == library.chunk_ids("office-guide.md")
    by_type = _search(library, mode, file_types=[".txt", "html"])
    assert _chunk_ids(by_type) == library.chunk_ids("contractors.txt", "benefits.html")
    # Whole headings, ignoring case: "Chapter 2" is not a prefix of "Chapter 20". The
    # heading is in two documents.
    by_heading = _search(library, mode, heading_prefix="leave policy>chapter 2")
    assert _headings(by_heading) == [
        "Leave policy > Chapter 2",
        "Leave policy > Chapter 2",
        "Leave policy > Chapter 2 > Requests",
    ]
    assert {p.document_id for p in by_heading} == {
        str(library.documents[name].pk) for name in ("leave-policy.md", "benefits.html")
    }
    under_one_heading = _search(library, mode, heading_prefix="Leave policy > Chapter 20")
    assert _headings(under_one_heading) == ["Leave policy > Chapter 20"]


@pytest.mark.parametrize("mode", MODES)
def test_filters_combine_and_may_admit_nothing(library: Library, mode: Mode) -> None:
    both = _search(library, mode, file_types=["md"], heading_prefix="Leave policy > Chapter 2")
    assert _headings(both) == ["Leave policy > Chapter 2", "Leave policy > Chapter 2 > Requests"]
    assert {p.document_id for p in both} == {str(library.documents["leave-policy.md"].pk)}
    assert _search(library, mode, file_types=["pdf"]) == []
    assert _search(library, mode, title_contains="guide", file_types=["text"]) == []
    assert _search(library, mode, heading_prefix="Leave policy > Chapter") == []


def test_a_disabled_document_stays_out_even_when_named(library: Library) -> None:
    from knowledge import services

    policy = library.documents["leave-policy.md"]
    services.document_set_enabled(document=policy, enabled=False, actor=library.curator)
    for mode in MODES:
        assert _search(library, mode, document_ids=[str(policy.pk)]) == []


@pytest.mark.django_db(transaction=True)  # the retriever reads on a thread of its own
def test_the_workflow_retriever_passes_filters_on(library: Library) -> None:
    retriever = KnowledgeBaseRetriever(library.base)
    filters = SearchFilters(file_types=["text"])
    passages = asyncio.run(
        retriever.search("annual leave", top_k=5, min_score=0.0, filters=filters)
    )
    assert _chunk_ids(passages) == library.chunk_ids("contractors.txt")


# --- the keyword index cached per process ---------------------------------------------------


def _keyword(library: Library, query: str) -> set[str]:
    return _chunk_ids(knowledge_search(bases=[library.base], query=query, top_k=10, mode="keyword"))


def test_the_keyword_index_follows_every_change_at_once(library: Library) -> None:
    from knowledge import services

    assert _keyword(library, "annual leave")  # builds and caches the base's index
    contractors = library.documents["contractors.txt"]
    # Re-ingested with new text of the same size: same documents, same chunk count, so only
    # the document's updated_at tells the cache that the terms changed.
    storage, name = contractors.file.storage, contractors.file.name
    assert name
    storage.delete(name)
    assert (
        storage.save(name, ContentFile(b"Overtime for contractors is paid every month.\n")) == name
    )
    contractors = services.document_ingest(document_id=str(contractors.pk))
    assert contractors.chunk_count == 1
    assert _keyword(library, "overtime") == library.chunk_ids("contractors.txt")
    assert not _keyword(library, "annual leave") & library.chunk_ids("contractors.txt")
    # A new document is found by its own words.
    upload = SimpleUploadedFile("canteen.md", b"# Canteen\n\nThe canteen serves noodles.\n")
    canteen = services.document_upload(
        base=library.base, upload=upload, actor=library.curator, queue=False
    )
    services.document_ingest(document_id=str(canteen.pk))
    assert _keyword(library, "noodles") == {
        str(pk) for pk in canteen.chunks.values_list("pk", flat=True)
    }
    # Disabled, enabled again and deleted: out, back and out at once.
    policy = library.documents["leave-policy.md"]
    services.document_set_enabled(document=policy, enabled=False, actor=library.curator)
    assert not _keyword(library, "annual leave") & library.chunk_ids("leave-policy.md")
    services.document_set_enabled(document=policy, enabled=True, actor=library.curator)
    assert library.chunk_ids("leave-policy.md") <= _keyword(library, "annual leave")
    leave_ids = library.chunk_ids("leave-policy.md")
    services.document_delete(document=policy, actor=library.curator)
    assert not _keyword(library, "annual leave") & leave_ids


def test_the_keyword_index_is_reused_until_the_base_changes(
    library: Library, django_assert_num_queries: Any
) -> None:
    from knowledge import retrieval

    first = retrieval._keyword_index(library.base)
    # A warm keyword search is two queries: the documents' change marker and the rows of the
    # passages (with every field a passage reads: none is loaded lazily afterwards).
    with django_assert_num_queries(2):
        passages = _search(library, "keyword")
    assert passages
    assert all(p.document_title and p.text for p in passages)
    assert retrieval._keyword_index(library.base) is first
    guide = library.documents["office-guide.md"]
    Document.objects.filter(pk=guide.pk).update(status=Document.Status.QUEUED)
    assert retrieval._keyword_index(library.base) is not first


# --- rerank ----------------------------------------------------------------------------------


def _endpoint(double: RerankDouble, key: str = "rk-test-key") -> EndpointConfig:
    return EndpointConfig(
        id=1,
        name="rr",
        kind="rerank",
        base_url=double.base_url,
        model=double.model,
        api_key=key,
        timeout_s=5,
    )


def _prefers_parking(query: str, document: str) -> float:
    return 0.95 if "Parking" in document else 0.1


def test_rerank_reorders_the_fused_candidates(library: Library, reranker: RerankDouble) -> None:
    reranker.relevance = _prefers_parking
    fused = knowledge_search(bases=[library.base], query="annual leave", top_k=RERANK_CANDIDATES)
    outcome = knowledge_search_reranked(
        bases=[library.base], query=" annual leave ", endpoint=_endpoint(reranker), top_k=2
    )
    assert (outcome.reranked, outcome.error) == (True, "")
    assert [p.score for p in outcome.passages] == [0.95, 0.1]
    assert "Parking" in outcome.passages[0].text
    assert outcome.passages[0].document_title == "Office guide"
    # Every fused candidate went to the reranker, in the fused order.
    [request] = reranker.requests
    assert request["documents"] == [p.text for p in fused]
    assert (request["query"], request["top_n"], request["model"]) == (
        "annual leave",
        2,
        reranker.model,
    )


def test_rerank_sees_only_what_the_filters_admit(library: Library, reranker: RerankDouble) -> None:
    reranker.relevance = _prefers_parking
    outcome = knowledge_search_reranked(
        bases=[library.base],
        query="annual leave",
        endpoint=_endpoint(reranker),
        top_k=5,
        filters=SearchFilters(file_types=["text", "html"]),
    )
    assert outcome.reranked
    assert _chunk_ids(outcome.passages) == library.chunk_ids("contractors.txt", "benefits.html")
    assert len(reranker.requests[0]["documents"]) == 2


def test_min_score_applies_to_the_rerank_scores(library: Library, reranker: RerankDouble) -> None:
    reranker.relevance = _prefers_parking
    outcome = knowledge_search_reranked(
        bases=[library.base],
        query="annual leave",
        endpoint=_endpoint(reranker),
        top_k=5,
        min_score=0.5,
    )
    assert [p.score for p in outcome.passages] == [0.95]


def test_a_failing_rerank_endpoint_keeps_the_fused_order(
    library: Library, reranker: RerankDouble
) -> None:
    fused = knowledge_search(bases=[library.base], query="annual leave", top_k=3)
    reranker.inject("500", count=2)  # the first attempt and its one retry
    outcome = knowledge_search_reranked(
        bases=[library.base], query="annual leave", endpoint=_endpoint(reranker), top_k=3
    )
    assert outcome.passages == fused
    assert not outcome.reranked
    assert outcome.error.startswith("rerank endpoint 'rr' failed: ")
    assert "answered 500" in outcome.error
    assert len(reranker.requests) == 2
    refused = knowledge_search_reranked(
        bases=[library.base],
        query="annual leave",
        endpoint=_endpoint(reranker, key="wrong"),
        top_k=3,
    )
    assert refused.passages == fused
    assert "answered 401" in refused.error
