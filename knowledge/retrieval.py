"""Retrieval over knowledge bases: vector (Chroma), keyword (BM25 with jieba) and hybrid
(reciprocal rank fusion), returning passages with what a reply needs to cite them.

Only indexed chunks of enabled documents are returned: the vector index filters on the
``enabled`` metadata that enabling/disabling updates at once, and every hit is checked
against the database, which is the source of truth.

Filters (``SearchFilters``) are resolved in the database first, into the chunks they admit;
both rankings are then restricted to those chunks before they pick their best (Chroma by a
``where`` on the document ids and chunk order it stores, BM25 by a mask), so a filtered search
returns as many passages as a plain one when enough qualify. An optional rerank endpoint then
reorders the best fused passages (``knowledge_search_reranked``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from asgiref.sync import async_to_sync
from django.db import close_old_connections
from django.db.models import Count, Max, Q, QuerySet, Sum

from knowledge.models import Chunk, Document, KnowledgeBase
from knowledge.search import KeywordIndex, reciprocal_rank_fusion
from knowledge.services import embedder_for, vector_store
from knowledge.vectorstores.base import collection_name
from workflows.llm.endpoints import EndpointConfig
from workflows.nodes.knowledge_retrieval import (
    HEADING_SEPARATOR,
    RERANK_CANDIDATES,
    Passage,
    RerankOutcome,
    SearchFilters,
    rerank_passages,
)

Mode = Literal["vector", "keyword", "hybrid"]
# How many candidates each ranking contributes before fusion.
CANDIDATES = 50

_keyword_lock = threading.Lock()
_keyword_indexes: dict[int, tuple[tuple[Any, ...], KeywordIndex]] = {}


def _searchable(base: KnowledgeBase) -> QuerySet[Chunk]:
    return Chunk.objects.filter(
        knowledge_base=base,
        document__enabled=True,
        document__status=Document.Status.INDEXED,
    )


def _filtered(chunks: QuerySet[Chunk], filters: SearchFilters | None) -> QuerySet[Chunk]:
    """The chunks that ``filters`` admit (see ``SearchFilters`` for what each one means)."""
    if filters is None:
        return chunks
    if filters.document_ids:
        chunks = chunks.filter(document_id__in=filters.document_ids)
    if filters.title_contains:
        text = filters.title_contains
        chunks = chunks.filter(
            Q(document__title__icontains=text)
            | Q(document__title="", document__filename__icontains=text)
        )
    if filters.file_types:
        chunks = chunks.filter(document__kind__in=filters.file_types)
    if filters.heading_prefix:
        prefix = filters.heading_prefix
        chunks = chunks.filter(
            Q(heading_path__iexact=prefix) | Q(heading_path__istartswith=prefix + HEADING_SEPARATOR)
        )
    return chunks


@dataclass(frozen=True)
class _Scope:
    """The chunks of one base that a filtered search may rank: their ids (for BM25) and a
    vector store filter that admits exactly them."""

    chunk_ids: frozenset[str]
    where: dict[str, Any]


def _scope(base: KnowledgeBase, filters: SearchFilters | None) -> _Scope | None:
    """None when nothing is filtered."""
    if filters is None or filters.empty:
        return None
    chunk_ids: set[str] = set()
    orders: dict[str, list[int]] = {}
    rows = _filtered(_searchable(base), filters).values_list("pk", "document_id", "order")
    for pk, document_id, order in rows:
        chunk_ids.add(str(pk))
        orders.setdefault(str(document_id), []).append(order)
    where: dict[str, Any] = {"enabled": True}
    if not filters.heading_prefix:
        where["document_id"] = sorted(orders)
    else:
        # A heading selects chunks, not documents; the index knows each chunk by its
        # document and order (not by a chunk id it could filter on: Chroma's query by ids
        # fails outright on an id it does not hold, which drift would cause).
        by_document = [
            {"$and": [{"document_id": document_id}, {"order": {"$in": sorted(chunk_orders)}}]}
            for document_id, chunk_orders in sorted(orders.items())
        ]
        if len(by_document) == 1:
            where.update(by_document[0])
        else:
            where["$or"] = by_document
    return _Scope(frozenset(chunk_ids), where)


def _keyword_index(base: KnowledgeBase) -> KeywordIndex:
    """Built in memory per process, rebuilt when the base's searchable chunks change.

    The change marker is read from the base's searchable documents, not from its chunks: one
    row per document instead of a join over every chunk (9 ms at 10k chunks, and growing with
    them, against under 1 ms). It sees every change to the searchable chunks because a
    document's chunks are only replaced while it is out of the searchable set (ingestion
    moves it to "embedding" first, then writes the chunks and "indexed" in one transaction),
    every save that brings a document into the set stamps ``updated_at``, and one leaving the
    set lowers the count and its chunks the sum.
    """
    marker = tuple(
        Document.objects.filter(knowledge_base=base, enabled=True, status=Document.Status.INDEXED)
        .aggregate(n=Count("pk"), chunks=Sum("chunk_count"), changed=Max("updated_at"))
        .values()
    )
    with _keyword_lock:
        cached = _keyword_indexes.get(base.pk)
        if cached is not None and cached[0] == marker:
            return cached[1]
    rows = _searchable(base).values_list("pk", "terms")
    index = KeywordIndex.from_terms([(str(pk), terms.split()) for pk, terms in rows])
    with _keyword_lock:
        _keyword_indexes[base.pk] = (marker, index)
    return index


def _vector_ranking(
    base: KnowledgeBase, query: str, limit: int, scope: _Scope | None
) -> list[tuple[str, float]]:
    embedder = embedder_for(base)
    hits = vector_store().query(
        collection_name(base.pk, embedder.key),
        embedder.embed_query(query),
        limit,
        where=scope.where if scope is not None else {"enabled": True},
    )
    return [(hit.chunk_id, hit.score) for hit in hits]


def _keyword_ranking(
    base: KnowledgeBase, query: str, limit: int, scope: _Scope | None
) -> list[tuple[str, float]]:
    only = scope.chunk_ids if scope is not None else None
    return _keyword_index(base).search(query, limit, only=only)


def _ranking(
    base: KnowledgeBase, query: str, mode: Mode, limit: int, scope: _Scope | None
) -> list[tuple[str, float]]:
    if mode == "vector":
        return _vector_ranking(base, query, limit, scope)
    if mode == "keyword":
        return _keyword_ranking(base, query, limit, scope)
    vector = _vector_ranking(base, query, CANDIDATES, scope)
    keyword = _keyword_ranking(base, query, CANDIDATES, scope)
    return reciprocal_rank_fusion(
        [[chunk_id for chunk_id, _ in vector], [chunk_id for chunk_id, _ in keyword]],
        top_k=limit,
    )


_PASSAGE_FIELDS = (
    "document",
    "text",
    "heading_path",
    "page",
    "document__title",
    "document__filename",
)


def knowledge_search(
    *,
    bases: Sequence[KnowledgeBase],
    query: str,
    top_k: int = 4,
    min_score: float = 0.0,
    mode: Mode = "hybrid",
    filters: SearchFilters | None = None,
) -> list[Passage]:
    """The best passages for ``query`` over ``bases``, best first. Scores are 0..1: cosine
    similarity (vector), BM25 normalised by the best hit (keyword), or the fused rank
    (hybrid). With ``filters``, only the passages they admit are ranked."""
    query = query.strip()
    if not query:
        return []
    scored: dict[str, float] = {}
    for base in bases:
        scope = _scope(base, filters)
        if scope is not None and not scope.chunk_ids:
            continue  # the filters admit nothing here
        ranking = _ranking(base, query, mode, max(top_k, 1) * 2, scope)
        if mode == "keyword" and ranking:
            best = ranking[0][1] or 1.0
            ranking = [(chunk_id, score / best) for chunk_id, score in ranking]
        for chunk_id, score in ranking:
            scored[chunk_id] = max(score, scored.get(chunk_id, 0.0))
    wanted = [cid for cid, score in sorted(scored.items(), key=lambda item: -item[1])]
    # Only what a passage shows: the stored terms are the widest column, and the model's
    # ordering would sort rows that go into a dict.
    rows = {
        str(chunk.pk): chunk
        for chunk in _filtered(_searchable_any(bases), filters)
        .filter(pk__in=wanted)
        .select_related("document")
        .only(*_PASSAGE_FIELDS)
        .order_by()
    }
    passages: list[Passage] = []
    for chunk_id in wanted:
        chunk = rows.get(chunk_id)
        score = scored[chunk_id]
        if chunk is None or score < min_score:
            continue  # disabled or deleted since it was indexed, or below the threshold
        passages.append(
            Passage(
                text=chunk.text,
                document_id=str(chunk.document_id),
                document_title=chunk.document.title or chunk.document.filename,
                location=chunk.location,
                score=round(min(max(score, 0.0), 1.0), 4),
                chunk_id=chunk_id,
            )
        )
        if len(passages) == top_k:
            break
    return passages


def knowledge_search_reranked(
    *,
    bases: Sequence[KnowledgeBase],
    query: str,
    endpoint: EndpointConfig,
    top_k: int = 4,
    min_score: float = 0.0,
    mode: Mode = "hybrid",
    filters: SearchFilters | None = None,
) -> RerankOutcome:
    """:func:`knowledge_search`, then the best ``max(top_k, RERANK_CANDIDATES)`` passages
    reordered by the rerank ``endpoint``; ``min_score`` applies to its scores. When the
    endpoint fails, the fused order is kept and the outcome's ``error`` says why."""
    candidates = knowledge_search(
        bases=bases,
        query=query,
        top_k=max(top_k, RERANK_CANDIDATES),
        mode=mode,
        filters=filters,
    )
    return async_to_sync(rerank_passages)(
        endpoint, endpoint.name, query.strip(), candidates, top_k=top_k, min_score=min_score
    )


def _searchable_any(bases: Sequence[KnowledgeBase]) -> QuerySet[Chunk]:
    return Chunk.objects.filter(
        knowledge_base__in=list(bases),
        document__enabled=True,
        document__status=Document.Status.INDEXED,
    )


class KnowledgeBaseRetriever:
    """What the workflow's retrieval node calls (workflows.nodes.knowledge_retrieval.Retriever):
    hybrid search over one base, run on a thread (embedding and Chroma calls block)."""

    def __init__(self, base: KnowledgeBase) -> None:
        self.base = base

    async def search(
        self,
        query: str,
        *,
        top_k: int,
        min_score: float,
        filters: SearchFilters | None = None,
    ) -> list[Passage]:
        return await asyncio.to_thread(self._search, query, top_k, min_score, filters)

    def _search(
        self, query: str, top_k: int, min_score: float, filters: SearchFilters | None
    ) -> list[Passage]:
        try:
            return knowledge_search(
                bases=[self.base], query=query, top_k=top_k, min_score=min_score, filters=filters
            )
        finally:
            close_old_connections()  # a pool thread, outside any request cycle
