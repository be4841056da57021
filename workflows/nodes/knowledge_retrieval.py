"""Knowledge retrieval: searches knowledge bases for passages relevant to a query.

The node never touches an index itself. For each knowledge base it names, the runner loads a
:class:`Retriever` under the resource key ``(KNOWLEDGE_BASE_RESOURCE, str(id))`` (see
``Node.required_resources``); the knowledge app implements the protocol over its vector store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import Field, field_validator

from workflows.engine.templates import TemplateError
from workflows.nodes.base import (
    Node,
    NodeCategory,
    NodeConfig,
    NodeContext,
    NodeResult,
    ResourceKey,
)
from workflows.nodes.registry import register

KNOWLEDGE_BASE_RESOURCE = "knowledge_base"
MAX_KNOWLEDGE_BASES = 5
MAX_TOP_K = 20


def knowledge_base_key(knowledge_base_id: int) -> ResourceKey:
    """The resource key under which the runner passes a knowledge base's retriever."""
    return (KNOWLEDGE_BASE_RESOURCE, str(knowledge_base_id))


@dataclass(frozen=True)
class Passage:
    """One retrieved piece of a document.

    ``text`` is the passage as it will be quoted to a model. ``document_id`` and
    ``document_title`` name its document; ``location`` says where it lies in it, for people
    ("page 3", "Section > Sub"; may be empty). ``score`` is the relevance in [0, 1], higher is
    better, comparable across knowledge bases (the node merges them by it). ``chunk_id``
    identifies the passage within its knowledge base.
    """

    text: str
    document_id: str
    document_title: str
    location: str
    score: float
    chunk_id: str


@runtime_checkable
class Retriever(Protocol):
    """Searches one knowledge base; the knowledge app implements it.

    ``search`` returns at most ``top_k`` passages whose score is at least ``min_score``, best
    first; an empty list when nothing qualifies. It runs on the engine's event loop, so
    blocking work (an embedding call, a vector store query) belongs in a thread
    (``asyncio.to_thread``). It may raise: the node then fails, naming the knowledge base.
    """

    async def search(self, query: str, *, top_k: int, min_score: float) -> list[Passage]: ...


KnowledgeBaseId = Annotated[int, Field(strict=True, gt=0)]


class KnowledgeRetrievalConfig(NodeConfig):
    knowledge_base_ids: list[KnowledgeBaseId] = Field(
        min_length=1,
        max_length=MAX_KNOWLEDGE_BASES,
        title="Knowledge bases",
        description=f"1 to {MAX_KNOWLEDGE_BASES} knowledge bases to search; their results "
        "are merged by score.",
    )
    query: str = Field(
        default="{{ trigger.text }}",
        max_length=2000,
        title="Query",
        description="Template of the text to search for, e.g. '{{ trigger.text }}'.",
    )
    top_k: int = Field(
        default=4,
        ge=1,
        le=MAX_TOP_K,
        title="Passages",
        description=f"How many passages to return at most, over all knowledge bases "
        f"(1-{MAX_TOP_K}).",
    )
    min_score: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        title="Minimum score",
        description="Leave out passages scoring below this relevance (0 to 1, higher is "
        "more relevant).",
    )

    @field_validator("knowledge_base_ids")
    @classmethod
    def _no_repeats(cls, ids: list[int]) -> list[int]:
        seen: set[int] = set()
        for knowledge_base_id in ids:
            if knowledge_base_id in seen:
                raise ValueError(f"knowledge base {knowledge_base_id} is listed twice")
            seen.add(knowledge_base_id)
        return ids


def _as_output(passage: Passage, citation: int) -> dict[str, Any]:
    return {
        "text": passage.text,
        "document_id": passage.document_id,
        "document_title": passage.document_title,
        "location": passage.location,
        "score": passage.score,
        "chunk_id": passage.chunk_id,
        "citation": citation,
    }


def context_text(passages: Sequence[Passage]) -> str:
    """The passages as numbered sources for a prompt: "[n] title (location)" then the text."""
    blocks = []
    for citation, passage in enumerate(passages, start=1):
        heading = f"[{citation}] {passage.document_title}"
        if passage.location:
            heading += f" ({passage.location})"
        blocks.append(f"{heading}\n{passage.text}")
    return "\n\n".join(blocks)


@register
class KnowledgeRetrieval(Node[KnowledgeRetrievalConfig]):
    type_id = "knowledge_retrieval"
    category = NodeCategory.PROCESSING
    title = "Knowledge retrieval"
    description = (
        "Searches knowledge bases for the passages most relevant to a query and gives them "
        "numbered, ready to quote in a prompt."
    )
    Config = KnowledgeRetrievalConfig
    outputs = {"passages": "array", "context": "string", "count": "number", "query": "string"}
    template_fields = ("query",)

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        assert isinstance(config, KnowledgeRetrievalConfig)  # noqa: S101  (registry guarantees it)
        return [knowledge_base_key(kb_id) for kb_id in config.knowledge_base_ids]

    async def run(self, context: NodeContext) -> NodeResult:
        try:
            query = context.render(self.config.query).strip()
        except TemplateError as exc:
            return NodeResult.failure(f"query {exc}")
        if not query:
            return NodeResult.failure("query is empty: there is nothing to search for")
        retrievers: list[tuple[int, Retriever]] = []
        for kb_id in self.config.knowledge_base_ids:
            retriever = context.resources.get(knowledge_base_key(kb_id))
            if not isinstance(retriever, Retriever):
                return NodeResult.failure(
                    f"knowledge base {kb_id} is not available: it does not exist, "
                    "or it has no index yet"
                )
            retrievers.append((kb_id, retriever))
        top_k, min_score = self.config.top_k, self.config.min_score
        # return_exceptions: one failing base must not leave the others' searches running.
        found = await asyncio.gather(
            *(r.search(query, top_k=top_k, min_score=min_score) for _id, r in retrievers),
            return_exceptions=True,
        )
        merged: list[Passage] = []
        for (kb_id, _retriever), result in zip(retrievers, found, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation and the like are not the node's to report
                return NodeResult.failure(
                    f"knowledge base {kb_id}: search failed: {type(result).__name__}: {result}"
                )
            merged.extend(p for p in result if p.score >= min_score)
        # Stable: equal scores keep the knowledge bases' order and each one's ranking.
        merged.sort(key=lambda passage: passage.score, reverse=True)
        passages = merged[:top_k]
        return NodeResult(
            outputs={
                "passages": [_as_output(p, n) for n, p in enumerate(passages, start=1)],
                "context": context_text(passages),
                "count": len(passages),
                "query": query,
            }
        )
