from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from tests.doubles.rerank_server import RerankDouble
from tests.workflows.graphs import edge, node
from tests.workflows.nodes.helpers import run_node
from workflows.engine.executor import CompiledWorkflow, NodeStatus, RunStatus
from workflows.engine.validation import validate_graph
from workflows.llm.endpoints import EndpointConfig
from workflows.nodes import registry
from workflows.nodes.base import NodeContext, NodeResult
from workflows.nodes.knowledge_retrieval import (
    KNOWLEDGE_BASE_RESOURCE,
    RERANK_CANDIDATES,
    KnowledgeRetrieval,
    KnowledgeRetrievalConfig,
    Passage,
    Retriever,
    SearchFilters,
)
from workflows.nodes.llm import MODEL_ENDPOINT_RESOURCE

# --- a small real index: cosine similarity of bags of features --------------------------------

_RUNS = re.compile(r"[\u4e00-\u9fff]+|[a-z0-9]+")
_STOP_WORDS = {"a", "an", "and", "are", "do", "how", "i", "in", "is", "it", "my", "of", "the"}
_STOP_WORDS |= {"to", "what", "you", "your", "with", "for", "on", "or"}


def _features(text: str) -> Counter[str]:
    """Chinese runs as character bigrams, other words as lower-case words (no stop words)."""
    features: Counter[str] = Counter()
    for run in _RUNS.findall(text.lower()):
        if run.isascii():
            if run not in _STOP_WORDS:
                features[run] += 1
        elif len(run) == 1:
            features[run] += 1
        else:
            features.update(run[i : i + 2] for i in range(len(run) - 1))
    return features


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(count * b[feature] for feature, count in a.items())
    if not dot:
        return 0.0
    norm_a = math.sqrt(sum(count * count for count in a.values()))
    norm_b = math.sqrt(sum(count * count for count in b.values()))
    return dot / (norm_a * norm_b)


class BagOfBigramsIndex:
    """A Retriever over a handful of passages: (document id, title, location, text)."""

    def __init__(self, name: str, passages: list[tuple[str, str, str, str]]) -> None:
        self.chunks = [
            (f"{name}-{n}", doc_id, title, location, text, _features(text))
            for n, (doc_id, title, location, text) in enumerate(passages, start=1)
        ]
        self.calls: list[tuple[str, int, float]] = []
        self.filters: list[SearchFilters | None] = []

    async def search(
        self, query: str, *, top_k: int, min_score: float, filters: SearchFilters | None = None
    ) -> list[Passage]:
        self.calls.append((query, top_k, min_score))
        self.filters.append(filters)
        wanted = _features(query)
        found = []
        for chunk_id, doc_id, title, location, text, features in self.chunks:
            score = _cosine(wanted, features)
            if score > 0 and score >= min_score:  # no shared feature: not a match
                found.append(Passage(text, doc_id, title, location, score, chunk_id))
        found.sort(key=lambda passage: passage.score, reverse=True)
        return found[:top_k]


def _handbook() -> BagOfBigramsIndex:
    return BagOfBigramsIndex(
        "hr",
        [
            (
                "hb",
                "员工手册",
                "第 2 章 > 年假",
                "员工入职满一年后享有五天带薪年假，满十年后享有十天带薪年假。",
            ),
            (
                "hb",
                "员工手册",
                "第 4 章 > 差旅报销",
                "差旅费用须在出差结束后三十天内提交报销申请，并附上发票原件。",
            ),
            (
                "hb",
                "员工手册",
                "第 3 章 > 加班",
                "工作日加班按小时工资的一点五倍支付加班费，需经部门经理批准。",
            ),
            (
                "hb-en",
                "Employee handbook",
                "Chapter 2 > Leave",
                "Annual leave: after one year of service employees get five days of paid "
                "annual leave.",
            ),
        ],
    )


def _guide() -> BagOfBigramsIndex:
    return BagOfBigramsIndex(
        "guide",
        [
            (
                "ag",
                "Admin guide",
                "page 3",
                "To reset your password, open Settings > Security and choose Reset password; "
                "a link is emailed to you.",
            ),
            (
                "ag",
                "Admin guide",
                "page 7",
                "Refunds are issued to the original payment method within 14 days of a return "
                "request.",
            ),
            (
                "ag",
                "Admin guide",
                "page 12",
                "The API allows 100 requests per minute per token; going over the limit returns "
                "HTTP 429.",
            ),
            (
                "ag-zh",
                "管理员指南",
                "第 3 页",
                "如需重置密码，请打开“设置 > 安全”，选择“重置密码”。",
            ),
        ],
    )


def _run(
    config: dict[str, Any],
    text: str,
    bases: dict[int, Any] | None = None,
    endpoints: dict[str, EndpointConfig] | None = None,
) -> NodeResult:
    node_type = registry.get("knowledge_retrieval", 1)
    assert node_type is KnowledgeRetrieval
    instance = node_type("search", node_type.Config.model_validate(config))
    variables = {"trigger": {"text": text}, "conversation": {}, "nodes": {}, "vars": {}}
    resources: dict[tuple[str, str], Any] = {
        (KNOWLEDGE_BASE_RESOURCE, str(kb)): r for kb, r in (bases or {}).items()
    }
    for name, endpoint in (endpoints or {}).items():
        resources[MODEL_ENDPOINT_RESOURCE, name] = endpoint
    return asyncio.run(instance.run(NodeContext(variables=variables, resources=resources)))


def _chunks(result: NodeResult) -> list[str]:
    return [passage["chunk_id"] for passage in result.outputs["passages"]]


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"knowledge_base_ids": []},
        {"knowledge_base_ids": [0]},
        {"knowledge_base_ids": [-3]},
        {"knowledge_base_ids": [1, 2, 3, 4, 5, 6]},
        {"knowledge_base_ids": [1, 2, 1]},
        {"knowledge_base_ids": ["1"]},
        {"knowledge_base_ids": [True]},
        {"knowledge_base_ids": [1.5]},
        {"knowledge_base_ids": [1], "top_k": 0},
        {"knowledge_base_ids": [1], "top_k": 21},
        {"knowledge_base_ids": [1], "min_score": -0.1},
        {"knowledge_base_ids": [1], "min_score": 1.01},
        {"knowledge_base_ids": [1], "min_score": float("nan")},
        {"knowledge_base_ids": [1], "query": "x" * 2001},
        {"knowledge_base_ids": [1], "knowledge_base": 1},
        {"knowledge_base_ids": [1], "rerank_endpoint": ""},
        {"knowledge_base_ids": [1], "rerank_endpoint": 3},
        {"knowledge_base_ids": [1], "filters": {"file_types": ["exe"]}},
        {"knowledge_base_ids": [1], "filters": {"file_types": []}},
        {"knowledge_base_ids": [1], "filters": {"document_ids": ["not-a-uuid"]}},
        {"knowledge_base_ids": [1], "filters": {"document_ids": []}},
        {"knowledge_base_ids": [1], "filters": {"title_contains": "   "}},
        {"knowledge_base_ids": [1], "filters": {"heading_prefix": "Chapter 2 >  > Leave"}},
        {"knowledge_base_ids": [1], "filters": {"page": 3}},
        {"knowledge_base_ids": [1], "filters": "pdf"},
    ],
)
def test_invalid_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KnowledgeRetrievalConfig.model_validate(config)


def test_a_repeated_base_is_reported_on_its_field() -> None:
    with pytest.raises(ValidationError) as caught:
        KnowledgeRetrievalConfig.model_validate({"knowledge_base_ids": [7, 3, 7]})
    [error] = caught.value.errors()
    assert error["loc"] == ("knowledge_base_ids",)
    assert "knowledge base 7 is listed twice" in error["msg"]


def test_defaults_and_required_resources_follow_the_config() -> None:
    config = KnowledgeRetrievalConfig.model_validate({"knowledge_base_ids": [7, 2, 3, 4, 5]})
    assert (config.query, config.top_k, config.min_score) == ("{{ trigger.text }}", 4, 0.0)
    assert KnowledgeRetrieval.required_resources(config) == [
        ("knowledge_base", "7"),
        ("knowledge_base", "2"),
        ("knowledge_base", "3"),
        ("knowledge_base", "4"),
        ("knowledge_base", "5"),
    ]
    assert KnowledgeRetrieval.template_sources(config) == {"query": "{{ trigger.text }}"}
    assert KnowledgeRetrieval.branches(config) == ["out"]
    described = registry.describe(KnowledgeRetrieval)
    assert set(described["config_schema"]["properties"]) == {
        "knowledge_base_ids",
        "query",
        "top_k",
        "min_score",
        "filters",
        "rerank_endpoint",
    }
    assert described["outputs"] == {
        "passages": "array",
        "context": "string",
        "count": "number",
        "query": "string",
        "reranked": "boolean",
        "rerank_error": "string",
    }
    assert (config.filters, config.rerank_endpoint) == (None, None)


def test_the_test_index_is_a_retriever() -> None:
    assert isinstance(_handbook(), Retriever)


# --- retrieval ---------------------------------------------------------------------------------


def test_a_chinese_query_finds_the_relevant_passage_first() -> None:
    result = _run(
        {"knowledge_base_ids": [1, 2]}, "入职一年有几天年假？", {1: _handbook(), 2: _guide()}
    )
    assert not result.failed
    assert _chunks(result)[0] == "hr-1"
    first = result.outputs["passages"][0]
    assert first["document_title"] == "员工手册"
    assert first["location"] == "第 2 章 > 年假"
    assert first["citation"] == 1
    assert 0 < first["score"] <= 1
    assert result.outputs["query"] == "入职一年有几天年假？"

    result = _run({"knowledge_base_ids": [1, 2]}, "重置密码", {1: _handbook(), 2: _guide()})
    assert _chunks(result) == ["guide-4"]


def test_an_english_query_finds_the_relevant_passage_first() -> None:
    result = _run(
        {"knowledge_base_ids": [2, 1]}, "How do I reset my password?", {1: _handbook(), 2: _guide()}
    )
    assert _chunks(result)[0] == "guide-1"
    assert result.outputs["passages"][0]["document_id"] == "ag"
    result = _run({"knowledge_base_ids": [2]}, "what is the API rate limit", {2: _guide()})
    assert _chunks(result) == ["guide-3"]


def test_results_of_several_bases_are_merged_by_score_and_cut_to_top_k() -> None:
    handbook, guide = _handbook(), _guide()
    query = "password 密码 年假 annual leave"
    result = _run({"knowledge_base_ids": [1, 2], "top_k": 3}, query, {1: handbook, 2: guide})
    scores = [passage["score"] for passage in result.outputs["passages"]]
    assert scores == sorted(scores, reverse=True)
    # Each base finds two passages (hr-4, hr-1; guide-1, guide-4): the weakest is cut.
    assert _chunks(result) == ["hr-4", "guide-1", "guide-4"]
    assert [p["citation"] for p in result.outputs["passages"]] == [1, 2, 3]
    assert result.outputs["count"] == 3
    # Every base is asked for the node's top_k and min_score, with the rendered query.
    assert handbook.calls == guide.calls == [(query, 3, 0.0)]

    everything = _run({"knowledge_base_ids": [1, 2], "top_k": 20}, query, {1: handbook, 2: guide})
    assert _chunks(everything) == ["hr-4", "guide-1", "guide-4", "hr-1"]


def test_min_score_leaves_out_weak_passages() -> None:
    query = "password 密码 年假 annual leave"
    bases = {1: _handbook(), 2: _guide()}
    every = _run({"knowledge_base_ids": [1, 2], "top_k": 20}, query, bases)
    cut = sorted(p["score"] for p in every.outputs["passages"])[1]
    strict = _run({"knowledge_base_ids": [1, 2], "top_k": 20, "min_score": cut}, query, bases)
    assert strict.outputs["count"] == every.outputs["count"] - 1
    assert all(p["score"] >= cut for p in strict.outputs["passages"])


def test_passages_a_retriever_should_have_left_out_are_dropped() -> None:
    class Sloppy:
        async def search(
            self, query: str, *, top_k: int, min_score: float, filters: SearchFilters | None = None
        ) -> list[Passage]:
            return [Passage(f"p{n}", "d", "Doc", "", n / 10, f"c{n}") for n in range(10)]

    result = _run({"knowledge_base_ids": [1], "top_k": 3, "min_score": 0.45}, "q", {1: Sloppy()})
    assert _chunks(result) == ["c9", "c8", "c7"]


def test_bases_are_searched_concurrently() -> None:
    barrier = asyncio.Barrier(2)

    class Waiting(BagOfBigramsIndex):
        async def search(
            self, query: str, *, top_k: int, min_score: float, filters: SearchFilters | None = None
        ) -> list[Passage]:
            # Both searches must be under way at once, or this never returns.
            async with asyncio.timeout(2):
                await barrier.wait()
            return await super().search(query, top_k=top_k, min_score=min_score)

    handbook = Waiting("hr", [("hb", "员工手册", "第 1 章", "年假")])
    guide = Waiting("guide", [("ag", "Admin guide", "page 1", "annual leave")])
    result = _run({"knowledge_base_ids": [1, 2]}, "年假 annual leave", {1: handbook, 2: guide})
    assert result.outputs["count"] == 2


def test_context_numbers_each_passage_for_citation() -> None:
    result = _run(
        {"knowledge_base_ids": [1, 2], "top_k": 2, "query": "{{ trigger.text }} 重置密码"},
        "reset password",
        {1: _handbook(), 2: _guide()},
    )
    assert result.outputs["query"] == "reset password 重置密码"
    assert result.outputs["context"] == (
        "[1] 管理员指南 (第 3 页)\n"
        "如需重置密码，请打开“设置 > 安全”，选择“重置密码”。\n"
        "\n"
        "[2] Admin guide (page 3)\n"
        "To reset your password, open Settings > Security and choose Reset password; "
        "a link is emailed to you."
    )


def test_a_passage_without_location_is_cited_by_title_alone() -> None:
    index = BagOfBigramsIndex("notes", [("n", "Notes", "", "Deploys happen on Tuesdays.")])
    result = _run({"knowledge_base_ids": [9]}, "when are deploys", {9: index})
    assert result.outputs["context"] == "[1] Notes\nDeploys happen on Tuesdays."


def test_no_passages_is_a_success_with_count_zero() -> None:
    result = _run(
        {"knowledge_base_ids": [1, 2]}, "quantum chromodynamics", {1: _handbook(), 2: _guide()}
    )
    assert not result.failed
    assert result.branch == "out"
    assert result.outputs == {
        "passages": [],
        "context": "",
        "count": 0,
        "query": "quantum chromodynamics",
        "reranked": False,
        "rerank_error": "",
    }
    # A threshold nothing reaches has the same effect.
    result = _run({"knowledge_base_ids": [1], "min_score": 1.0}, "年假", {1: _handbook()})
    assert (result.failed, result.outputs["count"]) == (False, 0)


# --- failures ----------------------------------------------------------------------------------


def test_a_missing_knowledge_base_fails_naming_it() -> None:
    # run_node passes no resources: as when the base was deleted or has no index yet.
    result = run_node("knowledge_retrieval", {"knowledge_base_ids": [7]}, trigger={"text": "hi"})
    assert result.error == (
        "knowledge base 7 is not available: it does not exist, or it has no index yet"
    )
    handbook = _handbook()
    result = _run({"knowledge_base_ids": [1, 8]}, "年假", {1: handbook, 2: _guide()})
    assert result.error is not None
    assert result.error.startswith("knowledge base 8 is not available")
    assert handbook.calls == []  # nothing is searched when a base is missing


def test_a_template_error_fails_the_node_with_the_reason() -> None:
    result = _run({"knowledge_base_ids": [1], "query": "{{ trigger.nope }}"}, "x", {1: _handbook()})
    assert result.error is not None
    assert result.error.startswith("query ")
    assert "nope" in result.error


def test_an_empty_query_fails() -> None:
    result = _run({"knowledge_base_ids": [1]}, "  \n ", {1: _handbook()})
    assert result.error == "query is empty: there is nothing to search for"


class Offline:
    async def search(
        self, query: str, *, top_k: int, min_score: float, filters: SearchFilters | None = None
    ) -> list[Passage]:
        raise ConnectionError("vector store unreachable")


def test_a_failing_search_fails_the_node_naming_the_base() -> None:
    result = _run({"knowledge_base_ids": [1, 2]}, "年假", {1: _handbook(), 2: Offline()})
    assert result.error == (
        "knowledge base 2: search failed: ConnectionError: vector store unreachable"
    )


# --- filters -----------------------------------------------------------------------------------


def test_filters_are_normalised() -> None:
    doc = uuid.uuid4()
    config = KnowledgeRetrievalConfig.model_validate(
        {
            "knowledge_base_ids": [1],
            "filters": {
                "document_ids": [str(doc), str(doc)],
                "title_contains": "  handbook ",
                "file_types": [".PDF", "md", "txt", "htm", "docx", "pdf"],
                "heading_prefix": " Chapter 2>Leave ",
            },
        }
    )
    filters = config.filters
    assert filters is not None
    assert filters.document_ids == [doc]
    assert filters.title_contains == "handbook"
    assert filters.file_types == ["pdf", "markdown", "text", "html", "docx"]
    assert filters.heading_prefix == "Chapter 2 > Leave"
    assert filters.by_document
    assert not filters.empty
    assert SearchFilters().empty
    assert not SearchFilters(heading_prefix="Chapter 2").by_document


def test_a_bad_filter_is_reported_on_its_field() -> None:
    with pytest.raises(ValidationError) as caught:
        KnowledgeRetrievalConfig.model_validate(
            {"knowledge_base_ids": [1], "filters": {"file_types": ["pdf", "exe"]}}
        )
    [error] = caught.value.errors()
    assert error["loc"] == ("filters", "file_types", 1)
    assert "'pdf'" in error["msg"]
    assert "'markdown'" in error["msg"]  # the message lists what is accepted


def test_filters_reach_every_base() -> None:
    handbook, guide = _handbook(), _guide()
    filters = {"file_types": ["pdf"], "heading_prefix": "第 2 章"}
    _run({"knowledge_base_ids": [1, 2], "filters": filters}, "年假", {1: handbook, 2: guide})
    assert handbook.filters == guide.filters == [SearchFilters.model_validate(filters)]
    _run({"knowledge_base_ids": [1]}, "年假", {1: handbook})
    assert handbook.filters[-1] is None


# --- rerank ------------------------------------------------------------------------------------

RERANK_KEY = "rk-test-key"
MIXED_QUERY = "password 密码 年假 annual leave"


@pytest.fixture
def reranker() -> Iterator[RerankDouble]:
    with RerankDouble(api_key=RERANK_KEY) as double:
        yield double


def _endpoint(
    double: RerankDouble, *, kind: str = "rerank", key: str = RERANK_KEY, timeout_s: float = 5.0
) -> dict[str, EndpointConfig]:
    return {
        "rr": EndpointConfig(
            id=1,
            name="rr",
            kind=kind,
            base_url=double.base_url,
            model=double.model,
            api_key=key,
            timeout_s=timeout_s,
        )
    }


def _prefers_first_year_leave(query: str, document: str) -> float:
    if "员工入职" in document:
        return 0.9
    return 0.6 if "Settings" in document else 0.2


def test_rerank_endpoint_is_a_required_resource() -> None:
    config = KnowledgeRetrievalConfig.model_validate(
        {"knowledge_base_ids": [3], "rerank_endpoint": "rr"}
    )
    assert KnowledgeRetrieval.required_resources(config) == [
        ("knowledge_base", "3"),
        ("model_endpoint", "rr"),
    ]


def test_rerank_reorders_the_merged_candidates_of_all_bases(reranker: RerankDouble) -> None:
    reranker.relevance = _prefers_first_year_leave
    handbook, guide = _handbook(), _guide()
    bases = {1: handbook, 2: guide}
    plain = _run({"knowledge_base_ids": [1, 2], "top_k": 20}, MIXED_QUERY, bases)
    assert _chunks(plain) == ["hr-4", "guide-1", "guide-4", "hr-1"]
    assert plain.outputs["reranked"] is False

    config = {"knowledge_base_ids": [1, 2], "top_k": 2, "rerank_endpoint": "rr"}
    result = _run(config, MIXED_QUERY, bases, _endpoint(reranker))
    assert not result.failed
    assert _chunks(result) == ["hr-1", "guide-1"]
    assert [p["score"] for p in result.outputs["passages"]] == [0.9, 0.6]
    assert [p["citation"] for p in result.outputs["passages"]] == [1, 2]
    assert result.outputs["context"].startswith("[1] 员工手册 (第 2 章 > 年假)\n员工入职")
    assert (result.outputs["reranked"], result.outputs["rerank_error"]) == (True, "")
    # One request for all bases: every fused candidate, in the fused order.
    [request] = reranker.requests
    texts = {p["chunk_id"]: p["text"] for p in plain.outputs["passages"]}
    assert request == {
        "model": reranker.model,
        "query": MIXED_QUERY,
        "documents": [texts[c] for c in _chunks(plain)],
        "top_n": 2,
    }
    # Each base offered its best candidates, not just top_k, whatever their fused score.
    assert handbook.calls[-1] == guide.calls[-1] == (MIXED_QUERY, RERANK_CANDIDATES, 0.0)


def test_min_score_applies_to_the_rerank_scores(reranker: RerankDouble) -> None:
    reranker.relevance = _prefers_first_year_leave
    config = {
        "knowledge_base_ids": [1, 2],
        "top_k": 4,
        "min_score": 0.5,
        "rerank_endpoint": "rr",
    }
    handbook = _handbook()
    result = _run(config, MIXED_QUERY, {1: handbook, 2: _guide()}, _endpoint(reranker))
    assert _chunks(result) == ["hr-1", "guide-1"]
    assert handbook.calls == [(MIXED_QUERY, RERANK_CANDIDATES, 0.0)]


def test_scores_outside_0_1_are_mapped_in_keeping_the_order(reranker: RerankDouble) -> None:
    reranker.relevance = lambda query, document: 3.0 if "员工入职" in document else -2.0
    config = {"knowledge_base_ids": [1, 2], "top_k": 2, "rerank_endpoint": "rr"}
    result = _run(config, MIXED_QUERY, {1: _handbook(), 2: _guide()}, _endpoint(reranker))
    scores = [p["score"] for p in result.outputs["passages"]]
    assert _chunks(result)[0] == "hr-1"
    assert scores == [round(1 / (1 + math.exp(-3.0)), 4), round(1 / (1 + math.exp(2.0)), 4)]


@pytest.mark.parametrize(
    ("fault", "endpoint_options", "reason"),
    [
        ("500", {}, "answered 500"),
        ("not_json", {}, "is not JSON"),
        ("bad_index", {}, "ranked document 7, but only 4 were sent"),
        (None, {"key": "wrong"}, "answered 401"),
        ("slow", {"timeout_s": 0.2}, "no complete answer within 0.2 s"),
    ],
)
def test_a_failing_rerank_endpoint_keeps_the_fused_order(
    reranker: RerankDouble, fault: str | None, endpoint_options: dict[str, Any], reason: str
) -> None:
    if fault is not None:
        # Twice: the client retries once after a 5xx or a timeout.
        reranker.inject(fault, count=2, delay_s=1.0)
    bases = {1: _handbook(), 2: _guide()}
    plain = _run({"knowledge_base_ids": [1, 2], "top_k": 3}, MIXED_QUERY, bases)
    config = {"knowledge_base_ids": [1, 2], "top_k": 3, "rerank_endpoint": "rr"}
    result = _run(config, MIXED_QUERY, bases, _endpoint(reranker, **endpoint_options))
    assert not result.failed
    assert result.outputs["passages"] == plain.outputs["passages"]
    assert result.outputs["reranked"] is False
    error = result.outputs["rerank_error"]
    assert error.startswith("rerank endpoint 'rr' failed: ")
    assert reason in error


def test_an_unavailable_or_wrong_kind_endpoint_keeps_the_fused_order(
    reranker: RerankDouble,
) -> None:
    bases = {1: _handbook(), 2: _guide()}
    plain = _run({"knowledge_base_ids": [1, 2]}, MIXED_QUERY, bases)
    config = {"knowledge_base_ids": [1, 2], "rerank_endpoint": "rr"}
    missing = _run(config, MIXED_QUERY, bases)
    assert missing.outputs["passages"] == plain.outputs["passages"]
    assert (missing.outputs["reranked"], missing.outputs["rerank_error"]) == (
        False,
        "rerank endpoint 'rr' is not available: it does not exist or is disabled",
    )
    chat = _run(config, MIXED_QUERY, bases, _endpoint(reranker, kind="chat"))
    assert chat.outputs["passages"] == plain.outputs["passages"]
    assert chat.outputs["rerank_error"] == (
        "model endpoint 'rr' is a chat endpoint, not a rerank endpoint"
    )
    assert reranker.requests == []


def test_nothing_found_asks_the_reranker_nothing(reranker: RerankDouble) -> None:
    config = {"knowledge_base_ids": [1], "rerank_endpoint": "rr"}
    result = _run(config, "quantum chromodynamics", {1: _handbook()}, _endpoint(reranker))
    assert (result.failed, result.outputs["count"], result.outputs["reranked"]) == (False, 0, False)
    assert result.outputs["rerank_error"] == ""
    assert reranker.requests == []


# --- in a workflow -----------------------------------------------------------------------------


def _graph(**config: Any) -> dict[str, Any]:
    return {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node("kb", "knowledge_retrieval", knowledge_base_ids=[1, 2], **config),
            node(
                "done",
                "end",
                output="{% if nodes.kb.count %}资料：\n{{ nodes.kb.context }}{% else %}"
                "没有找到资料{% endif %}",
            ),
        ],
        "edges": [edge("start", "kb"), edge("kb", "done")],
        "variables": {},
    }


def test_a_run_passes_the_context_to_later_templates() -> None:
    workflow = CompiledWorkflow(_graph(top_k=1))
    assert workflow.required_resources == {("knowledge_base", "1"), ("knowledge_base", "2")}
    resources = {("knowledge_base", "1"): _handbook(), ("knowledge_base", "2"): _guide()}
    result = asyncio.run(workflow.execute(trigger={"text": "重置密码"}, resources=resources))
    assert result.status is RunStatus.SUCCEEDED
    assert (
        result.output
        == "资料：\n[1] 管理员指南 (第 3 页)\n如需重置密码，请打开“设置 > 安全”，选择“重置密码”。"
    )

    result = asyncio.run(workflow.execute(trigger={"text": "量子色动力学"}, resources=resources))
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, "没有找到资料")


def test_a_run_fails_at_the_node_when_a_base_is_missing_or_failing() -> None:
    workflow = CompiledWorkflow(_graph())
    result = asyncio.run(
        workflow.execute(trigger={"text": "年假"}, resources={("knowledge_base", "1"): _handbook()})
    )
    assert result.status is RunStatus.FAILED
    assert result.error == (
        "node 'kb' failed: knowledge base 2 is not available: it does not exist, "
        "or it has no index yet"
    )
    resources = {("knowledge_base", "1"): _handbook(), ("knowledge_base", "2"): Offline()}
    result = asyncio.run(workflow.execute(trigger={"text": "年假"}, resources=resources))
    assert result.status is RunStatus.FAILED
    assert result.nodes["kb"].status is NodeStatus.FAILED
    assert result.nodes["kb"].error == (
        "knowledge base 2: search failed: ConnectionError: vector store unreachable"
    )


def test_validation_reports_bases_the_caller_does_not_know() -> None:
    graph = _graph()
    assert validate_graph(graph).ok  # without a list of bases, none is checked
    assert validate_graph(graph, resources={KNOWLEDGE_BASE_RESOURCE: {"1", "2", "3"}}).ok
    problems = validate_graph(graph, resources={KNOWLEDGE_BASE_RESOURCE: {"1"}}).problems
    assert [(p.code, p.node_id, p.message) for p in problems] == [
        (
            "unknown_resource",
            "kb",
            "knowledge base '2' does not exist or is not available to you (disabled, or not "
            "shared with you for use)",
        )
    ]
    problems = validate_graph(_graph(query="{{ nodes.kb.count }}")).problems
    assert [(p.code, p.field) for p in problems] == [("variable_not_upstream", "config.query")]


def test_validation_reports_a_rerank_endpoint_the_caller_may_not_use() -> None:
    graph = _graph(rerank_endpoint="rr")
    known = {KNOWLEDGE_BASE_RESOURCE: {"1", "2"}, MODEL_ENDPOINT_RESOURCE: {"rr", "chat"}}
    assert validate_graph(graph, resources=known).ok
    known[MODEL_ENDPOINT_RESOURCE] = {"chat"}
    problems = validate_graph(graph, resources=known).problems
    assert [(p.code, p.node_id, p.message) for p in problems] == [
        (
            "unknown_resource",
            "kb",
            "model endpoint 'rr' does not exist or is not available to you (disabled, or not "
            "shared with you for use)",
        )
    ]
