"""Knowledge retrieval: searches knowledge bases for passages relevant to a query.

The node never touches an index itself. For each knowledge base it names, the runner loads a
:class:`Retriever` under the resource key ``(KNOWLEDGE_BASE_RESOURCE, str(id))`` (see
``Node.required_resources``); the knowledge app implements the protocol over its vector store.

Optional steps around the search: ``filters`` (:class:`SearchFilters`) restrict every base's
search to some passages before ranking, and ``rerank_endpoint`` names a model endpoint of
kind "rerank" that reorders the merged candidates (:func:`rerank_passages`). A rerank that
fails never fails the node: the fused order is kept and the ``rerank_error`` output says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, get_args, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assistant_site import http
from workflows.engine.templates import TemplateError
from workflows.llm.endpoints import EndpointConfig
from workflows.nodes.base import (
    Node,
    NodeCategory,
    NodeConfig,
    NodeContext,
    NodeResult,
    ResourceKey,
)
from workflows.nodes.llm import MODEL_ENDPOINT_RESOURCE
from workflows.nodes.registry import register

logger = logging.getLogger(__name__)

KNOWLEDGE_BASE_RESOURCE = "knowledge_base"
MAX_KNOWLEDGE_BASES = 5
MAX_TOP_K = 20
# How many of the fused passages (over all bases) the rerank endpoint reorders, at least:
# a search for more than this many passages sends all of them.
RERANK_CANDIDATES = 20
MAX_FILTER_DOCUMENTS = 100
# Document types as ingestion records them (Document.kind), and the file extensions that
# name them otherwise.
FileType = Literal["pdf", "docx", "pptx", "xlsx", "html", "markdown", "text"]
FILE_TYPES: tuple[str, ...] = get_args(FileType)
FILE_TYPE_ALIASES = {"md": "markdown", "txt": "text", "htm": "html"}
# How heading paths are written: "Chapter 2 > Leave" (see Chunk.heading_path).
HEADING_SEPARATOR = " > "


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


class SearchFilters(BaseModel):
    """Which passages a search may return, applied before ranking (so a filtered search still
    finds ``top_k`` passages when that many qualify).

    Every condition given must hold; a list matches any of its values; a condition left out
    (None) matches everything. ``document_ids``: the passage's document is one of these.
    ``title_contains``: its document's title (its file name when it has none) contains this
    text, ignoring case. ``file_types``: its document is of one of these types; file
    extensions are accepted too (".md", "txt", "htm"). ``heading_prefix``: its heading path
    starts with these headings, whole headings compared ignoring case ("Chapter 2" matches
    "Chapter 2 > Leave" but not "Chapter 20"); levels are separated by ">".
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    document_ids: list[uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_FILTER_DOCUMENTS,
        title="Documents",
        description=f"Only passages of these documents (1 to {MAX_FILTER_DOCUMENTS} ids).",
    )
    title_contains: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        title="Title contains",
        description="Only documents whose title (or file name) contains this text.",
    )
    file_types: list[FileType] | None = Field(
        default=None,
        min_length=1,
        max_length=len(FILE_TYPES),
        title="File types",
        description="Only documents of these types: " + ", ".join(FILE_TYPES) + " (or their "
        "file extensions, such as .md or txt).",
    )
    heading_prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        title="Under heading",
        description="Only passages under this heading path, e.g. 'Chapter 2 > Leave'.",
    )

    @field_validator("document_ids")
    @classmethod
    def _distinct_documents(cls, ids: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        return None if ids is None else list(dict.fromkeys(ids))

    @field_validator("file_types", mode="before")
    @classmethod
    def _file_types_by_extension(cls, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return value  # pydantic reports what is wrong with it
        names = [item.strip().lower().removeprefix(".") for item in value]
        return list(dict.fromkeys(FILE_TYPE_ALIASES.get(name, name) for name in names))

    @field_validator("heading_prefix")
    @classmethod
    def _whole_headings(cls, value: str | None) -> str | None:
        if value is None:
            return None
        headings = [heading.strip() for heading in value.split(">")]
        if not all(headings):
            raise ValueError("a heading in the path is empty")
        return HEADING_SEPARATOR.join(headings)

    @property
    def by_document(self) -> bool:
        """Whether a condition on documents (not on passages) is given."""
        return bool(self.document_ids or self.title_contains or self.file_types)

    @property
    def empty(self) -> bool:
        return not (self.by_document or self.heading_prefix)


@runtime_checkable
class Retriever(Protocol):
    """Searches one knowledge base; the knowledge app implements it.

    ``search`` returns at most ``top_k`` passages whose score is at least ``min_score``, best
    first; an empty list when nothing qualifies. With ``filters``, only passages they admit
    are ranked (the filter applies before ``top_k``, not after). It runs on the engine's
    event loop, so blocking work (an embedding call, a vector store query) belongs in a
    thread (``asyncio.to_thread``). It may raise: the node then fails, naming the knowledge
    base.
    """

    async def search(
        self,
        query: str,
        *,
        top_k: int,
        min_score: float,
        filters: SearchFilters | None = None,
    ) -> list[Passage]: ...


# --- rerank --------------------------------------------------------------------------------


class RerankError(Exception):
    """The rerank endpoint gave no usable answer; the message says why."""


class _RerankedDocument(BaseModel):
    index: int = Field(ge=0)
    relevance_score: float = Field(allow_inf_nan=False)


class _RerankAnswer(BaseModel):
    # vLLM also sends id, model, usage and each document's text: not needed here.
    results: list[_RerankedDocument]


def _relevance(scores: dict[int, float]) -> dict[int, float]:
    """Scores in [0, 1]. Cross-encoders served for reranking (bge-reranker, Jina, Cohere)
    answer probabilities already; a model that answers raw logits is mapped through the
    logistic function, which keeps the order."""
    if all(0.0 <= score <= 1.0 for score in scores.values()):
        return scores
    return {index: 1.0 / (1.0 + math.exp(-max(-500.0, score))) for index, score in scores.items()}


async def rerank_scores(
    endpoint: EndpointConfig, query: str, documents: Sequence[str], *, top_n: int
) -> list[tuple[int, float]]:
    """How relevant each document is to ``query``, by a rerank endpoint: ``(index in
    documents, score in [0, 1])`` for the best ``top_n``, best first.

    The request is vLLM's ``POST {base_url}/rerank`` (the Jina and Cohere format):
    ``{model, query, documents, top_n}``, answered by ``{results: [{index, relevance_score,
    ...}]}``. It goes through ``assistant_site.http`` (deadline, size cap, one retry on a
    connection error, 429 or 5xx). The SSRF guard lets the endpoint's own host through: model
    endpoints are set by administrators and usually live on a private network, as the LLM
    gateway's do. Raises :class:`RerankError`.
    """
    if not documents or top_n < 1:
        return []
    url = endpoint.base_url.rstrip("/") + "/rerank"
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    host = urlsplit(endpoint.base_url).hostname or ""
    body = {"model": endpoint.model, "query": query, "documents": list(documents), "top_n": top_n}
    try:
        response = await http.request(
            "POST",
            url,
            headers=headers,
            json=body,
            timeout_s=endpoint.timeout_s,
            retries=1,
            backoff_base_s=0.2,
            max_response_bytes=4_000_000,
            allowed_hosts=[*http.configured_allow_list(), host],
        )
        response.raise_for_status()
        answer = _RerankAnswer.model_validate(response.json())
    except http.OutboundHttpError as exc:
        raise RerankError(exc.message) from exc
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the answer"
        raise RerankError(
            f"{http.display_url(url)} answered what is not a rerank result ({where}: "
            f"{problem['msg']})"
        ) from exc
    scores: dict[int, float] = {}
    for result in answer.results:
        if result.index >= len(documents):
            raise RerankError(
                f"{http.display_url(url)} ranked document {result.index}, but only "
                f"{len(documents)} were sent"
            )
        scores[result.index] = result.relevance_score
    ranked = sorted(_relevance(scores).items(), key=lambda item: item[1], reverse=True)
    return ranked[:top_n]


@dataclass(frozen=True)
class RerankOutcome:
    """Passages after the rerank step: best first, at most ``top_k``, none under
    ``min_score``. ``reranked``: in the rerank endpoint's order, scored by it; otherwise in
    the fused order, and ``error`` says why when a rerank was asked for."""

    passages: list[Passage]
    reranked: bool
    error: str = ""


def _fused(candidates: Sequence[Passage], top_k: int, min_score: float) -> list[Passage]:
    return [passage for passage in candidates if passage.score >= min_score][:top_k]


async def rerank_passages(
    endpoint: Any,
    name: str,
    query: str,
    candidates: Sequence[Passage],
    *,
    top_k: int,
    min_score: float,
) -> RerankOutcome:
    """Reorder ``candidates`` (fused search results, best first) by the rerank endpoint
    ``endpoint`` (an ``EndpointConfig``, or None when the endpoint ``name`` is not
    available) and keep the best ``top_k`` scoring at least ``min_score``, which applies to
    the reranker's scores. Never raises for the endpoint's sake: when it is unavailable, not
    a rerank endpoint, or fails, the fused order is kept and the outcome says why."""
    if not candidates:
        return RerankOutcome([], reranked=False)
    if not isinstance(endpoint, EndpointConfig):
        error = f"rerank endpoint {name!r} is not available: it does not exist or is disabled"
    elif endpoint.kind != "rerank":
        error = f"model endpoint {name!r} is a {endpoint.kind} endpoint, not a rerank endpoint"
    else:
        try:
            ranked = await rerank_scores(
                endpoint, query, [passage.text for passage in candidates], top_n=top_k
            )
        except RerankError as exc:
            error = f"rerank endpoint {name!r} failed: {exc}"
        else:
            passages = [
                dataclasses.replace(candidates[index], score=round(score, 4))
                for index, score in ranked
                if score >= min_score
            ]
            return RerankOutcome(passages[:top_k], reranked=True)
    logger.warning("%s; keeping the fused order", error)
    return RerankOutcome(_fused(candidates, top_k, min_score), reranked=False, error=error)


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
        "more relevant). With a rerank endpoint, it applies to the reranker's scores.",
    )
    filters: SearchFilters | None = Field(
        default=None,
        title="Filters",
        description="Search only some passages: of given documents, titles, file types or "
        "under a heading. Applied before the best passages are picked.",
    )
    rerank_endpoint: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        title="Rerank endpoint",
        description=f"A model endpoint of kind rerank, by name, that reorders the best "
        f"{RERANK_CANDIDATES} passages found (or top_k, if more). If it fails, the search "
        "order is kept and the rerank_error output says why.",
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
    outputs = {
        "passages": "array",
        "context": "string",
        "count": "number",
        "query": "string",
        "reranked": "boolean",
        "rerank_error": "string",
    }
    template_fields = ("query",)

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        assert isinstance(config, KnowledgeRetrievalConfig)  # noqa: S101  (registry guarantees it)
        keys = [knowledge_base_key(kb_id) for kb_id in config.knowledge_base_ids]
        if config.rerank_endpoint is not None:
            # Loaded like the LLM node's endpoints: publishing checks the "use" permission.
            keys.append((MODEL_ENDPOINT_RESOURCE, config.rerank_endpoint))
        return keys

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
        config = self.config
        top_k, min_score, rerank = config.top_k, config.min_score, config.rerank_endpoint
        # With a rerank step, each base offers its best candidates whatever their fused
        # score: min_score then applies to the reranker's scores.
        wanted = max(top_k, RERANK_CANDIDATES) if rerank else top_k
        floor = 0.0 if rerank else min_score
        # return_exceptions: one failing base must not leave the others' searches running.
        found = await asyncio.gather(
            *(
                r.search(query, top_k=wanted, min_score=floor, filters=config.filters)
                for _id, r in retrievers
            ),
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
            merged.extend(p for p in result if p.score >= floor)
        # Stable: equal scores keep the knowledge bases' order and each one's ranking.
        merged.sort(key=lambda passage: passage.score, reverse=True)
        if rerank is None:
            outcome = RerankOutcome(merged[:top_k], reranked=False)
        else:
            endpoint = context.resources.get((MODEL_ENDPOINT_RESOURCE, rerank))
            outcome = await rerank_passages(
                endpoint, rerank, query, merged[:wanted], top_k=top_k, min_score=min_score
            )
        passages = outcome.passages
        return NodeResult(
            outputs={
                "passages": [_as_output(p, n) for n, p in enumerate(passages, start=1)],
                "context": context_text(passages),
                "count": len(passages),
                "query": query,
                "reranked": outcome.reranked,
                "rerank_error": outcome.error,
            }
        )
