"""Retrieval over knowledge bases: vector (Chroma), keyword (BM25 with jieba) and hybrid
(reciprocal rank fusion), returning passages with what a reply needs to cite them.

Only indexed chunks of enabled documents are returned: the vector index filters on the
``enabled`` metadata that enabling/disabling updates at once, and every hit is checked
against the database, which is the source of truth.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Literal

from django.db import close_old_connections
from django.db.models import Count, Max

from knowledge.models import Chunk, Document, KnowledgeBase
from knowledge.search import KeywordIndex, reciprocal_rank_fusion
from knowledge.services import embedder_for, vector_store
from knowledge.vectorstores.base import collection_name
from workflows.nodes.knowledge_retrieval import Passage

Mode = Literal["vector", "keyword", "hybrid"]
# How many candidates each ranking contributes before fusion.
CANDIDATES = 50

_keyword_lock = threading.Lock()
_keyword_indexes: dict[int, tuple[tuple[Any, ...], KeywordIndex]] = {}


def _searchable(base: KnowledgeBase) -> Any:
    return Chunk.objects.filter(
        knowledge_base=base,
        document__enabled=True,
        document__status=Document.Status.INDEXED,
    )


def _keyword_index(base: KnowledgeBase) -> KeywordIndex:
    """Built in memory per process, rebuilt when the base's searchable chunks change."""
    chunks = _searchable(base)
    marker = tuple(chunks.aggregate(n=Count("pk"), changed=Max("document__updated_at")).values())
    with _keyword_lock:
        cached = _keyword_indexes.get(base.pk)
        if cached is not None and cached[0] == marker:
            return cached[1]
    index = KeywordIndex.from_terms(
        [(str(pk), terms.split()) for pk, terms in chunks.values_list("pk", "terms")]
    )
    with _keyword_lock:
        _keyword_indexes[base.pk] = (marker, index)
    return index


def _vector_ranking(base: KnowledgeBase, query: str, limit: int) -> list[tuple[str, float]]:
    embedder = embedder_for(base)
    hits = vector_store().query(
        collection_name(base.pk, embedder.key),
        embedder.embed_query(query),
        limit,
        where={"enabled": True},
    )
    return [(hit.chunk_id, hit.score) for hit in hits]


def _ranking(base: KnowledgeBase, query: str, mode: Mode, limit: int) -> list[tuple[str, float]]:
    if mode == "vector":
        return _vector_ranking(base, query, limit)
    if mode == "keyword":
        return _keyword_index(base).search(query, limit)
    vector = _vector_ranking(base, query, CANDIDATES)
    keyword = _keyword_index(base).search(query, CANDIDATES)
    return reciprocal_rank_fusion(
        [[chunk_id for chunk_id, _ in vector], [chunk_id for chunk_id, _ in keyword]],
        top_k=limit,
    )


def knowledge_search(
    *,
    bases: Sequence[KnowledgeBase],
    query: str,
    top_k: int = 4,
    min_score: float = 0.0,
    mode: Mode = "hybrid",
) -> list[Passage]:
    """The best passages for ``query`` over ``bases``, best first. Scores are 0..1: cosine
    similarity (vector), BM25 normalised by the best hit (keyword), or the fused rank
    (hybrid)."""
    query = query.strip()
    if not query:
        return []
    scored: dict[str, float] = {}
    for base in bases:
        ranking = _ranking(base, query, mode, max(top_k, 1) * 2)
        if mode == "keyword" and ranking:
            best = ranking[0][1] or 1.0
            ranking = [(chunk_id, score / best) for chunk_id, score in ranking]
        for chunk_id, score in ranking:
            scored[chunk_id] = max(score, scored.get(chunk_id, 0.0))
    wanted = [cid for cid, score in sorted(scored.items(), key=lambda item: -item[1])]
    rows = {
        str(chunk.pk): chunk
        for chunk in _searchable_any(bases).filter(pk__in=wanted).select_related("document")
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


def _searchable_any(bases: Sequence[KnowledgeBase]) -> Any:
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

    async def search(self, query: str, *, top_k: int, min_score: float) -> list[Passage]:
        return await asyncio.to_thread(self._search, query, top_k, min_score)

    def _search(self, query: str, top_k: int, min_score: float) -> list[Passage]:
        try:
            return knowledge_search(
                bases=[self.base], query=query, top_k=top_k, min_score=min_score
            )
        finally:
            close_old_connections()  # a pool thread, outside any request cycle
